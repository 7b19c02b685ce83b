"""The ``livetok`` command line. Every expected failure prints one line on stderr and exits non-zero."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from livetok import __version__
from livetok.commands.flagparser import FlagError, FlagParser
from livetok.errors import LivetokError
from livetok.outputs import interrupts

if TYPE_CHECKING:
    from livetok.config import LivetokConfig

Handler = Callable[[argparse.Namespace], int]


def _cmd_tokenize(args: argparse.Namespace) -> int:
    from livetok.commands.tokenize import tokenize_files
    from livetok.config import load_config
    from livetok.tokenizers import Tokenizers

    toks = Tokenizers.from_config(load_config(args.config).tokenizer)
    report = tokenize_files([Path(p) for p in args.inputs], toks, Path(args.output))
    total = sum(report.packets.values())
    print(f"wrote {total} packets to {args.output}", file=sys.stderr)
    for (source, modality, scale), n in sorted(report.packets.items()):
        print(f"  {source} {modality} {scale}: {n}", file=sys.stderr)
    for w in report.warnings:  # an input that ended early: the tokens stand, exit 0 (docs/cli.md)
        print(f"livetok: warning: {w}", file=sys.stderr)
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from livetok.commands import probe

    if args.config:  # a token file carries all probe needs; a configuration given is checked all the same
        from livetok.config import load_config

        load_config(args.config)
    path = Path(args.file)
    if args.tokens:
        errors = probe.print_tokens(path, sys.stdout)
        for e in errors:
            print(f"livetok: warning: {e}", file=sys.stderr)
        return 0 if not errors else 65
    result = probe.probe_file(path)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        probe.print_table(result, sys.stdout)
    return 0 if not result.errors else 65


def _cmd_fit(args: argparse.Namespace) -> int:
    from livetok.config import load_config
    from livetok.outputs import check_output
    from livetok.tokenizers.codebooks import load_codebooks, save_codebooks
    from livetok.tokenizers.fit import FitOptions, fit, media_files

    cfg = load_config(args.config).tokenizer
    files = media_files([Path(p) for p in args.inputs])
    base = None if args.no_base else load_codebooks(cfg.codebooks)
    check_output(Path(args.output))  # before minutes of fitting, not after
    cbs = fit(files, cfg, FitOptions(iters=args.iters, seed=args.seed), base)
    save_codebooks(cbs, Path(args.output), {"fitted_on": ",".join(sorted({f.parent.name for f in files}))})
    print(f"wrote codebooks {cbs.codebook_id} to {args.output} ({len(files)} files)", file=sys.stderr)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from livetok.commands.quality import evaluate
    from livetok.config import load_config
    from livetok.tokenizers import Tokenizers

    toks = Tokenizers.from_config(load_config(args.config).tokenizer)
    report = evaluate(Path(args.input), toks, compare=not args.no_compare)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        from livetok.commands.quality import format_report

        print(format_report(report))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from livetok.commands.inspect import inspect
    from livetok.config import load_config
    from livetok.tokenizers import Tokenizers

    toks = Tokenizers.from_config(load_config(args.config).tokenizer)
    skipped = inspect(Path(args.file), Path(args.output), toks, Path(args.source) if args.source else None)
    print(f"wrote {args.output}" + (f" from what could be read ({len(skipped)} damaged regions skipped)"
                                    if skipped else ""), file=sys.stderr)
    for e in skipped:
        print(f"livetok: warning: {e}", file=sys.stderr)
    return 65 if skipped else 0  # like probe: a damaged token file is reported, after drawing


def _cmd_run(args: argparse.Namespace) -> int:
    from livetok.runtime.stopping import StopControl

    # First, before anything slow: SIGINT/SIGTERM from now on mean "stop cleanly" (exit 0), never a
    # traceback or exit 130/143, even during the seconds the tokenizers take to load.
    stop = StopControl().install()
    from livetok.commands.run_flags import compose
    from livetok.config import load_config
    from livetok.daemon.main import run_and_report
    from livetok.daemon.preflight import preflight
    from livetok.runtime import log

    log.configure(verbose=args.verbose)

    def configuration() -> LivetokConfig:
        """The file and the flags, as at start; SIGHUP re-reads them (checked like check-config)."""
        cfg = compose(load_config(args.config), args.source or [], args.mic or [], args.sink or [],
                      args.password_file)
        preflight(cfg)
        return cfg

    try:
        duration = _duration(args.duration)
        cfg = compose(load_config(args.config), args.source or [], args.mic or [], args.sink or [],
                      args.password_file)
        return run_and_report(cfg, duration, stop, sys.stderr, reconfigure=configuration)
    finally:
        sys.stderr.flush()
        stop.done()


def _duration(value: str | None) -> float | None:
    """``--duration``: a finite number of seconds above 0 (ConfigError, exit 78, otherwise)."""
    import math

    from livetok.errors import ConfigError

    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"--duration {value}: expected a number of seconds above 0")
    return seconds


def _cmd_check_config(args: argparse.Namespace) -> int:
    from livetok.config import load_config
    from livetok.daemon.preflight import preflight

    cfg = load_config(args.config)
    notes: list[str] = []  # a sink in the service's StateDirectory before its first start
    codebook_id = preflight(cfg, notes)  # everything `run` checks before capture starts
    groups = ", ".join(f"{g.name}(video={g.video}, audio={g.audio})" for g in cfg.effective_groups()) or "none"
    print(f"{args.config}: valid; {len(cfg.sources)} sources, groups: {groups}; {len(cfg.sinks)} sinks; "
          f"codebooks {codebook_id}")
    for note in notes:
        print(f"  note: {note}")
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from livetok.streams.devices import format_devices, list_devices

    print(format_devices(list_devices()))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from livetok.commands.doctor import doctor

    return doctor(args.config, args.json)


def _cmd_demo(args: argparse.Namespace) -> int:
    from livetok.commands.demo import run_demo

    return run_demo(Path(args.out_dir), args.seconds, args.broker)


def _cmd_tail(args: argparse.Namespace) -> int:
    from livetok.commands.tail import run_tail  # the light client only: no torch on model-server machines

    return run_tail(args)


def _cmd_record(args: argparse.Namespace) -> int:
    from livetok.commands.tail import run_record

    return run_record(args)


def _cmd_install_service(args: argparse.Namespace) -> int:
    from livetok.service.install import install_service

    return install_service(args.root, args.config, sys.stdout, sys.stderr)


def _cmd_uninstall_service(args: argparse.Namespace) -> int:
    from livetok.service.install import uninstall_service

    return uninstall_service(args.root, sys.stdout, sys.stderr)


def _cmd_reload(args: argparse.Namespace) -> int:
    from livetok.service.reload import reload_and_wait

    return reload_and_wait(args.pid, args.timeout, args.runtime_dir, sys.stdout)


def _cmd_monitor(args: argparse.Namespace) -> int:
    from livetok.monitor.app import run_monitor  # the light client and rich only: no torch

    return run_monitor(args)


def _parser() -> argparse.ArgumentParser:
    p = FlagParser(prog="livetok", description="Streaming real-time media tokenizer.")
    p.add_argument("--version", action="version", version=f"livetok {__version__}")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug lines, and the traceback of an unexpected error (a bug: please report it)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(handler=handler)
        return sp

    def config_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-c", "--config", help="config.yaml (default: embedded defaults)")

    sp = add("demo", _cmd_demo, "the synthetic source live through the daemon into a private MQTT broker and a "
             "subscriber; report what it received, latency, skew, gaps")
    sp.add_argument("--out-dir", default="livetok-demo", help="where the tokens and picture go")
    sp.add_argument("--broker", metavar="URL", help="use this broker (mqtt://HOST[:PORT]) instead of a private one")
    sp.add_argument("--seconds", type=float, default=6.0, help="how long to run (s)")

    sp = add("run", _cmd_run, "run sources -> alignment -> tokenizers -> sinks until stopped (SIGINT/SIGTERM)")
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

    sp = add("check-config", _cmd_check_config, "validate a configuration file and exit (78 when invalid)")
    sp.add_argument("-c", "--config", required=True, help="config.yaml")

    add("devices", _cmd_devices, "list V4L2 cameras and PortAudio input devices")

    sp = add("doctor", _cmd_doctor, "check that everything the daemon needs is here; one line per part, with the fix")
    config_arg(sp)
    sp.add_argument("--json", action="store_true", help="one JSON object: {ok, checks: [{name, status, detail, fix}]}")

    sp = add("tokenize", _cmd_tokenize, "tokenize media files into a .ltk token file")
    sp.add_argument("inputs", nargs="+", metavar="INPUT", help="any file FFmpeg opens: video, audio, still image")
    sp.add_argument("-o", "--output", required=True, metavar="OUT.ltk")
    config_arg(sp)

    sp = add("probe", _cmd_probe, "summarise a .ltk token file")
    sp.add_argument("file", metavar="FILE.ltk")
    config_arg(sp)
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="one JSON summary")
    g.add_argument("--tokens", action="store_true",
                   help="one JSON line per record: a token packet, or an aligned step with its packets")

    from livetok.commands.tail_args import add_bus_arguments

    sp = add("tail", _cmd_tail, "watch token and step messages on an MQTT broker, one line each")
    add_bus_arguments(sp)
    sp.add_argument("--json", action="store_true", help="JSON lines (probe --tokens' shape plus topic, run_id)")

    sp = add("record", _cmd_record, "subscribe to an MQTT broker and write every token packet and step to a .ltk file")
    add_bus_arguments(sp)
    sp.add_argument("-o", "--output", required=True, metavar="FILE.ltk")

    sp = add("eval", _cmd_eval, "tokenize, decode and report quality (PSNR, log-mel SNR, bits, perplexity)")
    sp.add_argument("input", metavar="INPUT")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--no-compare", action="store_true", help="skip the JPEG/WebP/Opus comparison")
    config_arg(sp)

    sp = add("inspect", _cmd_inspect, "draw reconstructions per scale and depth beside the originals")
    sp.add_argument("file", metavar="FILE.ltk")
    sp.add_argument("-o", "--output", required=True, metavar="PICTURE.png")
    sp.add_argument("--source", metavar="MEDIA", help="the media the tokens came from, drawn beside them")
    config_arg(sp)

    sp = add("fit", _cmd_fit, "learn projections and RVQ codebooks from media files or folders")
    sp.add_argument("inputs", nargs="+", metavar="INPUT")
    sp.add_argument("-o", "--output", required=True, metavar="CODEBOOKS.safetensors")
    sp.add_argument("--iters", type=int, default=20, help="Lloyd iterations per level")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--no-base", action="store_true", help="do not take unfitted modalities from the current codebooks")
    config_arg(sp)

    sp = add("install-service", _cmd_install_service, "install the systemd unit, /etc/livetok/config.yaml (kept if "
             "present) and the MQTT password credential file (docs/service.md)")
    sp.add_argument("-c", "--config", metavar="FILE", help="the configuration to install (default: the documented "
                    "config.yaml); an existing /etc/livetok/config.yaml is kept")
    sp.add_argument("--root", default="/", metavar="DIR", help="install under this directory instead of / "
                    "(a staging tree: nothing is reloaded)")

    sp = add("uninstall-service", _cmd_uninstall_service, "remove the systemd unit (configuration, credential and "
             "state are left in place)")
    sp.add_argument("--root", default="/", metavar="DIR", help="the root it was installed under")

    sp = add("reload", _cmd_reload, "SIGHUP a running daemon and wait until it has applied or refused its "
             "configuration (the unit's ExecReload=; docs/service.md)")
    sp.add_argument("--pid", type=int, required=True, help="the daemon's process id ($MAINPID)")
    sp.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="wait at most this long (60 s)")
    sp.add_argument("--runtime-dir", metavar="DIR", help="where the daemon answers (default: $RUNTIME_DIRECTORY)")

    from livetok.monitor.args import add_monitor_arguments

    sp = add("monitor", _cmd_monitor, "a live terminal dashboard of the daemons' stats on an MQTT broker: fps, "
             "latency, A/V skew, drift, drops, bus; late, stalled or out-of-sync streams in red")
    add_monitor_arguments(sp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # SIGINT, SIGTERM and SIGHUP stop a command with one line and 128 + the signal, its outputs
    # cleaned up, from the first moment (livetok/outputs/interrupts.py); `run` handles them itself.
    with interrupts.catching():
        try:
            args = _parser().parse_args(argv)
        except FlagError as err:  # 78 like any bad flag value, one line (argparse alone: usage and 2)
            print(f"livetok: error: {err}", file=sys.stderr)
            return err.exit_code
        except KeyboardInterrupt as err:
            return _interrupted(err)
        if args.handler is not _cmd_run:
            return _dispatch(args)
    return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args))
    except KeyboardInterrupt as err:
        return _interrupted(err)
    except BrokenPipeError:
        return 141
    except Exception as err:
        if interrupts.received() is not None:
            # The signal landed where it was turned into another error (an import cut short leaves
            # its module half-made, and the next import of it fails): it is still an interruption.
            return _interrupted(err)
        if isinstance(err, LivetokError):
            print(f"livetok: error: {err}", file=sys.stderr)
            return err.exit_code
        if args.verbose:  # a bug: one line (and exit 1), the traceback only when asked for
            raise
        print(f"livetok: internal error: {type(err).__name__}: {err} (run with -v for the traceback)",
              file=sys.stderr)
        return 1


def _interrupted(err: BaseException) -> int:
    signum = err.signum if isinstance(err, interrupts.Interrupted) else interrupts.received()
    signum = signum or signal.SIGINT
    print(f"livetok: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
    return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
