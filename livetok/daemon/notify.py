"""The sd_notify protocol: tell systemd (``Type=notify``) when the daemon is ready, how it is, that
it is alive, reloading or stopping.

A datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a leading
``@`` is the abstract namespace), as ``sd_notify(3)`` describes. Without the variable (not under
systemd) every call does nothing. A send that fails is counted and never raised: the daemon must
not die because systemd's socket went away.

``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, when it names this process) say that systemd expects
``WATCHDOG=1`` at least that often; the daemon sends it every half of it, and only while both its
event loop and its tokenizer worker make progress (:mod:`livetok.pipeline.runner`).

Reload answers (:class:`ReloadAnswers`): ``systemctl reload`` must return only once the new
configuration is applied or refused, and with ``Type=notify`` (systemd 252; ``notify-reload`` came
in 253) it returns when ``ExecReload=`` exits. So ``ExecReload=`` is ``livetok reload --pid
$MAINPID`` (:mod:`livetok.service.reload`): it creates ``reload-TOKEN.request`` in the unit's
``RuntimeDirectory=`` (``$RUNTIME_DIRECTORY``), sends SIGHUP, and waits for
``reload-TOKEN.answer``: ``{"outcome": "applied" | "unchanged" | "refused", "line": "..."}``. The
daemon takes the requests present when a reload begins, before it reads the file, and answers
them when that reload ends; a request made after that is answered by the next reload, which its
own SIGHUP causes. So an answer always covers a reading of the file that began after the request.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path


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


REQUEST_SUFFIX = ".request"
ANSWER_SUFFIX = ".answer"


class ReloadAnswers:
    """The daemon's side of ``livetok reload``; inert without ``$RUNTIME_DIRECTORY``. A failure to
    answer is counted (``failed``) and never raised: the waiting command then times out and says so."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        first = env.get("RUNTIME_DIRECTORY", "").split(":")[0]  # systemd lists one per RuntimeDirectory=
        self.directory = Path(first) if first else None
        self.answered = 0
        self.failed = 0

    def take(self) -> list[Path]:
        """The requests waiting now (call before reading the configuration)."""
        if self.directory is None:
            return []
        try:
            return sorted(p for p in self.directory.iterdir()
                          if p.name.startswith("reload-") and p.name.endswith(REQUEST_SUFFIX))
        except OSError:
            self.failed += 1
            return []

    def answer(self, requests: list[Path], outcome: str, line: str) -> None:
        data = json.dumps({"outcome": outcome, "line": line}).encode()
        for req in requests:
            answer = req.with_name(req.name[: -len(REQUEST_SUFFIX)] + ANSWER_SUFFIX)
            tmp = answer.with_name(answer.name + ".tmp")
            try:
                tmp.write_bytes(data)
                os.replace(tmp, answer)  # whole or absent: the command never reads half an answer
                req.unlink(missing_ok=True)
                self.answered += 1
            except OSError:
                self.failed += 1
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)


def _one_line(value: str) -> str:
    return " ".join(value.split("\n"))
