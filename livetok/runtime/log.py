"""The daemon's event lines: one line per event, with a syslog priority prefix under journald.

Every part logs through the standard ``logging`` module under the ``livetok`` logger (sinks:
``livetok.sink``, capture threads: ``livetok.streams``, the runner: ``livetok.daemon``). This module
formats them as ``livetok: MESSAGE`` on stderr; when stderr is journald's stream (systemd sets
``JOURNAL_STREAM`` to its device and inode), each line starts with ``<N>``, the priority journald
files it under (``sd-daemon(3)``):

    <2> critical   <3> error   <4> warning   <5> notice   <6> info   <7> debug (only with -v)

Under the unit, a line without a prefix is filed as an error (``SyslogLevel=err``): the daemon's
own lines all carry one, so what has none is a command-line error (a bad configuration at start,
printed by :func:`livetok.cli.main`; exit 78) or a crash. Python warnings (``warnings.warn``, from
livetok's libraries) are routed here too, as warnings (``<4>``), so they are not mistaken for errors.

No traceback unless asked for (``-v``): an exception logged with its traceback is one line plus
"(-v shows the traceback)". No secret is ever formatted into a message (passwords are
:class:`~livetok.bus.secret.Secret` objects that print as ``***``). The chatter of paho/aiomqtt's
own logger is silenced: the bus sink reports connection losses itself, once per distinct failure.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, NOTICE: 5, logging.INFO: 6, logging.DEBUG: 7}
ROOT = "livetok"
WARNINGS = "py.warnings"  # the logger logging.captureWarnings writes to


def priority(level: int) -> int:
    """The syslog priority of a logging level (the nearest one at or above it)."""
    for lv in sorted(_PRIORITY):
        if level <= lv:
            return _PRIORITY[lv]
    return 2


def stderr_is_journal(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (stderr) is the journald stream systemd gave us (``JOURNAL_STREAM``)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
        dev, ino = value.split(":", 1)
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        return False


class LineFormatter(logging.Formatter):
    """``[<N>]livetok: message``; the traceback only when ``verbose``."""

    def __init__(self, journal: bool, verbose: bool) -> None:
        super().__init__()
        self.journal = journal
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(record.getMessage().splitlines())  # one event, one line
        if record.exc_info and not self.verbose:
            text += " (-v shows the traceback)"
        prefix = f"<{priority(record.levelno)}>" if self.journal else ""
        line = f"{prefix}livetok: {text}"
        if record.exc_info and self.verbose:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _Handler(logging.Handler):
    """Writes to ``stream``, or to whatever ``sys.stderr`` is at the time (tests replace it)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__()
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            out = self._stream if self._stream is not None else sys.stderr
            out.write(self.format(record) + "\n")
            out.flush()
        except Exception:  # a closed or broken stderr must not take the daemon down
            self.handleError(record)


def configure(verbose: bool = False, stream: TextIO | None = None, journal: bool | None = None) -> None:
    """Install the line handler on the ``livetok`` logger (replacing a previous one)."""
    logger = logging.getLogger(ROOT)
    for h in list(logger.handlers):
        if isinstance(h, _Handler):
            logger.removeHandler(h)
    handler = _Handler(stream)
    handler.setFormatter(LineFormatter(stderr_is_journal(stream) if journal is None else journal, verbose))
    logging.raiseExceptions = False  # and nothing about it on stderr either
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    warned = logging.getLogger(WARNINGS)  # warnings.warn -> one <4> line (logging.captureWarnings)
    for h in list(warned.handlers):
        if isinstance(h, _Handler):
            warned.removeHandler(h)
    warned.addHandler(handler)
    warned.propagate = False
    logging.captureWarnings(False)  # (again: whatever showwarning is now, e.g. a test's, is wrapped afresh)
    logging.captureWarnings(True)
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)  # aiomqtt/paho: the sink says it better, once


def ensure_configured() -> None:
    """Library use (tests, the demo): the default line handler unless someone configured one."""
    if not any(isinstance(h, _Handler) for h in logging.getLogger(ROOT).handlers):
        configure()


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"{ROOT}.{name}")
