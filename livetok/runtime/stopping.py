"""SIGINT and SIGTERM for the whole life of ``livetok run``, start-up included; SIGHUP to reload.

Installed before anything slow (importing torch, loading codebooks, warming up), and never removed:
the first signal asks for a clean stop (sources stopped, queues drained, files whole, exit 0), a
second one asks to hurry (the shutdown deadline shrinks to :data:`HURRY_S`; whatever is left is
counted as dropped). Neither ever raises in the program: no ``KeyboardInterrupt`` traceback, even
from an ``atexit`` callback, and no exit 130/143 from a signal that arrives at a bad moment.

The handlers are plain ``signal.signal`` handlers: they run on the main thread, which is the event
loop's thread once it runs (uvloop wakes up for them at once). SIGHUP asks the running daemon to
re-read its configuration (:mod:`livetok.daemon.runner`, :mod:`livetok.pipeline.reload`); one
arriving during start-up is applied once the daemon runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

HURRY_S = 1.0  # what is left of the shutdown deadline after a second signal (s)


class StopControl:
    """Why and how urgently the run should stop; :meth:`bind` connects it to the event loop."""

    def __init__(self) -> None:
        self.reason = ""  # "SIGTERM", "SIGINT", "duration", ... ; "" while running
        self.signals = 0
        self.hurry = False
        self.reloads = 0  # SIGHUPs received
        self._reloads_seen = 0
        self._reload_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._hurry_event: asyncio.Event | None = None

    def install(self) -> StopControl:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handler)
        signal.signal(signal.SIGHUP, self._hup)
        return self

    def _hup(self, signum: int, frame: object) -> None:
        self.reloads += 1
        self._wake()

    async def wait_reload(self) -> None:
        """Until a SIGHUP arrives (one that came earlier is taken at once)."""
        assert self._reload_event is not None, "bind() first"
        await self._reload_event.wait()
        self._reload_event.clear()

    def done(self) -> None:
        """The run is over and reported: ignore further signals while the process exits. (Python's
        finalisation puts a Python-level handler back to the default, so a second signal arriving
        then would kill the process with 130/143 after a clean stop; an ignored one cannot.)"""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)

    def _handler(self, signum: int, frame: object) -> None:
        self.signals += 1
        if self.reason:
            self.hurry = True
        else:
            self.reason = signal.Signals(signum).name
        self._wake()

    def request(self, reason: str) -> None:
        """Stop for another reason (duration reached, all sources ended); the first reason wins."""
        if not self.reason:
            self.reason = reason
        self._wake()

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._set)

    def _set(self) -> None:
        if self._event is not None and self.reason:
            self._event.set()
        if self._hurry_event is not None and self.hurry:
            self._hurry_event.set()
        if self._reload_event is not None and self.reloads > self._reloads_seen:
            self._reloads_seen = self.reloads
            self._reload_event.set()

    def bind(self) -> None:
        """Call from the running loop: from now on :meth:`wait` and :attr:`hurried` work."""
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._hurry_event = asyncio.Event()
        self._reload_event = asyncio.Event()
        self._set()

    @property
    def requested(self) -> bool:
        return bool(self.reason)

    async def wait(self, timeout_s: float | None = None) -> bool:
        """Until a stop is requested (True) or ``timeout_s`` passes (False)."""
        assert self._event is not None, "bind() first"
        if timeout_s is None:
            await self._event.wait()
            return True
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


class Deadline:
    """The shutdown's deadline on the monotonic clock, shortened when the stop is hurried."""

    def __init__(self, seconds: float, stop: StopControl) -> None:
        self.stop = stop
        self._end = time.monotonic() + seconds
        self._hurried = False

    def left(self) -> float:
        """Seconds left (never negative)."""
        if self.stop.hurry and not self._hurried:
            self._hurried = True
            self._end = min(self._end, time.monotonic() + HURRY_S)
        return max(0.0, self._end - time.monotonic())

    @property
    def passed(self) -> bool:
        return self.left() <= 0.0
