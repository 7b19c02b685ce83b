"""A private Mosquitto for ``livetok demo``: its own process, config and folder, on a free loopback port.

Nothing system-wide is touched: not Debian's ``mosquitto.service``, not ``/etc/mosquitto``. The
broker listens on 127.0.0.1 only, allows anonymous clients (it is reachable from this machine only,
and only while the demo runs), keeps no persistence, and is stopped (SIGTERM, then SIGKILL) when
the context ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from livetok.errors import BusError

SEARCH = "/usr/sbin:/usr/local/sbin:/sbin"
START_S = 10.0


def find_mosquitto() -> str:
    path = shutil.which("mosquitto") or shutil.which("mosquitto", path=SEARCH)
    if path is None:
        raise BusError("mosquitto is not installed: sudo apt-get install mosquitto (scripts/setup.sh does), "
                       "or give an existing broker with --broker mqtt://HOST", retryable=False)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateBroker:
    """``with PrivateBroker() as b: b.url`` — a Mosquitto of our own for as long as the block runs."""

    def __init__(self) -> None:
        self.binary = find_mosquitto()
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def __enter__(self) -> PrivateBroker:
        self._dir = tempfile.TemporaryDirectory(prefix="livetok-broker-")
        folder = Path(self._dir.name)
        self.port = free_port()
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
                 "log_dest file " + str(folder / "mosquitto.log")]
        if os.geteuid() == 0:  # as root Mosquitto would switch to the 'mosquitto' user, which cannot read here
            lines.insert(0, f"user {getpass.getuser()}")
        conf = folder / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        self._proc = subprocess.Popen([self.binary, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = (self._proc.stderr.read() if self._proc.stderr else b"").decode(errors="replace").strip()
                self.close()
                raise BusError(f"the private mosquitto did not start: {err.splitlines()[-1] if err else 'it exited'}",
                               retryable=False)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.close()
        raise BusError(f"the private mosquitto did not listen on 127.0.0.1:{self.port} within {START_S:g} s",
                       retryable=False)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if proc.stderr is not None:
                proc.stderr.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
