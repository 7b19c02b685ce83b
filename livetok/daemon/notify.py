"""The sd_notify protocol: tell systemd (``Type=notify``) when the daemon is ready, how it is, that
it is alive, reloading or stopping.

A datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a leading
``@`` is the abstract namespace), as ``sd_notify(3)`` describes. Without the variable (not under
systemd) every call does nothing. A send that fails is counted and never raised: the daemon must
not die because systemd's socket went away.

``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, when it names this process) say that systemd expects
``WATCHDOG=1`` at least that often; the daemon sends it every half of it, and only while both its
event loop and its tokenizer worker make progress (:mod:`livetok.daemon.runner`).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


class Notifier:
    """Sends sd_notify messages; a no-op when ``$NOTIFY_SOCKET`` is not set."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self.address = ("\0" + path[1:]) if path.startswith("@") else path
        self.sent = 0
        self.failed = 0
        self.last_error = ""
        self._sock: socket.socket | None = None
        usec = 0
        pid = env.get("WATCHDOG_PID")
        if pid is None or pid == str(os.getpid()):
            try:
                usec = int(env.get("WATCHDOG_USEC", "0"))
            except ValueError:
                usec = 0
        self.watchdog_usec = max(0, usec)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half of WATCHDOG_USEC (None: no watchdog asked for)."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec and self.enabled else None

    def send(self, **fields: str | int) -> bool:
        """``send(READY=1, STATUS="...")`` -> one datagram; True when it went out."""
        if not self.enabled:
            return False
        text = "\n".join(f"{k}={_one_line(str(v))}" for k, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(text.encode("utf-8", "replace"), self.address)
        except OSError as err:
            self.failed += 1
            self.last_error = err.strerror or str(err)
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def extend_timeout(self, seconds: float) -> bool:
        """Start-up (or stop) goes on: systemd waits ``seconds`` more from now."""
        return self.send(EXTEND_TIMEOUT_USEC=int(seconds * 1e6))

    def reloading(self) -> bool:
        """RELOADING=1 with the monotonic time, as ``Type=notify-reload`` wants it."""
        return self.send(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self, status: str) -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(value: str) -> str:
    return " ".join(value.split("\n"))
