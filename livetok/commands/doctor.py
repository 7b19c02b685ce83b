"""``livetok doctor``: is everything the daemon needs here, and what to do when it is not.

One line per part, ``ok``, ``warn`` or ``FAIL``, each failure with its fix. ``--json`` prints the same as
one JSON object. Exit 0 when every *required* part is there (a warning does not fail), 1 otherwise.

``python -m livetok.commands.doctor --native`` runs only the native-library checks; ``scripts/setup.sh`` uses it
before it says "ready". This module imports nothing but the standard library at import time, so it
still runs when a dependency is broken: each check imports what it tests and reports the failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REINSTALL = "rm -rf .venv && bash scripts/setup.sh (the lock pins versions that load together)"


@dataclass(frozen=True)
class Check:
    """The outcome of one check: ``status`` is ``ok``, ``warn`` or ``fail``; ``fix`` says what to do."""

    name: str
    status: str
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def line(self) -> str:
        label = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}[self.status]
        fix = f" -> {self.fix}" if self.fix and self.status != "ok" else ""
        return f"{label} {self.name:<11} {self.detail}{fix}"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def check_python() -> Check:
    v = sys.version_info
    detail = f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"
    if (v.major, v.minor) != (3, 11):
        return Check("python", "fail", detail, "livetok needs CPython 3.11: install python3.11, rerun scripts/setup.sh")
    return Check("python", "ok", detail)


def check_torch() -> Check:
    try:
        torch = importlib.import_module("torch")
        x = torch.ones(4) @ torch.ones(4)
        assert float(x) == 4.0
    except Exception as err:  # any failure to load is the finding
        return Check("torch", "fail", f"does not load: {_one_line(err)}", REINSTALL)
    cuda = "CUDA not seen, video tokenizes on the CPU"
    try:
        if torch.cuda.is_available():
            cuda = f"CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}"
    except Exception as err:
        cuda = f"CUDA check failed ({_one_line(err)}), video tokenizes on the CPU"
    return Check("torch", "ok", f"{torch.__version__}; {cuda}")


def check_torchaudio() -> Check:
    try:
        torch = importlib.import_module("torch")
        torchaudio = importlib.import_module("torchaudio")
        # The compiled extension: importing the package does not load it; this does (torchaudio 2.11.1 with
        # torch 2.11.0 failed right here with an undefined symbol).
        ext = importlib.import_module("torchaudio._extension")
        assert ext._IS_TORCHAUDIO_EXT_AVAILABLE, "compiled extension not built"
        fb = torchaudio.functional.melscale_fbanks(257, 0.0, 8000.0, 80, 16000)
        assert tuple(fb.shape) == (257, 80) and bool(torch.isfinite(fb).all())
    except Exception as err:
        return Check("torchaudio", "fail", f"does not load: {_one_line(err)}", REINSTALL)
    return Check("torchaudio", "ok", f"{torchaudio.__version__} (compiled extension loaded)")


def check_av() -> Check:
    try:
        av = importlib.import_module("av")
        ffmpeg = av.library_versions.get("libavformat", ())
        with av.open("testsrc2=size=64x48:rate=5:duration=0.2", format="lavfi") as c:
            frames = sum(1 for _ in c.decode(video=0))
        assert frames > 0
    except Exception as err:
        return Check("pyav", "fail", f"does not work: {_one_line(err)}", REINSTALL)
    fmt = ".".join(str(x) for x in ffmpeg) if ffmpeg else "?"
    return Check("pyav", "ok", f"{av.__version__}, FFmpeg libavformat {fmt} (decoded a lavfi test clip)")


def check_numba() -> Check:
    try:
        numba = importlib.import_module("numba")
        np = importlib.import_module("numpy")

        @numba.njit(cache=False)
        def _twice(a: Any) -> Any:
            return a * 2

        assert int(_twice(np.arange(3)).sum()) == 6
    except Exception as err:
        return Check("numba", "fail", f"does not compile: {_one_line(err)}", REINSTALL)
    return Check("numba", "ok", f"{numba.__version__} (compiled a kernel)")


def check_portaudio() -> Check:
    try:
        sd = importlib.import_module("sounddevice")
        version = sd.get_portaudio_version()[1]
        inputs = [d["name"] for d in sd.query_devices() if d.get("max_input_channels", 0) > 0]
    except OSError as err:
        return Check("portaudio", "fail", f"not found: {_one_line(err)}",
                     "sudo apt-get install libportaudio2 (scripts/setup.sh does)")
    except Exception as err:
        return Check("portaudio", "fail", f"does not work: {_one_line(err)}", REINSTALL)
    if not inputs:
        return Check("portaudio", "warn", f"{version}; no input devices (microphones cannot be captured)",
                     "plug in a microphone, or start PulseAudio; cameras and streams work without one")
    shown = ", ".join(inputs[:4]) + (f" and {len(inputs) - 4} more" if len(inputs) > 4 else "")
    return Check("portaudio", "ok", f"{version}; {len(inputs)} input devices: {shown}")


MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")  # where Debian puts it, off a user's PATH


def check_mosquitto() -> Check:
    exe = shutil.which("mosquitto") or next((p for p in MOSQUITTO_PATHS if os.access(p, os.X_OK)), None)
    if exe is None:
        return Check("mosquitto", "warn", "not installed (the demo and the tests start a private broker)",
                     "sudo apt-get install mosquitto mosquitto-clients; the daemon can use any MQTT broker")
    try:
        out = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=5)
        m = re.search(r"mosquitto version (\S+)", out.stdout + out.stderr)
        version = m.group(1) if m else "unknown version"
    except (OSError, subprocess.TimeoutExpired) as err:
        return Check("mosquitto", "warn", f"{exe} does not run: {_one_line(err)}",
                     "sudo apt-get install --reinstall mosquitto")
    return Check("mosquitto", "ok", f"{version} ({exe})")


def check_codebooks(config: Any) -> Check:
    from livetok.errors import LivetokError

    try:
        from livetok.tokenizers.codebooks import default_codebook_path, load_codebooks

        path = config.tokenizer.codebooks or default_codebook_path()
        cbs = load_codebooks(path)
        cbs.check(config.tokenizer)
    except LivetokError as err:
        return Check("codebooks", "fail", str(err),
                     "point tokenizer.codebooks at a file made by `livetok fit`, or remove the key for the defaults")
    except Exception as err:
        return Check("codebooks", "fail", f"cannot be checked: {_one_line(err)}", REINSTALL)
    return Check("codebooks", "ok", f"{path}: id {cbs.codebook_id}, loaded and checked against the configuration")


def check_tokenizers(config: Any) -> Check:
    """The plug-in tokenizers: options, model files opened and probed, codebooks checked, as `run` does
    at its start (``check-config``'s lines)."""
    from livetok.errors import LivetokError

    try:
        from livetok.daemon.preflight import check_tokenizers as load

        loaded = load(config)
    except LivetokError as err:
        return Check("tokenizers", "fail", str(err),
                     "fix the named key or file (docs/tokenizers.md, \"Bad input and exit codes\"); "
                     "`livetok check-config -c FILE`")
    except Exception as err:
        return Check("tokenizers", "fail", f"cannot be checked: {_one_line(err)}", REINSTALL)
    return Check("tokenizers", "ok", ", ".join(loaded) + " (models loaded and probed, codebooks checked)")


BROKER_TIMEOUT_S = 5.0  # doctor answers soon: at most this long for the broker's CONNACK


def check_broker(config: Any) -> Check:
    """The configuration's MQTT broker: reachable and accepting the login (with its TLS), or not
    configured. Never shows a password; connects with a client id of its own (the daemon's would
    throw a running daemon off the broker)."""
    mqtt = config.bus_settings()
    if mqtt.host is None:
        return Check("broker", "ok", "not configured (mqtt.host is not set): tokens go to the file sinks only")
    from livetok.errors import LivetokError

    try:
        from livetok.sinks.mqtt_setup import CREDENTIALS_ENV, connect_options, default_instance, load_password

        if mqtt.password_credential is not None and not os.environ.get(CREDENTIALS_ENV):
            return _broker_tcp(mqtt, f"the password is systemd credential {mqtt.password_credential!r}, which only "
                               "the service can read: the login was not tried")
        opts = connect_options(mqtt, load_password(mqtt), mqtt.instance or default_instance())
    except LivetokError as err:
        return Check("broker", "fail", str(err), "fix the named key; `livetok check-config -c FILE`")
    except Exception as err:
        return Check("broker", "fail", f"cannot be checked: {_one_line(err)}", REINSTALL)
    return _broker_login(opts)


def _broker_login(opts: Any) -> Check:
    import asyncio
    import dataclasses
    import time

    from livetok.bus.connect import bus_error, make_client

    opts = dataclasses.replace(opts, client_id=f"livetok-doctor-{os.getpid()}", persistent=False,
                               timeout_s=min(opts.timeout_s, BROKER_TIMEOUT_S))

    async def connect() -> None:
        async with make_client(opts):
            pass

    started = time.monotonic()
    try:
        asyncio.run(connect())
    except Exception as err:
        failure = bus_error(err, opts)
        text = str(failure)
        fix = ("start the broker, or correct mqtt.host / mqtt.port (is it listening there? a firewall?)"
               if failure.retryable else
               "check mqtt.tls (ca_file, the broker's certificate and name)" if text.startswith("TLS") else
               "check mqtt.username, the password (mqtt.password_file or password_credential), mqtt.protocol, "
               "and the broker's users")
        return Check("broker", "fail", text, fix)
    login = f"logged in as {opts.url.username!r}" if opts.url.username else "connected without a login"
    return Check("broker", "ok", f"{opts.url}: reachable, {login} (MQTT {opts.protocol.value}"
                 f"{', TLS verified' if opts.url.tls else ''}; {(time.monotonic() - started) * 1000:.0f} ms)")


def _broker_tcp(mqtt: Any, why: str) -> Check:
    import socket

    port = mqtt.port or (8883 if mqtt.tls.enabled else 1883)
    where = f"{mqtt.host}:{port}"
    try:
        with socket.create_connection((mqtt.host, port), timeout=BROKER_TIMEOUT_S):
            pass
    except OSError as err:
        return Check("broker", "fail", f"{where}: not reachable ({err.strerror or err}); {why}",
                     "start the broker, or correct mqtt.host / mqtt.port (is it listening there? a firewall?)")
    return Check("broker", "ok", f"{where}: accepts connections; {why}")


MIN_FREE_BYTES = 1 << 30


def check_disk(config: Any) -> Check:
    dirs = sorted({str(Path(s.path).resolve().parent) for s in config.sinks if getattr(s, "path", None)})
    if not dirs:
        return Check("disk", "ok", "no file sinks configured")
    parts, worst = [], "ok"
    for d in dirs:
        probe = Path(d)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        parts.append(f"{d}: {free / 2**30:.1f} GiB free")
        if not Path(d).is_dir() or not os.access(d, os.W_OK):
            return Check("disk", "fail", f"{d}: sink directory missing or not writable",
                         f"mkdir -p {d} and give the daemon's user write access")
        if free < MIN_FREE_BYTES:
            worst = "warn"
    return Check("disk", worst, "; ".join(parts), "free space where the sinks write (under 1 GiB left)")


def check_metrics(config: Any) -> Check:
    """The Prometheus endpoint's port, when one is configured: can ``run`` listen there now?"""
    from livetok.errors import LivetokError

    try:
        from livetok.daemon.preflight import check_metrics as can_listen

        can_listen(config)
    except LivetokError as err:
        if "in use by a running livetok daemon" in str(err):  # the service this configuration runs
            return Check("metrics", "ok", f"{config.metrics.listen}: served by a running livetok daemon")
        return Check("metrics", "fail", str(err), "free the port, or pick another metrics.listen")
    except Exception as err:
        return Check("metrics", "fail", f"cannot be checked: {_one_line(err)}", REINSTALL)
    return Check("metrics", "ok", f"{config.metrics.listen}: free to listen on")


NATIVE: tuple[Callable[[], Check], ...] = (check_torch, check_torchaudio, check_av, check_numba, check_portaudio)


def run_checks(config: Any | None, native_only: bool = False) -> list[Check]:
    """All checks in order; ``config`` is a LivetokConfig (None when it could not be loaded)."""
    checks = [check_python()] + [fn() for fn in NATIVE]
    if native_only:
        return checks
    checks.append(check_mosquitto())
    if config is not None:
        checks += [check_broker(config), check_codebooks(config), check_disk(config)]
        if config.plugin_entries():
            checks.append(check_tokenizers(config))
        if config.metrics.listen:
            checks.append(check_metrics(config))
    return checks


def report(checks: Sequence[Check], as_json: bool, out: Any) -> int:
    ok = not any(c.failed for c in checks)
    if as_json:
        json.dump({"ok": ok, "checks": [asdict(c) for c in checks]}, out, indent=2)
        out.write("\n")
    else:
        for c in checks:
            print(c.line(), file=out)
    return 0 if ok else 1


def doctor(config_path: str | None, as_json: bool, out: Any = None) -> int:
    """The ``livetok doctor`` command (``out``: sys.stdout as it is at the call)."""
    out = sys.stdout if out is None else out
    checks: list[Check] = []
    config = None
    try:
        from livetok.config import load_config
        from livetok.errors import LivetokError

        try:
            config = load_config(config_path)
            checks.append(Check("config", "ok", f"{config_path or 'embedded defaults'}: valid"))
        except LivetokError as err:
            checks.append(Check("config", "fail", str(err), "fix the named key; `livetok check-config -c FILE`"))
    except Exception as err:
        checks.append(Check("config", "fail", f"cannot be loaded: {_one_line(err)}", REINSTALL))
    return report(run_checks(config) + checks, as_json, out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m livetok.commands.doctor")
    p.add_argument("--native", action="store_true", help="only the native libraries (used by scripts/setup.sh)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.native:
        checks = run_checks(None, native_only=True)
        failed = [c for c in checks if c.failed]
        for c in failed:
            print(f"setup: {c.name}: {c.detail} -> {c.fix}", file=sys.stderr)
        return 1 if failed else 0
    return doctor(None, args.json)


if __name__ == "__main__":
    sys.exit(main())


def command(args: argparse.Namespace) -> int:
    """``livetok doctor``."""
    return doctor(args.config, args.json)
