"""Token files (``.ltk``): a file header, then framed records each holding one wire packet.

File header (8 bytes): magic ``LTKF``, version u8 (1), 3 reserved bytes (written 0, ignored).
Record: sync marker ``A5 4C 54 52``, packet length u32 LE, zlib CRC-32 of the packet u32 LE,
then the packet bytes (docs/wire-format.md).

The reader never raises for damage after the file header: each bad region becomes one
:class:`DecodeError` in the stream, and reading resumes at the next sync marker whose record
checks out (length inside the file and CRC match). Reading takes time linear in the file size
whatever its bytes: no record's CRC costs more than ``2 * CRC_STRIDE`` bytes of work past one scan
of the file (crcrange.py).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO

from livetok.errors import DecodeError
from livetok.wire.crcrange import CrcIndex
from livetok.wire.model import AlignedStep, TokenPacket
from livetok.wire.packet import PACKET_MAGIC, decode_packet, encode_packet

LTK_MAGIC = b"LTKF"
LTK_VERSION = 1
FILE_HEADER = LTK_MAGIC + bytes([LTK_VERSION, 0, 0, 0])
SYNC = b"\xa5LTR"
RECORD_HEAD = struct.Struct("<4sII")  # sync, packet length, CRC-32 of the packet
MAX_RECORD_BYTES = (1 << 32) - 1  # the length field is u32
CRC_STRIDE = 1024  # bytes between the reader's CRC prefixes: a record check costs at most 2 x this
TAIL_SCAN_BYTES = 64 << 20  # how far back from its end an existing file is searched for its last record

Packet = TokenPacket | AlignedStep
_Buffer = bytes | mmap.mmap


class LtkWriter:
    """Append-only writer of a ``.ltk`` file; the file is created (or truncated) on open.

    Each record goes to the file in one ``write`` call, so a crash leaves at most one
    truncated record at the end, which the reader reports and skips.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 -- closed by close()
        self._file.write(FILE_HEADER)

    def write(self, packet: Packet) -> None:
        """Encode ``packet`` and append it as one record."""
        self.write_encoded(encode_packet(packet))

    def write_encoded(self, data: bytes) -> None:
        """Append already-encoded packet bytes (e.g. the bytes just published) as one record."""
        if len(data) > MAX_RECORD_BYTES:
            raise ValueError(f"packet of {len(data)} bytes exceeds the u32 record length")
        self._file.write(frame_record(data))

    def flush(self) -> None:
        """Push buffered records to the operating system."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close; closing twice is harmless."""
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __enter__(self) -> LtkWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def frame_record(data: bytes) -> bytes:
    """One record: the framing (sync, length, CRC-32) and the encoded packet ``data``."""
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"packet of {len(data)} bytes exceeds the u32 record length")
    if data[:4] != PACKET_MAGIC:
        raise ValueError("data is not an encoded wire packet (bad magic)")
    return RECORD_HEAD.pack(SYNC, len(data), zlib.crc32(data)) + data


# -- appending to an existing file (the daemon's file sink, ``livetok record``) ----------------------


def open_locked(path: str | os.PathLike[str], flags: int, mode: int = 0o644) -> int:
    """``os.open(path, flags)`` holding the token file's advisory lock (``flock``, exclusive, not
    waiting): the lock the daemon's file sink and ``livetok record`` both take, so that neither
    writes into a file the other holds. Raises :class:`BlockingIOError` when another process holds
    it (the file is closed again), any other :class:`OSError` when the file cannot be opened."""
    fd = os.open(path, flags | os.O_CLOEXEC, mode)
    try:
        lock(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock(fd: int) -> None:
    """Take an open token file's advisory lock (:func:`open_locked`); BlockingIOError when held."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def last_record_end(fd: int, size: int) -> int | None:
    """Where the file's last whole record ends (== ``size`` for a sound file; the header's end for a
    file of no records), or None when its tail is damaged (a crash mid-record, garbage)."""
    if size == len(FILE_HEADER):
        return size
    lo = max(len(FILE_HEADER), size - TAIL_SCAN_BYTES)
    tail = os.pread(fd, size - lo, lo)
    pos = len(tail)
    while (pos := tail.rfind(SYNC, 0, pos)) >= 0:
        if pos + RECORD_HEAD.size <= len(tail):
            _, length, crc = RECORD_HEAD.unpack_from(tail, pos)
            start = pos + RECORD_HEAD.size
            if start + length == len(tail) and zlib.crc32(tail[start:]) == crc:
                return size
    return None


@dataclass(frozen=True)
class AppendCheck:
    """Whether records can be appended to an open file: ``problem`` is "" when they can (``size``:
    where they go; 0: an empty file, the header goes first), else why not, in a few words;
    ``damaged_tail``: the header is a token file's, but its last record is not whole."""

    size: int
    problem: str = ""
    damaged_tail: bool = False


