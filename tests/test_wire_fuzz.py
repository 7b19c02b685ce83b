"""Property and fuzz tests of wire format v1: bad bytes only ever raise DecodeError.

Generators build arbitrary valid packets; mutations (bit flips, truncations, insertions,
deletions, extreme values in length fields) are applied to their encodings and to whole
.ltk files. ``deadline=None``: the tests assert behaviour, never timing.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livetok.errors import DecodeError
from livetok.wire import (
    FILE_HEADER,
    PACKET_MAGIC,
    SYNC,
    WIRE_VERSION,
    AlignedStep,
    Clock,
    Flag,
    LtkWriter,
    Modality,
    Scale,
    StepFlag,
    TokenPacket,
    decode_packet,
    encode_packet,
    iter_ltk,
    ltkfile,
    read_ltk,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FUZZ = settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
FILE_FUZZ = settings(deadline=None, max_examples=120, suppress_health_check=[HealthCheck.too_slow])

# hypothesis text() never draws lone surrogates, so every name encodes as UTF-8
names = st.text(max_size=80).filter(lambda s: len(s.encode("utf-8")) <= 255)


@st.composite
def timespans(draw: st.DrawFn) -> tuple[int, int]:
    start = draw(st.integers(INT64_MIN, INT64_MAX))
    end = draw(st.integers(start, min(INT64_MAX, start + 10**12)))
    return start, end


@st.composite
def token_packets(draw: st.DrawFn, clock: Clock | None = None) -> TokenPacket:
    """Any valid packet: grid up to 16x16, 0..6 levels, optional positions and vectors."""
    rows, cols = draw(
        st.sampled_from([(1, 1), (7, 7), (14, 14)]) | st.tuples(*[st.integers(1, 16)] * 2)
    )
    cells = rows * cols
    partial = draw(st.booleans())
    if partial:
        n_pos = draw(st.integers(0, min(cells, 40)))
        positions = np.array(
            draw(st.lists(st.integers(0, cells - 1), min_size=n_pos, max_size=n_pos)),
            dtype=np.uint16,
        )
    else:
        n_pos, positions = cells, None
    levels = draw(st.integers(0, 6))
    raw = draw(st.binary(min_size=2 * n_pos * levels, max_size=2 * n_pos * levels))
    codes = np.frombuffer(raw, dtype="<u2").astype(np.uint16).reshape(n_pos, levels)
    vectors = None
    if draw(st.booleans()):
        dim = draw(st.integers(0, 8))
        raw = draw(st.binary(min_size=2 * n_pos * dim, max_size=2 * n_pos * dim))
        vectors = np.frombuffer(raw, dtype="<f2").astype(np.float16).reshape(n_pos, dim)
    start, end = draw(timespans())
    return TokenPacket(
        source=draw(names),
        modality=draw(st.sampled_from(Modality)),
        scale=draw(st.sampled_from(Scale)),
        seq=draw(st.integers(0, 2**64 - 1)),
        start_ns=start,
        end_ns=end,
        clock=clock if clock is not None else draw(st.sampled_from(Clock)),
        codebook_id=draw(st.binary(min_size=8, max_size=8)).hex(),
        flags=Flag(draw(st.integers(0, 31))),
        grid=(rows, cols),
        codes=codes,
        positions=positions,
        vectors=vectors,
    )


@st.composite
def aligned_steps(draw: st.DrawFn) -> AlignedStep:
    clock = draw(st.sampled_from(Clock))
    start, end = draw(timespans())
    return AlignedStep(
        group=draw(names),
        seq=draw(st.integers(0, 2**64 - 1)),
        start_ns=start,
        end_ns=end,
        clock=clock,
        skew_ns=draw(st.none() | st.integers(INT64_MIN + 1, INT64_MAX)),
        flags=StepFlag(draw(st.integers(0, 7))),
        packets=tuple(draw(st.lists(token_packets(clock), max_size=3))),
    )


packets = token_packets() | aligned_steps()


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` after 1..4 random edits, including extreme values written over length fields."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "extreme"]))
        at = draw(st.integers(0, max(len(buf) - 1, 0)))
        if kind == "flip" and buf:
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del buf[at : at + draw(st.integers(1, 16))]
        elif kind == "extreme":
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(st.sampled_from([0, 1, 255, 2 ** (8 * width) - 1, 2 ** (8 * width - 1)]))
            buf[at : at + width] = value.to_bytes(width, "little")
    return bytes(buf)


def decode_checked(data: bytes) -> TokenPacket | AlignedStep | None:
    """Decode; a DecodeError is fine, any other exception fails the test. A decoded packet must
    be a fixed point of encode/decode (the decoder only returns well-formed packets)."""
    try:
        packet = decode_packet(data)
    except DecodeError:
        return None
    assert decode_packet(encode_packet(packet)) == packet
    return packet


@pytest.mark.slow
@FUZZ
@given(packets)
def test_round_trip_any_valid_packet(packet: TokenPacket | AlignedStep) -> None:
    data = encode_packet(packet)
    assert decode_packet(data) == packet
    assert encode_packet(decode_packet(data)) == data


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    decode_checked(data)


@FUZZ
@given(st.sampled_from([0, 1]), st.binary(max_size=512))
def test_random_bytes_after_valid_prefix(kind: int, tail: bytes) -> None:
    decode_checked(PACKET_MAGIC + bytes([WIRE_VERSION, kind]) + tail)


@pytest.mark.slow
@FUZZ
@given(st.data())
def test_mutated_valid_packets(data: st.DataObject) -> None:
    original = encode_packet(data.draw(packets))
    damaged = data.draw(mutated(original))
    decoded = decode_checked(damaged)
    if damaged == original:
        assert decoded is not None


@pytest.mark.slow
@FUZZ
@given(st.data())
def test_any_single_bit_flip_is_detected_or_harmless(data: st.DataObject) -> None:
    packet = data.draw(token_packets())
    original = encode_packet(packet)
    bit = data.draw(st.integers(0, 8 * len(original) - 1))
    damaged = bytearray(original)
    damaged[bit // 8] ^= 1 << (bit % 8)
    decoded = decode_checked(bytes(damaged))
    # A packet has no CRC (the .ltk record does), so a flip may decode to another packet; but
    # never back to the original bytes, unless it hit a reserved flag bit (5-15: ignored by rule).
    if decoded is not None and encode_packet(decoded) == original:
        assert 12 * 8 + 5 <= bit < 14 * 8


# --- .ltk files -------------------------------------------------------------------------


def read_bytes_as_ltk(blob: bytes):
    fd, path = tempfile.mkstemp(suffix=".ltk")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        return read_ltk(path)
    finally:
        os.unlink(path)


def ltk_bytes(items: list[TokenPacket | AlignedStep]) -> bytes:
    fd, path = tempfile.mkstemp(suffix=".ltk")
    os.close(fd)
    try:
        with LtkWriter(path) as writer:
            for item in items:
                writer.write(item)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def is_subsequence(found: list, original: list) -> bool:
    remaining = iter(original)
    return all(any(item == candidate for candidate in remaining) for item in found)


@pytest.mark.slow
@FILE_FUZZ
@given(st.lists(packets, min_size=1, max_size=5), st.data())
def test_file_single_bit_flip_loses_exactly_one_record(items: list, data: st.DataObject) -> None:
    blob = bytearray(ltk_bytes(items))
    bit = data.draw(st.integers(8 * len(FILE_HEADER), 8 * len(blob) - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    result = read_bytes_as_ltk(bytes(blob))
    assert len(result.errors) == 1, result.errors
    assert len(result.packets) == len(items) - 1
    assert is_subsequence(result.packets, items)


@pytest.mark.slow
@FILE_FUZZ
@given(st.lists(packets, max_size=5), st.data())
def test_file_mutations_never_raise(items: list, data: st.DataObject) -> None:
    blob = ltk_bytes(items)
    damaged = FILE_HEADER + data.draw(mutated(blob[len(FILE_HEADER) :]))
    result = read_bytes_as_ltk(damaged)
    # CRC-32 guards each record: whatever survives is an original packet, in order
    assert is_subsequence(result.packets, items)
    if damaged != blob:  # damage is reported, or it cut the file exactly between records
        assert result.errors or len(result.packets) < len(items)
    else:
        assert result.errors == [] and result.packets == items


@FILE_FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_after_file_header(tail: bytes) -> None:
    result = read_bytes_as_ltk(FILE_HEADER + tail)
    assert all(isinstance(p, TokenPacket | AlignedStep) for p in result.packets)
    if tail:  # random bytes never form a record with a valid CRC by chance
        assert result.errors and not result.packets


def test_step_with_nested_packet_on_another_clock_is_decode_error() -> None:
    inner = TokenPacket(
        "s", Modality.AUDIO, Scale.FINE, 0, 0, 1, Clock.UNIX, "0" * 16, Flag.NONE, (1, 1),
        np.zeros((1, 2), dtype=np.uint16),
    )  # fmt: skip
    data = bytearray(encode_packet(AlignedStep("g", 0, 0, 1, Clock.MEDIA, None, StepFlag.NONE, ())))
    body = encode_packet(inner)
    data[10:12] = (1).to_bytes(2, "little")  # packet count: smuggle one UNIX packet in
    data += len(body).to_bytes(4, "little") + body
    with pytest.raises(DecodeError, match="clock"):
        decode_packet(bytes(data))


# --- reading time is linear in the file size, whatever the bytes ---------------------------


def reference_read(blob: bytes) -> list[tuple[str, object]]:
    """docs/wire-format.md section 6.3 taken literally (every CRC computed byte by byte): what the
    reader must yield, as ("packet", bytes) and ("error", offset) items."""
    size, out, o = len(blob), [], len(FILE_HEADER)

    def checks_out(p: int) -> bool:
        if size - p < 12 or blob[p : p + 4] != b"\xa5LTR":
            return False
        length, crc = struct.unpack_from("<II", blob, p + 4)
        return p + 12 + length <= size and zlib.crc32(blob[p + 12 : p + 12 + length]) == crc

    while o < size:
        if checks_out(o):
            (length,) = struct.unpack_from("<I", blob, o + 4)
            out.append(("packet", blob[o + 12 : o + 12 + length]))
            o += 12 + length
            continue
        out.append(("error", o))
        p = blob.find(b"\xa5LTR", o + 1)
        while p >= 0 and not checks_out(p):
            p = blob.find(b"\xa5LTR", p + 1)
        if p < 0:
            break
        o = p
    return out


def reader_items(blob: bytes) -> list[tuple[str, object]]:
    """What iter_ltk yields, in reference_read's terms (a bad packet in a good record is a packet)."""
    out: list[tuple[str, object]] = []
    for item in _iter_bytes(blob):
        if isinstance(item, DecodeError):
            msg = str(item)
            offset = int(msg.split("offset ")[1].split(":")[0])
            if "record holds a bad packet" in msg:
                (length,) = struct.unpack_from("<I", blob, offset + 4)
                out.append(("packet", blob[offset + 12 : offset + 12 + length]))
            else:
                out.append(("error", offset))
        else:
            out.append(("packet", encode_packet(item)))
    return out


