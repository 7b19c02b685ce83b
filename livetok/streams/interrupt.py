"""Interrupting a blocked PyAV open or read from another thread, so ``stop()`` is prompt.

FFmpeg polls an *interrupt callback* while it waits on a socket (every 100 ms in its network
protocols); PyAV installs one, but only to enforce ``av.open(..., timeout=(open_s, read_s))``, and
does not let Python supply its own. Its callback decides "timed out" by reading
``time.monotonic()`` through the module global ``time`` of ``av.container.core``. We put a clock
there that is the real monotonic clock for every thread except a capture thread whose stop event
is set: for that one it leaps ahead, so the timeout that PyAV armed for the current operation
has expired and FFmpeg abandons it (``av.ExitError``) within ~100 ms.

The leap is never +inf: PyAV also reads the clock to *arm* a timeout (once per step: an open
arms it for ``avformat_open_input`` and again for ``avformat_find_stream_info``). So a stopped
thread's clock leaps a further ``_JUMP_S`` (32 years) at *every* read: whatever was armed, even
after the stop, has expired at its first check. ``_JUMP_S`` is larger than any timeout a source
arms (a listening source waits up to 30 days).

A thread may also register a *watcher*, called with the real time at each of those clock reads:
FFmpeg calls the callback about every 100 ms while it waits for data, and PyAV reads the clock
once per packet, so a watcher sees how long the thread has waited without a timeout having to end
the wait (a listening source reports "waiting" that way and keeps its socket).

When a PyAV release no longer reads its clock this way, :func:`install` returns False and a stop
waits for the read timeout instead (at most ``read_timeout_s``): slower, never hung.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import ModuleType

import av.container.core as _av_core

_JUMP_S = 1e9  # far beyond any open/read timeout a source uses (s; about 32 years)

Watcher = Callable[[float], None]
_lock = threading.Lock()
# thread ident -> that capture thread's stop event and its watcher
_events: dict[int, tuple[threading.Event, Watcher | None]] = {}
_leaps: dict[int, int] = {}  # thread ident -> clock reads since its stop event was set
_installed: bool | None = None


class _InterruptingClock:
    """Stands in for the ``time`` module inside ``av.container.core`` (it only calls ``monotonic``)."""

    def __init__(self, real: ModuleType) -> None:
        self._real = real

    def monotonic(self) -> float:
        now = time.monotonic()
        entry = _events.get(threading.get_ident())  # dict.get is atomic under the GIL: no lock here
        if entry is not None:
            event, watcher = entry
            if event.is_set():
                ident = threading.get_ident()  # only this thread writes its own key: no lock
                _leaps[ident] = n = _leaps.get(ident, 0) + 1
                return now + n * _JUMP_S
            if watcher is not None:
                watcher(now)
        return now

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)  # anything else PyAV might read: the real module's


def install() -> bool:
    """Put the interrupting clock in place (idempotent); False when this PyAV cannot be hooked."""
    global _installed
    with _lock:
        if _installed is None:
            current = getattr(_av_core, "time", None)
            if isinstance(current, _InterruptingClock):
                _installed = True
            elif isinstance(current, ModuleType) and callable(getattr(current, "monotonic", None)):
                _av_core.time = _InterruptingClock(current)  # type: ignore[attr-defined]
                _installed = True
            else:
                _installed = False
        return _installed


def register(stop: threading.Event, watcher: Watcher | None = None) -> bool:
    """Make the calling thread's PyAV waits end as soon as ``stop`` is set, and call ``watcher(now)``
    (``time.monotonic()`` seconds) at each of its PyAV clock reads; it must be quick and never raise.
    Returns :func:`install`'s answer: False means neither will happen."""
    ok = install()
    with _lock:
        _events[threading.get_ident()] = (stop, watcher)
        _leaps.pop(threading.get_ident(), None)
    return ok


def unregister() -> None:
    """Forget the calling thread (call before it ends: thread idents are reused)."""
    with _lock:
        _events.pop(threading.get_ident(), None)
        _leaps.pop(threading.get_ident(), None)
