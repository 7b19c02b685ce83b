"""Data model of the wire format (v1, and v2 for named streams): the enums and the two packet dataclasses.

The byte layout lives in :mod:`livetok.wire.packet`; docs/wire-format.md specifies both.
Construction validates every field, so a packet that exists can always be encoded, and the
decoder can rely on the same rules to reject bad bytes.
"""

from __future__ import annotations

import enum
import operator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
MAX_NAME_BYTES = 255  # source / group names carry a u8 length on the wire
MAX_GRID_CELLS = 1 << 16  # positions are u16 indices into the row-major grid
MAX_U16 = 0xFFFF
MAX_STEP_PACKETS = 0xFFFF  # an aligned step carries a u16 packet count
RESERVED_STREAM_NAMES = frozenset({"fine", "coarse"})  # the scales' own names: a named stream cannot take them
UNKNOWN_SKEW = INT64_MIN  # wire sentinel for "A/V skew not measured" (skew_ns=None)

_HEX = frozenset("0123456789abcdef")
_E = TypeVar("_E", bound=enum.Enum)


class Modality(enum.IntEnum):
    """What a token stream encodes; ``.name.lower()`` is its spelling in topics and configs."""

    AUDIO = 0
    VIDEO = 1


class Scale(enum.IntEnum):
    """Which scale of the built-in tokenizers produced the codes; ``.name.lower()`` gives "fine" /
    "coarse". A plug-in tokenizer's stream has no scale (``TokenPacket.scale`` None): it is named
    by ``TokenPacket.stream`` instead (wire v2, scale byte :data:`NAMED_SCALE`)."""

    FINE = 0
    COARSE = 1


NAMED_SCALE = 255  # the scale byte of a named stream's packet (wire v2)


class Clock(enum.IntEnum):
    """Epoch of a packet's timestamps (always integer nanoseconds).

    MEDIA: since the start of the media (tokenizing files). UNIX: since the UNIX epoch,
    CLOCK_REALTIME (live capture), so packets from different machines can be aligned.
    """

    MEDIA = 0
    UNIX = 1


class Flag(enum.IntFlag):
    """Per-packet flags. Bits 5..15 are reserved: writers send 0, readers ignore them."""

    NONE = 0
    KEYFRAME = 1  # codes for the whole grid; a consumer can start here (every audio packet; full video grids)
    DELTA = 2  # only the positions that changed since the previous packet of the stream
    GAP = 4  # input was missing for this interval; codes may be empty
    DISCONTINUITY = 8  # timestamps or seq jumped (restart, seek, dropped input)
    # Codes from the greedy encoder where the stream's configured beam is larger (an overloaded
    # daemon's catch-up batch): the same codebooks, maybe not the codes an offline run gives.
    GREEDY = 16


class StepFlag(enum.IntFlag):
    """Flags of an aligned step. Bits 3..15 are reserved: writers send 0, readers ignore them."""

    NONE = 0
    MISSING_AUDIO = 1
    MISSING_VIDEO = 2
    LATE = 4  # assembled after its deadline (some packets arrived late)


KNOWN_FLAGS = int(Flag.KEYFRAME | Flag.DELTA | Flag.GAP | Flag.DISCONTINUITY | Flag.GREEDY)
KNOWN_STEP_FLAGS = int(StepFlag.MISSING_AUDIO | StepFlag.MISSING_VIDEO | StepFlag.LATE)

# Value -> member tables: calling an enum class costs ~0.3 µs, a dict lookup ~0.03 µs, and
# packets are built in the hot path. IntEnum members hash like their int values.
_MODALITY_OF: dict[int, Modality] = {int(m): m for m in Modality}
_SCALE_OF: dict[int, Scale] = {int(m): m for m in Scale}
_CLOCK_OF: dict[int, Clock] = {int(m): m for m in Clock}
_FLAG_OF: dict[int, Flag] = {v: Flag(v) for v in range(KNOWN_FLAGS + 1)}
_STEP_FLAG_OF: dict[int, StepFlag] = {v: StepFlag(v) for v in range(KNOWN_STEP_FLAGS + 1)}


def flag_names(flags: enum.IntFlag | int) -> list[str]:
    """Lower-case names of the set flags in bit order, e.g. ``["keyframe", "gap"]``.

    Works for :class:`Flag` and :class:`StepFlag`; a plain int is read as a :class:`Flag`.
    Bits without a name are left out.
    """
    cls = type(flags) if isinstance(flags, enum.IntFlag) else Flag
    value = int(flags)
    members = sorted(cls, key=int)  # iterating a Flag class yields single-bit members only
    return [str(m.name).lower() for m in members if value & int(m)]


