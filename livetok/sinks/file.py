"""Sinks: where the daemon's messages go. Each is an async context manager fed by its own channel.

The runner opens every sink before capture starts (a sink that cannot work at all — a path that is
not a token file, a file another daemon holds — stops the run there, with one line), then runs each
sink's :meth:`Sink.run` as a task that takes batches from its :class:`~livetok.sinks.channel.SinkChannel`.
A sink never raises out of ``run``: a failed write is reported in one line, its messages counted as
``failed``, and the sink retries with capped backoff, while its channel holds (and, when full,
drops and counts) what keeps coming. A slow or failing sink fills only its own channel.

Books per sink (:class:`SinkStats`): every message the runner offered is, at the end, exactly one of
``written``, ``dropped`` (the channel was full, or still held it at the shutdown deadline) or
``failed`` (a write that did not succeed) — per (stream, modality) too, for the run's accounting.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from livetok.config import FileSink as FileSinkConfig
from livetok.errors import OutputError
from livetok.runtime.backoff import Backoff, BackoffPolicy
from livetok.runtime.lane import BlockingLane
from livetok.runtime.log import NOTICE
from livetok.runtime.log import get as get_logger
from livetok.sinks.channel import SinkChannel
from livetok.wire.ltkfile import FILE_HEADER, LTK_MAGIC, LTK_VERSION, RECORD_HEAD, SYNC, last_record_end

if TYPE_CHECKING:  # at run time the messages come from the engine: importing it would pull torch
    from livetok.pipeline.outbound import Outgoing

_log = get_logger("sink")
# Files this process's sinks hold (their advisory lock): a reload's preflight must not see our own
# lock as another daemon's.
HELD: set[str] = set()
BATCH = 256  # messages taken from the channel per write
CLOSE_S = 2.0  # closing a file at exit, at most (s)


@dataclass
class SinkStats:
    """One sink's books (event loop only). ``offered = written + dropped + failed + queued``."""

    offered: int = 0
    written: int = 0
    dropped: int = 0
    failed: int = 0
    errors: int = 0  # failed attempts (each may fail a batch of messages)
    reopens: int = 0
    bytes_written: int = 0
    state: str = "starting"  # starting | ok | failing | closed
    last_error: str = ""
    # capture-to-write (file) or capture-to-publish (bus) of the messages just handled, for metrics
    latencies: list[tuple[Outgoing, int]] = field(default_factory=list)
    offered_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    written_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    dropped_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed_by: Counter[tuple[str, str]] = field(default_factory=Counter)

    def count(self, what: str, items: list[Outgoing]) -> None:
        """Book ``items`` as ``written``, ``dropped`` or ``failed``."""
        setattr(self, what, getattr(self, what) + len(items))
        by: Counter[tuple[str, str]] = getattr(self, f"{what}_by")
        for it in items:
            by[it.key] += 1