def _iter_bytes(blob: bytes) -> list:
    fd, path = tempfile.mkstemp(suffix=".ltk")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        return list(iter_ltk(path))
    finally:
        os.unlink(path)


@pytest.mark.slow
@FILE_FUZZ
@given(st.lists(packets, min_size=1, max_size=6), st.data(), st.sampled_from([8, 16, 64, 1024]))
def test_reader_follows_the_spec_whatever_the_crc_stride(
    items: list, data: st.DataObject, stride: int
) -> None:
    """The reader's CRC shortcuts (prefix CRCs combined, crcrange.py) give exactly the records that
    section 6.3 read byte by byte gives, on damaged files, with strides small enough that almost
    every record takes the shortcut."""
    blob = ltk_bytes(items)
    damaged = FILE_HEADER + data.draw(mutated(blob[len(FILE_HEADER) :]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ltkfile, "CRC_STRIDE", stride)
        assert reader_items(damaged) == reference_read(damaged)


def crafted_ltk(size: int, period: int = 12) -> bytes:
    """The hostile file of issue 6: a sync marker every ``period`` bytes, each record claiming to
    run to the end of the file (with a wrong CRC), so a naive resync checks O(size) bytes per marker."""
    n = (size - len(FILE_HEADER)) // period
    size = len(FILE_HEADER) + n * period
    out = bytearray(FILE_HEADER)
    pad = b"\0" * (period - 12)
    for i in range(n):
        pos = len(FILE_HEADER) + i * period
        out += SYNC + struct.pack("<II", size - pos - 12, 0) + pad
    return bytes(out)


class CountingCrc:
    """zlib.crc32 that counts the bytes it is given, and fails the test past ``budget`` bytes (so a
    quadratic reader fails at once instead of running for hours)."""

    def __init__(self, budget: int) -> None:
        self.budget, self.count, self.real = budget, 0, zlib.crc32

    def __call__(self, data: bytes, value: int = 0) -> int:
        self.count += len(data)
        if self.count > self.budget:
            raise AssertionError(f"the reader fed more than {self.budget} bytes to CRC-32")
        return self.real(data, value)


def crc_work(blob: bytes, budget_per_byte: float) -> tuple[int, list]:
    """Bytes fed to CRC-32 while reading ``blob``, and what was read."""
    counter = CountingCrc(int(budget_per_byte * len(blob)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zlib, "crc32", counter)
        items = _iter_bytes(blob)
    return counter.count, items


@pytest.mark.slow
def test_crafted_resync_file_is_read_in_linear_work() -> None:
    """1 MB of sync markers every 12 bytes: the naive resync fed ~4e10 bytes to CRC-32 (probe took
    15 s); now a few bytes per byte of file, and the same per byte for a file four times larger."""
    small = crafted_ltk(1_000_000)
    work_small, items = crc_work(small, budget_per_byte=16)
    # what the file holds: the first record is bad, the last (0 bytes, CRC 0) checks out but is no packet
    assert len(items) == 2 and all(isinstance(i, DecodeError) for i in items)
    assert "CRC mismatch" in str(items[0]) and f"skipped to offset {len(small) - 12}" in str(items[0])
    large = crafted_ltk(4_000_000)
    work_large, items = crc_work(large, budget_per_byte=16)
    assert len(items) == 2
    assert work_large / len(large) <= 1.25 * work_small / len(small)


def test_large_crafted_file_is_read_in_bounded_work() -> None:
    """A 48 MB file built here, a marker every 4 KiB each claiming the rest of the file: the naive
    reader would CRC about 280 GB; the bound is a few bytes per byte of file."""
    blob = crafted_ltk(48 << 20, period=4096)
    work, items = crc_work(blob, budget_per_byte=3)
    assert len(items) == 1 and "CRC mismatch" in str(items[0]) and "no records follow" in str(items[0])
    assert work <= 3 * len(blob)