def _name_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as err:  # lone surrogates cannot be sent
        raise ValueError(f"{what} {value!r} is not encodable as UTF-8: {err}") from None
    if len(raw) > MAX_NAME_BYTES:
        raise ValueError(f"{what} is {len(raw)} bytes in UTF-8, more than {MAX_NAME_BYTES}")
    return raw


def _member(value: object, table: dict[int, _E], what: str) -> _E:
    try:
        return table[value]  # type: ignore[index]
    except (KeyError, TypeError):
        raise ValueError(f"{what}={value!r} is not in {min(table)}..{max(table)}") from None


def _int_in(value: object, lo: int, hi: int, what: str) -> int:
    number = operator.index(value)  # type: ignore[arg-type]  # TypeError for non-integers
    if not lo <= number <= hi:
        raise ValueError(f"{what}={number} is outside [{lo}, {hi}]")
    return number


def _timespan(start_ns: object, end_ns: object) -> tuple[int, int]:
    start = _int_in(start_ns, INT64_MIN, INT64_MAX, "start_ns")
    end = _int_in(end_ns, INT64_MIN, INT64_MAX, "end_ns")
    if end < start:
        raise ValueError(f"end_ns={end} is before start_ns={start}")
    return start, end


def _is_u16(arr: np.ndarray) -> bool:
    return arr.dtype.kind == "u" and arr.dtype.itemsize == 2


@dataclass(frozen=True, eq=False)
class TokenPacket:
    """Tokens of one (source, modality, stream) for one time step.

    The stream is a ``scale`` (FINE, COARSE: the built-in tokenizers) or, with ``scale=None``, the
    ``stream`` name a plug-in tokenizer declares (1-255 UTF-8 bytes, not "fine" or "coarse");
    ``stream`` is "" for the two scales. :attr:`stream_name` is the name either way.

    Shapes: ``codes`` [P, L] uint16 (P positions sent, L RVQ levels); ``positions`` [P] uint16
    row-major indices into ``grid`` (None: all rows*cols positions in order, so P = rows*cols);
    ``vectors`` [P, D] float16 continuous projected vectors, optional.
    Arrays are not copied; do not mutate them after construction.
    """

    source: str
    modality: Modality
    scale: Scale | None
    seq: int
    start_ns: int
    end_ns: int
    clock: Clock
    codebook_id: str
    flags: Flag
    grid: tuple[int, int]
    codes: np.ndarray
    positions: np.ndarray | None = None
    vectors: np.ndarray | None = None
    stream: str = ""

    def __post_init__(self) -> None:
        _name_bytes(self.source, "source")
        scale = None if self.scale is None else _member(self.scale, _SCALE_OF, "scale")
        if scale is None:
            if not _name_bytes(self.stream, "stream") or self.stream in RESERVED_STREAM_NAMES:
                raise ValueError(f"a named stream (scale None) needs a name but fine/coarse, got {self.stream!r}")
        elif self.stream != "":
            raise ValueError(f"stream {self.stream!r} given with scale {scale.name}: only named streams carry a name")
        start, end = _timespan(self.start_ns, self.end_ns)
        cid = self.codebook_id
        if not (isinstance(cid, str) and len(cid) == 16 and _HEX.issuperset(cid)):
            raise ValueError(f"codebook_id must be 16 lower-case hex characters, got {cid!r}")
        rows, cols = self.grid
        rows = _int_in(rows, 1, MAX_U16, "grid rows")
        cols = _int_in(cols, 1, MAX_U16, "grid cols")
        cells = rows * cols
        if cells > MAX_GRID_CELLS:
            raise ValueError(f"grid {rows}x{cols} has more than {MAX_GRID_CELLS} cells")
        n_pos = self._check_codes()
        self._check_positions(n_pos, cells)
        self._check_vectors(n_pos)
        # Frozen, so normalise (ints -> enum members, numpy ints -> int) straight into the
        # instance dict, in one update: packets are built in the hot path.
        vars(self).update(
            modality=_member(self.modality, _MODALITY_OF, "modality"),
            scale=scale,
            clock=_member(self.clock, _CLOCK_OF, "clock"),
            seq=_int_in(self.seq, 0, UINT64_MAX, "seq"),
            start_ns=start,
            end_ns=end,
            flags=_member(self.flags, _FLAG_OF, "flags (v1 defines bits 0-4)"),
            grid=(rows, cols),
        )

    def _check_codes(self) -> int:
        codes = self.codes
        if not isinstance(codes, np.ndarray) or codes.ndim != 2 or not _is_u16(codes):
            raise ValueError(f"codes must be a [P, L] uint16 array, got {_describe(codes)}")
        if codes.shape[1] > MAX_U16:
            raise ValueError(f"codes has {codes.shape[1]} levels, more than {MAX_U16}")
        return int(codes.shape[0])

    def _check_positions(self, n_pos: int, cells: int) -> None:
        pos = self.positions
        if pos is None:
            if n_pos != cells:
                raise ValueError(
                    f"codes has {n_pos} positions but the {self.grid} grid has {cells}; "
                    "pass positions for a partial packet"
                )
            return
        if not isinstance(pos, np.ndarray) or pos.shape != (n_pos,) or not _is_u16(pos):
            raise ValueError(f"positions must be a [{n_pos}] uint16 array, got {_describe(pos)}")
        if n_pos > cells:
            raise ValueError(f"{n_pos} positions for a grid of {cells} cells")
        if n_pos and int(pos.max()) >= cells:
            raise ValueError(f"position {int(pos.max())} is outside the {self.grid} grid")

    def _check_vectors(self, n_pos: int) -> None:
        vec = self.vectors
        if vec is None:
            return
        ok = isinstance(vec, np.ndarray) and vec.ndim == 2 and vec.shape[0] == n_pos
        if not ok or vec.dtype.kind != "f" or vec.dtype.itemsize != 2:
            raise ValueError(f"vectors must be a [{n_pos}, D] float16 array, got {_describe(vec)}")
        if vec.shape[1] > MAX_U16:
            raise ValueError(f"vectors has dimension {vec.shape[1]}, more than {MAX_U16}")

    @property
    def stream_name(self) -> str:
        """``"fine"``, ``"coarse"``, or a named stream's name: how topics, meta and the vocabulary name it."""
        return self.stream if self.scale is None else self.scale.name.lower()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenPacket):
            return NotImplemented
        return (
            self.source == other.source
            and self.modality == other.modality
            and self.scale == other.scale
            and self.stream == other.stream
            and self.seq == other.seq
            and self.start_ns == other.start_ns
            and self.end_ns == other.end_ns
            and self.clock == other.clock
            and self.codebook_id == other.codebook_id
            and self.flags == other.flags
            and self.grid == other.grid
            and _same_array(self.codes, other.codes)
            and _same_array(self.positions, other.positions)
            and _same_array(self.vectors, other.vectors)
        )

    __hash__ = None  # type: ignore[assignment]  # holds mutable arrays