class Sink(abc.ABC):
    """A destination. Subclasses open in ``__aenter__`` (raising a LivetokError when they cannot
    work at all), write in :meth:`write_batch`, close in ``__aexit__``."""

    def __init__(self, name: str, queue_messages: int = 20_000, queue_bytes: int = 64_000_000) -> None:
        self.name = name
        self.latency_kind = "write"  # metrics: latency.<kind>.<sink>, capture to written
        self.queue_messages = queue_messages  # the bounds of this sink's channel (the runner makes it)
        self.queue_bytes = queue_bytes
        self.stats = SinkStats()
        self.backoff = Backoff(BackoffPolicy())

    def wants(self, is_step: bool) -> bool:
        """Whether this sink takes aligned steps (``is_step``) or token packets (e.g. a file that keeps
        only steps); the books hold it to that (every such message emitted must be offered)."""
        return True

    def accepts(self, item: Outgoing) -> bool:
        return self.wants(item.is_step)

    def held_by(self) -> Counter[tuple[str, str]]:
        """Messages taken from the channel and not yet booked (the bus: in flight), per stream."""
        return Counter()

    def gauges(self) -> dict[str, float]:
        """Sink-specific figures for metrics and the run report (the bus: connection, in flight ...)."""
        return {}

    def attach(self, daemon: Any) -> None:  # noqa: B027 -- optional hook
        """Called once by the daemon that will feed this sink (the bus takes its meta from it)."""

    def offer(self, channel: SinkChannel, item: Outgoing) -> None:
        """The runner's fan-out: count and enqueue (the channel drops the oldest when full)."""
        self.stats.offered += 1
        self.stats.offered_by[item.key] += 1
        channel.put(item)

    def on_drop(self, item: Outgoing) -> None:
        self.stats.count("dropped", [item])

    def say(self, line: str, level: int = logging.WARNING) -> None:
        """One event line (docs: one line per event, with its priority under journald)."""
        _log.log(level, "sink %s: %s", self.name, line)

    async def run(self, channel: SinkChannel) -> None:
        """Write what the channel gives until it is closed and empty; never raises but CancelledError."""
        while batch := await channel.get_batch(BATCH):
            while True:
                try:
                    await self.write_batch(batch)
                except asyncio.CancelledError:
                    self.stats.count("failed", batch)  # in flight at the deadline: never confirmed
                    raise
                except Exception as err:  # every failure is counted and retried; none ends the daemon
                    self.stats.count("failed", batch)
                    await self._failed(err, channel)
                    break
                now = time.monotonic_ns()
                self.stats.count("written", batch)
                self.stats.latencies += [(it, now - it.capture_ns) for it in batch]
                if self.stats.state != "ok":
                    if self.stats.state == "failing":
                        self.say(f"writing again after {self.stats.errors} failed attempts", NOTICE)
                    self.stats.state = "ok"
                self.backoff.running()
                break

    async def _failed(self, err: Exception, channel: SinkChannel) -> None:
        self.stats.errors += 1
        reason = self.describe(err)
        first = self.stats.state != "failing" or reason != self.stats.last_error
        self.stats.state, self.stats.last_error = "failing", reason
        delay = self.backoff.next_delay_s()
        if first:  # one line per distinct failure, not one per retry
            self.say(f"{reason}; messages are counted as failed, retrying in {delay:.1f} s (backoff up to 30 s)")
        with contextlib.suppress(Exception):
            await self.recover()
        if not channel.closed:
            await asyncio.sleep(delay)

    def describe(self, err: Exception) -> str:
        return str(err) or type(err).__name__

    @abc.abstractmethod
    async def write_batch(self, batch: list[Outgoing]) -> None: ...

    async def recover(self) -> None:  # noqa: B027 -- optional hook, nothing to do by default
        """After a failure, before the retry (a file sink reopens its file)."""

    async def __aenter__(self) -> Sink:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.stats.state = "closed"


# -- .ltk files --------------------------------------------------------------------------------------

