"""The token-file sink: records appended to a ``.ltk`` file, never truncating what was there.

Its framing is :func:`livetok.wire.ltkfile.frame_record`'s (the one place it is coded); what it
checks of an existing file and how it rotates: :class:`FileSink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from livetok.config import FileSink as FileSinkConfig
from livetok.errors import OutputError
from livetok.runtime.lane import BlockingLane
from livetok.sinks.base import Outgoing, Sink
from livetok.wire.ltkfile import (
    FILE_HEADER,
    LTK_MAGIC,
    LTK_VERSION,
    frame_record,
    last_record_end,
    open_locked,
    write_all,
)

# Files this process's sinks hold (their advisory lock): a reload's preflight must not see our own
# lock as another daemon's.
HELD: set[str] = set()
CLOSE_S = 2.0  # closing a file at exit, at most (s)


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
            fd = open_locked(path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        except BlockingIOError:
            raise OutputError(f"sink file:{path}: in use by another process (locked); "
                              "refusing to write into it") from None
        except OSError as err:
            raise OutputError(f"sink file:{path}: cannot open for writing ({err.strerror or err})") from err
        try:
            self._adopt(fd)
        except BaseException:
            os.close(fd)
            raise

    def _adopt(self, fd: int) -> None:
        """Check what an opened file holds; keep it open for appending, or move it aside."""
        size = os.fstat(fd).st_size
        if size == 0:
            write_all(fd, FILE_HEADER)
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

    # -- writing (blocking; run in the lane) ------------------------------------------------------
    def _write(self, records: bytes) -> None:
        if self._fd is None:
            self._open()
        assert self._fd is not None
        if self._should_rotate(len(records)):
            self._rotate()
        fd = self._fd
        try:
            write_all(fd, records)
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
        records = b"".join(frame_record(it.data) for it in batch)
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
