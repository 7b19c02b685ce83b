"""Binary encode/decode of wire-format packets (layout: docs/wire-format.md).

Everything is little-endian. A packet starts with magic ``LTKP``, a version byte and a kind
byte (0 = token packet, 1 = aligned step). The decoder checks every length against the
buffer before it allocates, and reports every problem as :class:`DecodeError`.

Version 1 is every packet of the built-in streams (scales fine and coarse), byte for byte as it
always was. Version 2 adds one thing: a token packet of a named stream (a plug-in tokenizer's:
``TokenPacket.scale`` None) has scale byte 255 and carries the stream's name (``u8`` length +
UTF-8) right after the source name; an aligned step holding such a packet is version 2 too, so a
v1-only reader refuses it whole, at its first byte, instead of deep inside. Writers write v1
whenever they can; readers read both.
"""

from __future__ import annotations

import struct

import numpy as np

from livetok.errors import DecodeError
from livetok.wire.model import (
    KNOWN_FLAGS,
    KNOWN_STEP_FLAGS,
    MAX_GRID_CELLS,
    NAMED_SCALE,
    UNKNOWN_SKEW,
    AlignedStep,
    TokenPacket,
)

PACKET_MAGIC = b"LTKP"
WIRE_VERSION = 1  # what the built-in streams are written as (and every meta says, without plug-in streams)
WIRE_VERSION_NAMED = 2  # a packet of a named stream, or a step holding one
READ_VERSIONS = (WIRE_VERSION, WIRE_VERSION_NAMED)
KIND_TOKEN = 0
KIND_STEP = 1
DTYPE_UINT16 = 1
LAYOUT_POSITIONS = 0x01  # explicit positions array present
LAYOUT_VECTORS = 0x02  # float16 vectors present
_KNOWN_LAYOUT = LAYOUT_POSITIONS | LAYOUT_VECTORS

# magic, version, kind, modality, scale, clock, dtype, layout, source_len, flags,
# rows, cols, levels, dim, n_positions, seq, start_ns, end_ns, codebook_id
TOKEN_HEAD = struct.Struct("<4sBBBBBBBBHHHHHIQqq8s")
# magic, version, kind, clock, group_len, flags, n_packets, seq, start_ns, end_ns, skew_ns
STEP_HEAD = struct.Struct("<4sBBBBHHQqqq")
_PREFIX_LEN = 6  # magic + version + kind, common to both kinds
_U32 = struct.Struct("<I")


def encode_packet(p: TokenPacket | AlignedStep) -> bytes:
    """Serialise a token packet or an aligned step to its wire bytes (v1, or v2: :func:`packet_version`)."""
    if isinstance(p, TokenPacket):
        return _encode_token(p)
    if isinstance(p, AlignedStep):
        return _encode_step(p)
    raise TypeError(f"cannot encode {type(p).__name__}; expected TokenPacket or AlignedStep")


def packet_version(p: TokenPacket | AlignedStep) -> int:
    """The version a packet is written as: 2 when it is (or holds) a named stream's packet, else 1."""
    if isinstance(p, TokenPacket):
        return WIRE_VERSION_NAMED if p.scale is None else WIRE_VERSION
    return max((packet_version(q) for q in p.packets), default=WIRE_VERSION)


def _encode_token(p: TokenPacket) -> bytes:
    source = p.source.encode("utf-8")
    codes = p.codes
    n_pos, levels = codes.shape
    version = packet_version(p)
    parts = [b"", source]
    if version == WIRE_VERSION_NAMED:
        stream = p.stream.encode("utf-8")
        parts += [bytes((len(stream),)), stream]
    layout = 0
    if p.positions is not None:
        layout |= LAYOUT_POSITIONS
        parts.append(p.positions.astype("<u2", copy=False).tobytes())
    parts.append(codes.astype("<u2", copy=False).tobytes())  # C order: position-major
    dim = 0
    if p.vectors is not None:
        layout |= LAYOUT_VECTORS
        dim = p.vectors.shape[1]
        parts.append(p.vectors.astype("<f2", copy=False).tobytes())
    rows, cols = p.grid
    scale = NAMED_SCALE if p.scale is None else p.scale
    parts[0] = TOKEN_HEAD.pack(
        PACKET_MAGIC, version, KIND_TOKEN, p.modality, scale, p.clock, DTYPE_UINT16,
        layout, len(source), p.flags, rows, cols, levels, dim, n_pos,
        p.seq, p.start_ns, p.end_ns, bytes.fromhex(p.codebook_id),
    )  # fmt: skip
    return b"".join(parts)