class FileSink(Sink):
    """Appends records to a ``.ltk`` file, never truncating what was there.

    Opening: a missing file is created; an existing ``.ltk`` whose header and last record check out
    is appended to; one whose tail is damaged is moved aside (``NAME.damaged-UTC.ltk``) and a new
    file started; anything else (not a regular file, not a token file) is refused. An advisory lock
    (``flock``) keeps a second daemon off the same file. A failed write is undone (the file cut back
    to its last whole record) and retried after a reopen. Rotation by size and/or age renames the
    full file to ``NAME.UTC.ltk`` and starts a new one, keeping the newest ``keep`` of them.
    """

    def __init__(self, cfg: FileSinkConfig, name: str) -> None:
        super().__init__(name, cfg.queue_messages, int(cfg.queue_mb * 1e6))
        self.cfg = cfg
        self.path = Path(cfg.path)
        self.lane = BlockingLane(f"livetok-sink-{name}")
        self._fd: int | None = None
        self._size = 0
        self._opened_ns = 0

    def wants(self, is_step: bool) -> bool:
        return self.cfg.aligned if is_step else self.cfg.per_modality

    # -- opening (blocking; run in the lane) ------------------------------------------------------
    def _open(self) -> None:
        path = self.path
        if not path.parent.is_dir():
            raise OutputError(f"sink file:{path}: directory {path.parent} does not exist")
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        except OSError as err:
            raise OutputError(f"sink file:{path}: {err.strerror or err}") from err
        if st is not None and not path.is_file():
            raise OutputError(f"sink file:{path}: not a regular file; refusing to write into it")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise OutputError(f"sink file:{path}: cannot open for writing ({err.strerror or err})") from err
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputError(f"sink file:{path}: in use by another process (locked); "
                                  "refusing to write into it") from None
            self._adopt(fd)
        except BaseException:
            os.close(fd)
            raise

    def _adopt(self, fd: int) -> None:
        """Check what an opened file holds; keep it open for appending, or move it aside."""
        size = os.fstat(fd).st_size
        if size == 0:
            self._write_all(fd, FILE_HEADER)
            size = len(FILE_HEADER)
        else:
            head = os.pread(fd, len(FILE_HEADER), 0)
            if head[:4] != LTK_MAGIC or len(head) < len(FILE_HEADER):
                raise OutputError(f"sink file:{self.path}: exists and is not a .ltk token file; "
                                  "refusing to overwrite it")
            if head[4] != LTK_VERSION:
                raise OutputError(f"sink file:{self.path}: a .ltk file of version {head[4]}; "
                                  f"this daemon writes version {LTK_VERSION}")
            if last_record_end(fd, size) is None:
                aside = self._aside("damaged")
                os.rename(self.path, aside)
                os.close(fd)
                self.say(f"the existing file's last record is damaged: moved it to {aside} and started anew")
                self._open()
                return
        self._fd, self._size, self._opened_ns = fd, size, time.monotonic_ns()
        HELD.add(os.path.realpath(self.path))

    def _aside(self, tag: str) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        stem = self.path.name.removesuffix(".ltk")
        return self.path.with_name(f"{stem}.{tag + '-' if tag else ''}{stamp}.ltk")

    @staticmethod
    def _write_all(fd: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    # -- writing (blocking; run in the lane) ------------------------------------------------------
    def _write(self, records: bytes) -> None:
        if self._fd is None:
            self._open()
        assert self._fd is not None
        if self._should_rotate(len(records)):
            self._rotate()
        fd = self._fd
        try:
            self._write_all(fd, records)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)  # undo a partial record: the file stays whole
            raise
        self._size += len(records)

    def _should_rotate(self, incoming: int) -> bool:
        c = self.cfg
        if self._size <= len(FILE_HEADER):
            return False
        too_big = c.rotate_mb is not None and self._size + incoming > c.rotate_mb * 1e6
        too_old = c.rotate_s is not None and time.monotonic_ns() - self._opened_ns >= c.rotate_s * 1e9
        return too_big or too_old

    def _rotate(self) -> None:
        aside = self._aside("")
        os.rename(self.path, aside)
        self._close_fd()
        self._open()
        if self.cfg.keep is not None:
            stem = self.path.name.removesuffix(".ltk")
            old = sorted(self.path.parent.glob(f"{stem}.[0-9]*.ltk"))  # rotated names sort by time
            for p in old[: max(0, len(old) - self.cfg.keep)]:
                with contextlib.suppress(OSError):
                    p.unlink()

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            HELD.discard(os.path.realpath(self.path))
            with contextlib.suppress(OSError):
                os.close(fd)  # also releases the lock

    # -- the async side --------------------------------------------------------------------------
    async def __aenter__(self) -> FileSink:
        await self.lane.run(self._open)
        self.stats.state = "ok"
        return self

    async def write_batch(self, batch: list[Outgoing]) -> None:
        records = b"".join(RECORD_HEAD.pack(SYNC, len(it.data), zlib.crc32(it.data)) + it.data for it in batch)
        await self.lane.run(self._write, records)
        self.stats.bytes_written += len(records)

    async def recover(self) -> None:
        await self.lane.run(self._close_fd)  # reopened (and checked) by the next write
        self.stats.reopens += 1

    def describe(self, err: Exception) -> str:
        if isinstance(err, OSError):
            if err.errno == errno.ENOSPC:
                return f"disk full writing {self.path} (No space left on device)"
            if err.errno == errno.EFBIG:
                return f"file size limit reached writing {self.path} (File too large; see ulimit -f, rotate_mb)"
            return f"cannot write {self.path} ({err.strerror or err})"
        return super().describe(err)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.stats.state == "closed":  # closed already (a reload retired it); its lane is gone
            return
        try:
            await asyncio.wait_for(self.lane.run(self._close_fd), CLOSE_S)
        except TimeoutError:  # the lane is stuck in a write (a dead disk): abandoned, like its thread
            self.say(f"could not close {self.path} within {CLOSE_S:g} s (a write is stuck); abandoned")
        finally:
            self.lane.close()
            await super().__aexit__(exc_type, exc, tb)


def make_sink(cfg: Any, name: str, run_id: str) -> Sink:
    """The sink called ``name`` in ``cfg`` (a file sink's name, or "mqtt" for the bus), not yet opened."""
    for n, c in cfg.named_sinks():
        if n != name:
            continue
        if isinstance(c, FileSinkConfig):
            return FileSink(c, name)
        from livetok.sinks.mqtt import MqttSink, buffer_bounds

        messages, nbytes = buffer_bounds(cfg)
        return MqttSink(cfg.bus, run_id=run_id, metas=[], name=name, queue_messages=messages, queue_bytes=nbytes)
    raise KeyError(name)


def open_sinks(cfg: Any, run_id: str) -> list[Sink]:
    """Sink objects for the configuration's file sinks and MQTT bus (not yet opened: ``async with``
    each). The bus's password and TLS files are read here: a problem is one line before anything
    starts."""
    return [make_sink(cfg, n, run_id) for n, _ in cfg.named_sinks()]
