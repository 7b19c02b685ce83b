"""The command line's shape: every command, its help and its flags.

Imported by every invocation, so it imports nothing heavy: a command's own module (its ``handler``)
is imported only when that command runs (:func:`handler`).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import cast

from livetok.commands.flagparser import FlagParser
from livetok.commands.tail_args import add_bus_arguments
from livetok.monitor.args import add_monitor_arguments


def build(version: str) -> argparse.ArgumentParser:
    """The parser of every command; each sets ``handler`` to what runs it: ``MODULE[:FUNCTION]``, a
    module of this package unless dotted, its function ``command`` unless named."""
    p = FlagParser(prog="livetok", description="Streaming real-time media tokenizer.")
    p.add_argument("--version", action="version", version=f"livetok {version}")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug lines, and the traceback of an unexpected error (a bug: please report it)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(handler=handler)
        return sp

    def config_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-c", "--config", help="config.yaml (default: embedded defaults)")

    sp = add("demo", "demo", "the synthetic source live through the daemon into a private MQTT broker and a "
             "subscriber; report what it received, latency, skew, gaps")
    sp.add_argument("--out-dir", default="livetok-demo", help="where the tokens and picture go")
    sp.add_argument("--broker", metavar="URL", help="use this broker (mqtt://HOST[:PORT]) instead of a private one")
    sp.add_argument("--seconds", type=float, default=6.0, help="how long to run (s)")

    sp = add("run", "run", "run sources -> alignment -> tokenizers -> sinks until stopped (SIGINT/SIGTERM)")
    config_arg(sp)
    sp.add_argument("--source", action="append", metavar="URL",
                    help="a camera (/dev/videoN), stream URL, file played as live, lavfi:GRAPH or 'synthetic'; "
                    "repeatable")
    sp.add_argument("--mic", action="append", metavar="DEVICE", help="a PortAudio input (name, index or 'default')")
    sp.add_argument("--sink", action="append", metavar="file:PATH.ltk|mqtt://[USER@]HOST[:PORT]",
                    help="where packets go: a token file, or the MQTT bus (mqtts:// for TLS); repeatable")
    sp.add_argument("--password-file", metavar="PATH",
                    help="file holding the MQTT password for the --sink URL's user (never on the command line)")
    sp.add_argument("--duration", metavar="SECONDS", help="stop after this long (s, above 0)")
    sp.add_argument("--token-fps", metavar="FPS", help="token frames per second (0.01-1000) of every --source "
                    "given here: one frame per 1/FPS s of capture time is tokenized (token_fps, docs/sources.md)")

    sp = add("check-config", "check_config", "validate a configuration file and exit (78 when invalid)")
    sp.add_argument("-c", "--config", required=True, help="config.yaml")

    add("devices", "devices", "list V4L2 cameras and PortAudio input devices")

    sp = add("doctor", "doctor", "check that everything the daemon needs is here; one line per part, with the fix")
    config_arg(sp)
    sp.add_argument("--json", action="store_true", help="one JSON object: {ok, checks: [{name, status, detail, fix}]}")

    sp = add("tokenize", "tokenize", "tokenize media files into a .ltk token file")
    sp.add_argument("inputs", nargs="+", metavar="INPUT", help="any file FFmpeg opens: video, audio, still image")
    sp.add_argument("-o", "--output", required=True, metavar="OUT.ltk")
    sp.add_argument("--token-fps", metavar="FPS", help="tokenize at most FPS video frames per second of media time "
                    "(0.01-1000), chosen as a live source with token_fps chooses them; default: every frame")
    config_arg(sp)

    sp = add("probe", "probe", "summarise a .ltk token file")
    sp.add_argument("file", metavar="FILE.ltk")
    config_arg(sp)
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="one JSON summary")
    g.add_argument("--tokens", action="store_true",
                   help="one JSON line per record: a token packet, or an aligned step with its packets")

    sp = add("tail", "tail:run_tail", "watch token and step messages on an MQTT broker, one line each")
    add_bus_arguments(sp)
    sp.add_argument("--json", action="store_true", help="JSON lines (probe --tokens' shape plus topic, run_id)")

    sp = add("record", "tail:run_record",
             "subscribe to an MQTT broker and write every token packet and step to a .ltk file")
    add_bus_arguments(sp)
    sp.add_argument("-o", "--output", required=True, metavar="FILE.ltk")

    sp = add("eval", "eval", "tokenize, decode and report quality (PSNR, log-mel SNR, bits, perplexity)")
    sp.add_argument("input", metavar="INPUT")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--no-compare", action="store_true", help="skip the JPEG/WebP/Opus comparison")
    config_arg(sp)

    sp = add("inspect", "inspect", "draw reconstructions per scale and depth beside the originals")
    sp.add_argument("file", metavar="FILE.ltk")
    sp.add_argument("-o", "--output", required=True, metavar="PICTURE.png")
    sp.add_argument("--source", metavar="MEDIA", help="the media the tokens came from, drawn beside them")
    config_arg(sp)

    sp = add("fit", "fit", "learn projections and RVQ codebooks from media files or folders")
    sp.add_argument("inputs", nargs="+", metavar="INPUT")
    sp.add_argument("-o", "--output", required=True, metavar="CODEBOOKS.safetensors")
    sp.add_argument("--iters", type=int, default=20, help="Lloyd iterations per level")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--no-base", action="store_true", help="do not take unfitted modalities from the current codebooks")
    sp.add_argument("--tokenizer", metavar="NAME", help="fit the codebooks of this plug-in tokenizer (tokenizers: in "
                    "the configuration) on its model's embeddings, or its spectrogram patches (docs/tokenizers.md)")
    config_arg(sp)

    sp = add("install-service", "service:install", "install the systemd unit, /etc/livetok/config.yaml (kept if "
             "present) and the MQTT password credential file (docs/service.md)")
    sp.add_argument("-c", "--config", metavar="FILE", help="the configuration to install (default: the documented "
                    "config.yaml); an existing /etc/livetok/config.yaml is kept")
    sp.add_argument("--root", default="/", metavar="DIR", help="install under this directory instead of / "
                    "(a staging tree: nothing is reloaded)")

    sp = add("uninstall-service", "service:uninstall", "remove the systemd unit (configuration, credential and "
             "state are left in place)")
    sp.add_argument("--root", default="/", metavar="DIR", help="the root it was installed under")

    sp = add("reload", "service:reload", "SIGHUP a running daemon and wait until it has applied or refused its "
             "configuration (the unit's ExecReload=; docs/service.md)")
    sp.add_argument("--pid", type=int, required=True, help="the daemon's process id ($MAINPID)")
    sp.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="wait at most this long (60 s)")
    sp.add_argument("--runtime-dir", metavar="DIR", help="where the daemon answers (default: $RUNTIME_DIRECTORY)")

    sp = add("monitor", "livetok.monitor.app:run_monitor", "a live terminal dashboard of the daemons' stats on an "
             "MQTT broker: fps, latency, A/V skew, drift, drops, bus; late, stalled or out-of-sync streams in red")
    add_monitor_arguments(sp)
    return p


def handler(spec: str) -> Callable[[argparse.Namespace], int]:
    """The function a ``handler`` spec names, its module imported now."""
    module, _, function = spec.partition(":")
    mod = importlib.import_module(module if "." in module else f"livetok.commands.{module}")
    return cast(Callable[[argparse.Namespace], int], getattr(mod, function or "command"))