def _encode_step(s: AlignedStep) -> bytes:
    group = s.group.encode("utf-8")
    skew = UNKNOWN_SKEW if s.skew_ns is None else s.skew_ns
    head = STEP_HEAD.pack(
        PACKET_MAGIC, packet_version(s), KIND_STEP, s.clock, len(group), s.flags, len(s.packets),
        s.seq, s.start_ns, s.end_ns, skew,
    )  # fmt: skip
    parts = [head, group]
    for pkt in s.packets:
        body = _encode_token(pkt)
        parts.append(_U32.pack(len(body)))
        parts.append(body)
    return b"".join(parts)


def decode_packet(buf: bytes | bytearray | memoryview) -> TokenPacket | AlignedStep:
    """Decode exactly one packet (v1 or v2) spanning all of ``buf``.

    Raises :class:`DecodeError` (and nothing else) for bad magic, an unknown version or kind,
    out-of-range fields, truncation or trailing bytes.
    """
    if isinstance(buf, bytes):
        data = buf
    elif isinstance(buf, (bytearray, memoryview)):
        data = bytes(buf)  # own the bytes so decoded arrays never alias the caller's buffer
    else:
        raise TypeError(f"decode_packet needs bytes, not {type(buf).__name__}")
    kind, version = _check_prefix(data, 0, len(data))
    if kind == KIND_TOKEN:
        return _decode_token(data, 0, len(data))
    return _decode_step(data, version)


def _check_prefix(data: bytes, off: int, end: int) -> tuple[int, int]:
    """(kind, version) of the packet at ``off``."""
    if end - off < _PREFIX_LEN:
        raise DecodeError(f"packet at offset {off} is {end - off} bytes, too short for a header")
    if data[off : off + 4] != PACKET_MAGIC:
        raise DecodeError(f"bad packet magic {data[off : off + 4]!r} at offset {off}")
    version = data[off + 4]
    if version not in READ_VERSIONS:
        raise DecodeError(
            f"unsupported wire version {version} at offset {off} (this decoder reads 1 and 2)"
        )
    kind = data[off + 5]
    if kind not in (KIND_TOKEN, KIND_STEP):
        raise DecodeError(f"unknown packet kind {kind} at offset {off}")
    return kind, version


