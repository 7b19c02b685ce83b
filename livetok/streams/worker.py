"""The life cycle every capture thread shares: start, prompt stop, faults counted, reconnect with backoff.

A subclass implements :meth:`SourceThread._session`: open the source, deliver until it is lost, the
source ends, or ``stop()`` is called, and say which. Whatever the session raises is caught here,
counted in :class:`SourceStats` and followed by a backoff wait: nothing escapes the thread, so a
source fault can never end the process.

The log says a fault once, not at every retry: the first failure is a warning, a retry that fails
for the same reason is only counted (and logged at debug level), a different reason is a warning
again, and the first delivery after failures says how many attempts failed (info).
"""

from __future__ import annotations

import enum
import logging
import threading

from livetok.errors import LivetokError
from livetok.runtime.backoff import Backoff, BackoffPolicy
from livetok.streams import interrupt
from livetok.streams.types import SourceState, SourceStats

log = logging.getLogger("livetok.streams")


class Outcome(enum.Enum):
    """How a session ended (when it did not raise)."""

    FINISHED = "finished"  # the source has nothing more (a file at its end) or stop() was called
    AGAIN = "again"  # open it again at once (a looped file wrapped)
    LOST = "lost"  # the connection ended: reconnect after a backoff delay


class Stall(Exception):
    """A read (or an open) got no data within its timeout while the source stayed connected."""


class SourceThread:
    """One source's capture thread. Subclasses implement ``_session``."""

    def __init__(self, name: str, stats: SourceStats, backoff: BackoffPolicy) -> None:
        self.name = name
        self.stats = stats
        self._stopping = threading.Event()
        self._backoff = Backoff(backoff)
        self._thread: threading.Thread | None = None
        self._said: str | None = None  # the fault last logged as a warning (None: delivering)
        self._failed = 0  # faults since the source last delivered

    # -- public ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the capture thread (once)."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: already started")
        self.stats.state = SourceState.CONNECTING
        self._thread = threading.Thread(target=self._main, name=f"livetok-src-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Ask the thread to end and wait up to ``timeout_s`` (s); True when it has ended.

        Prompt in every state: backoff and pacing waits are on the stop event, and a blocked
        PyAV open or read is interrupted (see :mod:`livetok.streams.interrupt`).
        """
        self._stopping.set()
        t = self._thread
        if t is None:
            self.stats.state = SourceState.STOPPED
            return True
        if t is not threading.current_thread():
            t.join(timeout_s)
        return not t.is_alive()

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def alive(self) -> bool:
        """Whether the capture thread is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- for subclasses --------------------------------------------------------------------------

    def _session(self) -> Outcome:
        raise NotImplementedError

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (s) unless stopped first; True when stop() was called."""
        return self._stopping.wait(max(0.0, seconds))

    def _delivered(self) -> None:
        """Data flowed: the source is running (and may earn a backoff reset)."""
        if self.stats.state is not SourceState.RUNNING:
            self.stats.state = SourceState.RUNNING
            if self._failed:
                log.info("%s: delivering again after %d failed attempt%s", self.name, self._failed,
                         "" if self._failed == 1 else "s")
                self._failed, self._said = 0, None
        self._backoff.running()

    def _watcher(self) -> interrupt.Watcher | None:
        """Called at each PyAV clock read of this thread (see :mod:`livetok.streams.interrupt`); None: none."""
        return None

    # -- the thread ------------------------------------------------------------------------------

    def _main(self) -> None:
        interrupt.register(self._stopping, self._watcher())
        reconnect = False  # the next session follows a fault or a lost connection
        try:
            while not self._stopping.is_set():
                if reconnect:
                    self.stats.reconnects += 1
                reconnect = True
                self.stats.state = SourceState.CONNECTING
                try:
                    outcome = self._session()
                except Stall as err:
                    if self._stopping.is_set():
                        break
                    self.stats.stalls += 1
                    self._fault(f"stalled: {err}")
                    continue
                except Exception as err:  # every fault, expected or not, is counted and retried
                    if self._stopping.is_set():
                        break
                    self.stats.errors += 1
                    self._fault(str(err) or type(err).__name__, unexpected=not _expected(err))
                    continue
                if outcome is Outcome.FINISHED:
                    break
                if outcome is Outcome.AGAIN:
                    reconnect = False
                elif not self._stopping.is_set():
                    self.stats.errors += 1
                    self._fault("connection lost (end of stream)")
        finally:
            self.stats.state = SourceState.STOPPED
            interrupt.unregister()

    def _fault(self, message: str, unexpected: bool = False) -> None:
        self.stats.last_error = message
        self.stats.state = SourceState.BACKOFF
        delay = self._backoff.next_delay_s()
        self._failed += 1
        if message == self._said:
            log.debug("%s: %s (attempt %d); reconnecting in %.1f s", self.name, message, self._failed, delay)
        elif unexpected:
            log.exception("%s: unexpected fault, reconnecting in %.1f s (said once; again when the fault changes)",
                          self.name, delay)
        else:
            log.warning("%s: %s; reconnecting in %.1f s (said once; again when the reason changes)", self.name, message,
                        delay)
        self._said = message
        self._wait(delay)


def _expected(err: Exception) -> bool:
    # Our own translated errors carry a clear message; anything else deserves a traceback in the log.
    return isinstance(err, LivetokError)