def check_append(fd: int) -> AppendCheck:
    """Check an existing file the way a writer that appends must: a ``.ltk`` header of this version,
    and a last record that is whole (the file's end is a record's end)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return AppendCheck(0)
    problem = _header_problem(os.pread(fd, len(FILE_HEADER), 0))
    if problem:
        return AppendCheck(size, problem)
    if last_record_end(fd, size) is None:
        return AppendCheck(size, "a .ltk token file whose last record is damaged (cut short or overwritten)",
                           damaged_tail=True)
    return AppendCheck(size)


@dataclass
class LtkReadResult:
    """Everything readable in a token file: good packets in file order, and one message per
    bad region (each names the file and the byte offset)."""

    packets: list[Packet] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def read_ltk(path: str | os.PathLike[str]) -> LtkReadResult:
    """Read a whole token file. Raises DecodeError only if it is not a token file at all."""
    result = LtkReadResult()
    for item in iter_ltk(path):
        if isinstance(item, DecodeError):
            result.errors.append(str(item))
        else:
            result.packets.append(item)
    return result


def iter_ltk(path: str | os.PathLike[str]) -> Iterator[Packet | DecodeError]:
    """Stream the packets of a token file, yielding a DecodeError in-line for each bad region.

    The file header is checked now, not at the first ``next``: a missing, empty or non-.ltk
    file raises DecodeError with a one-line message naming the file.
    """
    name = os.fspath(path)
    buf = _open_checked(name)
    return _records(name, buf)


def _open_checked(name: str) -> _Buffer:
    try:
        with open(name, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size >= len(FILE_HEADER):
                # mapped, not read: token files of long sessions can be large
                buf: _Buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            else:
                buf = f.read()  # also covers pipes and other files that report size 0
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise DecodeError(f"{name}: cannot read token file: {reason}") from None
    problem = _header_problem(buf[: len(FILE_HEADER)])
    if problem:
        if isinstance(buf, mmap.mmap):
            buf.close()
        raise DecodeError(f"{name}: {problem}")
    return buf


def _header_problem(head: bytes) -> str:
    if not head:
        return "not a .ltk token file: the file is empty"
    if len(head) < len(FILE_HEADER) or head[:4] != LTK_MAGIC:
        return f"not a .ltk token file: bad header {head[:8].hex(' ')}"
    if head[4] != LTK_VERSION:
        return f"unsupported .ltk version {head[4]} (this reader reads {LTK_VERSION})"
    return ""


def _records(name: str, buf: _Buffer) -> Iterator[Packet | DecodeError]:
    size = len(buf)
    pos = len(FILE_HEADER)
    crcs = CrcIndex(buf, size, stride=CRC_STRIDE)
    try:
        while pos < size:
            checked = _check_record(buf, pos, size, crcs)
            if isinstance(checked, str):
                resume = _resync(buf, pos + 1, size, crcs)
                where = f"skipped to offset {resume}" if resume >= 0 else "no records follow"
                yield DecodeError(f"{name}: offset {pos}: {checked}; {where}")
                if resume < 0:
                    return
                pos = resume
                continue
            data, nxt = checked
            try:
                yield decode_packet(data)
            except DecodeError as err:
                # framing and CRC are fine, so the next record starts right after this one
                yield DecodeError(f"{name}: offset {pos}: record holds a bad packet: {err}")
            pos = nxt
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def _check_record(buf: _Buffer, pos: int, size: int, crcs: CrcIndex) -> tuple[bytes, int] | str:
    """The packet bytes and next offset of the record at ``pos``, or why it is bad.

    The CRC of a long record is taken from ``crcs`` before its bytes are copied, so checking a
    record costs the same whatever length it claims (see crcrange.py: a crafted file of records
    that each claim to run to the end of the file is read in linear time)."""
    if size - pos < RECORD_HEAD.size:
        return f"truncated record header ({size - pos} of {RECORD_HEAD.size} bytes)"
    sync, length, crc = RECORD_HEAD.unpack(buf[pos : pos + RECORD_HEAD.size])
    if sync != SYNC:
        return f"bad sync marker {sync.hex(' ')}"
    start = pos + RECORD_HEAD.size
    if length > size - start:
        return (
            f"record length {length} runs past the end of the file "
            f"({size - start} bytes left): truncated or corrupt"
        )
    if crcs.range_crc(start, start + length) != crc:
        return f"CRC mismatch in a {length}-byte record"
    return buf[start : start + length], start + length


def _resync(buf: _Buffer, start: int, size: int, crcs: CrcIndex) -> int:
    """Offset of the first sync marker at or after ``start`` whose record checks out, or -1."""
    while True:
        found = buf.find(SYNC, start)
        if found < 0:
            return -1
        if not isinstance(_check_record(buf, found, size, crcs), str):
            return found
        start = found + 1