def _decode_token(data: bytes, off: int, end: int) -> TokenPacket:
    """Decode the token packet occupying exactly ``data[off:end]`` (prefix already checked)."""
    if end - off < TOKEN_HEAD.size:
        raise DecodeError(
            f"token packet at offset {off} is {end - off} bytes, "
            f"shorter than its {TOKEN_HEAD.size}-byte header"
        )
    (
        _magic, version, _kind, modality, scale, clock, dtype, layout, src_len, flags,
        rows, cols, levels, dim, n_pos, seq, start_ns, end_ns, codebook,
    ) = TOKEN_HEAD.unpack_from(data, off)  # fmt: skip
    if (scale == NAMED_SCALE) != (version == WIRE_VERSION_NAMED):
        raise DecodeError(f"scale {scale} in a version {version} token packet at offset {off} "
                          "(named streams, scale 255, are exactly the version 2 packets)")
    if dtype != DTYPE_UINT16:
        raise DecodeError(f"unsupported code dtype {dtype} in packet at offset {off}")
    if layout & ~_KNOWN_LAYOUT:
        raise DecodeError(f"unknown layout bits {layout:#04x} in packet at offset {off}")
    has_pos = bool(layout & LAYOUT_POSITIONS)
    has_vec = bool(layout & LAYOUT_VECTORS)
    cells = rows * cols
    if rows == 0 or cols == 0 or cells > MAX_GRID_CELLS:
        raise DecodeError(f"bad grid {rows}x{cols} in packet at offset {off}")
    if n_pos > cells or (not has_pos and n_pos != cells):
        raise DecodeError(f"{n_pos} positions do not fit grid {rows}x{cols} at offset {off}")
    if dim and not has_vec:
        raise DecodeError(f"vector dim {dim} without vectors in packet at offset {off}")
    # Python ints: no overflow, and the sum is checked before any array is made
    o_src = off + TOKEN_HEAD.size
    o_pos = o_src + src_len
    stream = ""
    if version == WIRE_VERSION_NAMED:
        if o_pos >= end:
            raise DecodeError(f"token packet at offset {off} ends before its stream name")
        o_stream = o_pos + 1
        o_pos = o_stream + data[o_pos]
        if o_pos > end:
            raise DecodeError(f"stream name runs past the end of the token packet at offset {off}")
        try:
            stream = data[o_stream:o_pos].decode("utf-8")
        except UnicodeDecodeError as err:
            raise DecodeError(f"stream name is not UTF-8 in packet at offset {off}: {err}") from None
    o_codes = o_pos + (2 * n_pos if has_pos else 0)
    o_vec = o_codes + 2 * n_pos * levels
    o_end = o_vec + 2 * n_pos * dim
    if o_end != end:
        raise DecodeError(
            f"token packet at offset {off} describes {o_end - off} bytes but has {end - off}"
        )
    try:
        source = data[o_src : o_src + src_len].decode("utf-8")
    except UnicodeDecodeError as err:
        raise DecodeError(f"source name is not UTF-8 in packet at offset {off}: {err}") from None
    positions = None
    if has_pos:
        positions = np.frombuffer(data, "<u2", n_pos, o_pos).astype(np.uint16)
        if n_pos and int(positions.max()) >= cells:
            raise DecodeError(f"position outside grid {rows}x{cols} in packet at offset {off}")
    codes = np.frombuffer(data, "<u2", n_pos * levels, o_codes).astype(np.uint16)
    vectors = None
    if has_vec:
        vectors = np.frombuffer(data, "<f2", n_pos * dim, o_vec).astype(np.float16)
        vectors = vectors.reshape(n_pos, dim)
    try:
        return TokenPacket(
            source=source,
            modality=modality,  # ints: the constructor maps and range-checks enums
            scale=None if scale == NAMED_SCALE else scale,
            seq=seq,
            start_ns=start_ns,
            end_ns=end_ns,
            clock=clock,
            codebook_id=codebook.hex(),
            flags=flags & KNOWN_FLAGS,  # reserved bits are ignored, by the versioning rule
            grid=(rows, cols),
            codes=codes.reshape(n_pos, levels),
            positions=positions,
            vectors=vectors,
            stream=stream,
        )
    except (ValueError, TypeError) as err:  # a rule the checks above missed: still bad bytes
        raise DecodeError(f"invalid token packet at offset {off}: {err}") from None


def _decode_step(data: bytes, version: int) -> AlignedStep:
    end = len(data)
    if end < STEP_HEAD.size:
        raise DecodeError(
            f"aligned step is {end} bytes, shorter than its {STEP_HEAD.size}-byte header"
        )
    (
        _magic, _version, _kind, clock, group_len, flags, count, seq, start_ns, end_ns, skew,
    ) = STEP_HEAD.unpack_from(data, 0)  # fmt: skip
    off = STEP_HEAD.size + group_len
    if off > end:
        raise DecodeError(f"aligned step group name runs past the end ({end} bytes)")
    try:
        group = data[STEP_HEAD.size : off].decode("utf-8")
    except UnicodeDecodeError as err:
        raise DecodeError(f"aligned step group name is not UTF-8: {err}") from None
    packets = []
    for index in range(count):
        if end - off < _U32.size:
            raise DecodeError(f"aligned step truncated before packet {index} at offset {off}")
        (length,) = _U32.unpack_from(data, off)
        off += _U32.size
        if length > end - off:
            raise DecodeError(
                f"packet {index} of aligned step claims {length} bytes at offset {off}, "
                f"only {end - off} left"
            )
        kind, inner = _check_prefix(data, off, off + length)
        if kind != KIND_TOKEN:
            raise DecodeError(f"packet {index} of aligned step is not a token packet")
        if inner > version:
            raise DecodeError(f"packet {index} is version {inner} inside a version {version} aligned step")
        packets.append(_decode_token(data, off, off + length))
        off += length
    if off != end:
        raise DecodeError(f"{end - off} trailing bytes after aligned step of {count} packets")
    try:
        return AlignedStep(
            group=group,
            seq=seq,
            start_ns=start_ns,
            end_ns=end_ns,
            clock=clock,
            skew_ns=None if skew == UNKNOWN_SKEW else skew,
            flags=flags & KNOWN_STEP_FLAGS,
            packets=tuple(packets),
        )
    except (ValueError, TypeError) as err:  # e.g. a nested packet on another clock
        raise DecodeError(f"invalid aligned step: {err}") from None
