"""SIGINT, SIGTERM and SIGHUP for the commands that do a job and exit (``tokenize``, ``fit``, ...).

Python's defaults are wrong for them: SIGTERM and SIGHUP kill the process on the spot, leaving a
command's hidden temporary output behind (livetok/outputs/atomic.py), and a SIGINT that lands while a
module is being imported leaves it half-initialised, so that the next import of it fails with an
unrelated ``AttributeError`` (seen as "internal error: AttributeError: module 'numpy._core' ...").

:func:`catching` makes all three raise :class:`Interrupted` (a ``KeyboardInterrupt``) on the main
thread, so every ``finally`` and ``except BaseException`` cleans up as for Ctrl-C, and remembers
the first signal: the command line reports an interrupted command as such (one line, exit
``128 + signal``: 130 for SIGINT) even when the exception was swallowed or turned into another one
on its way up, and :func:`checkpoint` raises it again where a command must not carry on after it
(before an output is put in place, between inputs). Inside :func:`held` a signal is only noted,
and raised at the end of the block: for the few statements that create or rename an output, which
must not be cut in two.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A signal asked the command to stop; ``exit_code`` is ``128 + signum`` (SIGINT: 130)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_received: int | None = None  # the first signal, for the command line's verdict
_pending: int | None = None  # a signal that came inside held(), raised at its end
_holding = 0


def _handler(signum: int, frame: object) -> None:
    global _received, _pending
    if _received is None:
        _received = signum
    if _holding:
        _pending = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def catching() -> Iterator[None]:
    """Within the block SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` (call it on the main
    thread); the handlers before it are put back at its end."""
    global _received, _pending
    _received = _pending = None
    before = {sig: signal.signal(sig, _handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def received() -> int | None:
    """The first signal in the latest :func:`catching` block, or None."""
    return _received


def checkpoint() -> None:
    """Raise :class:`Interrupted` if a signal came and its exception was swallowed on the way (torch
    imports numpy from C and carries on without it when that import is interrupted): a command
    that was asked to stop must not go on, nor put its output in place."""
    if _received is not None:
        raise Interrupted(_received)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Defer the signals' exception to the end of the block (which should be short)."""
    global _holding, _pending
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1
        if not _holding and _pending is not None:
            signum, _pending = _pending, None
            raise Interrupted(signum)
