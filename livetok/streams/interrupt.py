"""Interrupting a blocked PyAV open or read from another thread, so ``stop()`` is prompt.

FFmpeg polls an *interrupt callback* while it waits on a socket (every 100 ms in its network
protocols); PyAV installs one, but only to enforce ``av.open(..., timeout=(open_s, read_s))``, and
does not let Python supply its own. Its callback decides "timed out" by reading
``time.monotonic()`` through the module global ``time`` of ``av.container.core``. We put a clock
there that is the real monotonic clock for every thread except a capture thread whose stop event
is set: for that one it reads a day ahead, so the timeout that PyAV armed for the current
operation has expired and FFmpeg abandons it (``av.ExitError``) within ~100 ms.

The jump is an offset, never +inf: PyAV also reads the clock to *arm* the timeout, and an
operation armed after the jump still times out normally (start and now both carry the offset).

When a PyAV release no longer reads its clock this way, :func:`install` returns False and a stop
waits for the read timeout instead (at most ``read_timeout_s``): slower, never hung.
"""

from __future__ import annotations

import threading
import time
from types import ModuleType

import av.container.core as _av_core

_JUMP_S = 86_400.0  # far beyond any open/read timeout a source uses (s)

_lock = threading.Lock()
_events: dict[int, threading.Event] = {}  # thread ident -> that capture thread's stop event
_installed: bool | None = None


class _InterruptingClock:
    """Stands in for the ``time`` module inside ``av.container.core`` (it only calls ``monotonic``)."""

    def __init__(self, real: ModuleType) -> None:
        self._real = real

    def monotonic(self) -> float:
        now = time.monotonic()
        event = _events.get(threading.get_ident())  # dict.get is atomic under the GIL: no lock here
        if event is not None and event.is_set():
            return now + _JUMP_S
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


def register(stop: threading.Event) -> None:
    """Make the calling thread's PyAV waits end as soon as ``stop`` is set."""
    install()
    with _lock:
        _events[threading.get_ident()] = stop


def unregister() -> None:
    """Forget the calling thread (call before it ends: thread idents are reused)."""
    with _lock:
        _events.pop(threading.get_ident(), None)