@dataclass(frozen=True, eq=False)
class AlignedStep:
    """Token packets of one source group for one time step, on one clock.

    ``skew_ns`` is the measured audio-minus-video capture skew (None: not measured).
    Every nested packet must use the step's ``clock``.
    """

    group: str
    seq: int
    start_ns: int
    end_ns: int
    clock: Clock
    skew_ns: int | None
    flags: StepFlag
    packets: tuple[TokenPacket, ...]

    def __post_init__(self) -> None:
        _name_bytes(self.group, "group")
        start, end = _timespan(self.start_ns, self.end_ns)
        clock = _member(self.clock, _CLOCK_OF, "clock")
        skew = self.skew_ns
        if skew is not None:
            # INT64_MIN itself is the wire's "unknown" sentinel, so it cannot be a measurement
            skew = _int_in(skew, INT64_MIN + 1, INT64_MAX, "skew_ns")
        packets = tuple(self.packets)
        if len(packets) > MAX_STEP_PACKETS:
            raise ValueError(f"{len(packets)} packets in one step, more than {MAX_STEP_PACKETS}")
        for pkt in packets:
            if not isinstance(pkt, TokenPacket):
                raise TypeError(f"an aligned step holds TokenPackets, not {type(pkt).__name__}")
            if pkt.clock != clock:
                raise ValueError(
                    f"packet of {pkt.source!r} is on clock {pkt.clock.name}, "
                    f"the step on {clock.name}"
                )
        vars(self).update(  # frozen: normalise straight into the instance dict
            seq=_int_in(self.seq, 0, UINT64_MAX, "seq"),
            start_ns=start,
            end_ns=end,
            clock=clock,
            skew_ns=skew,
            flags=_member(self.flags, _STEP_FLAG_OF, "flags (v1 defines bits 0-2)"),
            packets=packets,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AlignedStep):
            return NotImplemented
        return (
            self.group == other.group
            and self.seq == other.seq
            and self.start_ns == other.start_ns
            and self.end_ns == other.end_ns
            and self.clock == other.clock
            and self.skew_ns == other.skew_ns
            and self.flags == other.flags
            and self.packets == other.packets
        )

    __hash__ = None  # type: ignore[assignment]  # holds packets with mutable arrays


def _same_array(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    # NaN vectors must survive a round trip as "equal"; codes and positions are integers
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
