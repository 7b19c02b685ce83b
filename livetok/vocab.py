"""The joint vocabulary: one integer id space for every token livetok produces, so that an
aligned step becomes one flat sequence of ids for a language model, and back.

Layout (docs/vocab.md has the table for the packaged codebooks):

* ids 0..31 are special tokens (:class:`Special`): padding, step start, one marker per
  (modality, scale) stream, one per packet flag, ``<positions>``, one per step flag; 14..31 are
  reserved and never emitted by this version;
* then one block per stream, in the fixed order audio/fine, audio/coarse, video/fine,
  video/coarse (streams a codebook set lacks take no ids): ``levels x codebook_size`` code ids,
  level-major (level ``l``, code ``c`` -> ``codes_start + l * codebook_size + c``), followed by
  ``rows x cols`` position ids (grid cell ``p`` -> ``positions_start + p``).

The layout depends only on the codebooks' fitted levels, sizes and grids (a :class:`VocabSpec`),
never on run-time settings, so it is the same for every run with a given ``codebook_id``; a
daemon that sends fewer levels than were fitted uses the first ones. The spec travels in every
source's retained meta (``livetok.bus.meta``), so a consumer rebuilds the exact table.

A flattened step::

    <step> [<missing_audio>] [<missing_video>] [<late>]
      then per packet, in the step's order:
      <audio/fine|...> [<keyframe>] [<delta>] [<gap>] [<discontinuity>] [<positions>]
        full grid:        codes of cell 0 (levels 0..L-1), codes of cell 1, ...
        with positions:   position id, its L code ids, next position id, its codes, ...

``<positions>`` marks a packet that lists its grid cells (delta packets, and empty gap packets);
without it the packet covers the whole grid in order. Timestamps, sequence numbers, names and
vectors are not tokens; :meth:`Vocabulary.unflatten` gives back modality, scale, flags, positions
and codes of every packet (a packet with no positions comes back with codes of shape [0, 0]).
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from livetok.errors import CodebookError, DecodeError
from livetok.wire import AlignedStep, Flag, Modality, Scale, StepFlag, TokenPacket

LAYOUT = "livetok-vocab/1"
N_SPECIAL = 32  # ids below this are special tokens; the unused ones are reserved for later versions


class Special(enum.IntEnum):
    """The special tokens; their ids never change (new ones take reserved ids 14..31)."""

    PAD = 0  # padding for batches; unflatten ignores it
    STEP = 1  # an aligned step starts
    AUDIO_FINE = 2  # a packet of this (modality, scale) stream follows
    AUDIO_COARSE = 3
    VIDEO_FINE = 4
    VIDEO_COARSE = 5
    KEYFRAME = 6  # packet flags, in bit order
    DELTA = 7
    GAP = 8
    DISCONTINUITY = 9
    POSITIONS = 10  # the packet lists its grid positions: each position id precedes its codes
    MISSING_AUDIO = 11  # step flags, in bit order
    MISSING_VIDEO = 12
    LATE = 13


SPECIAL_NAMES = {s: "<" + s.name.lower().replace("_fine", "/fine").replace("_coarse", "/coarse") + ">"
                 for s in Special}

STREAM_ORDER: tuple[tuple[Modality, Scale], ...] = (
    (Modality.AUDIO, Scale.FINE), (Modality.AUDIO, Scale.COARSE),
    (Modality.VIDEO, Scale.FINE), (Modality.VIDEO, Scale.COARSE),
)
_MARKER = {
    (Modality.AUDIO, Scale.FINE): Special.AUDIO_FINE, (Modality.AUDIO, Scale.COARSE): Special.AUDIO_COARSE,
    (Modality.VIDEO, Scale.FINE): Special.VIDEO_FINE, (Modality.VIDEO, Scale.COARSE): Special.VIDEO_COARSE,
}
_STREAM_OF_MARKER = {int(v): k for k, v in _MARKER.items()}
_PACKET_FLAGS = ((Flag.KEYFRAME, Special.KEYFRAME), (Flag.DELTA, Special.DELTA), (Flag.GAP, Special.GAP),
                 (Flag.DISCONTINUITY, Special.DISCONTINUITY))
_STEP_FLAGS = ((StepFlag.MISSING_AUDIO, Special.MISSING_AUDIO), (StepFlag.MISSING_VIDEO, Special.MISSING_VIDEO),
               (StepFlag.LATE, Special.LATE))
_FLAG_OF_SPECIAL = {int(s): f for f, s in _PACKET_FLAGS}
_STEP_FLAG_OF_SPECIAL = {int(s): f for f, s in _STEP_FLAGS}


def stream_key(modality: Modality, scale: Scale) -> str:
    """``"video/fine"``: how streams are named in meta and in the table."""
    return f"{modality.name.lower()}/{scale.name.lower()}"


def parse_stream_key(key: str) -> tuple[Modality, Scale]:
    mod, _, sc = key.partition("/")
    try:
        return Modality[mod.upper()], Scale[sc.upper()]
    except KeyError:
        raise ValueError(f"stream {key!r} is not audio|video/fine|coarse") from None


@dataclass(frozen=True)
class StreamShape:
    """What the vocabulary needs of one (modality, scale) codebook: fitted ``levels``,
    ``codebook_size`` codes per level, and the token ``grid`` (rows, cols)."""

    modality: Modality
    scale: Scale
    levels: int
    codebook_size: int
    grid: tuple[int, int]

    def __post_init__(self) -> None:
        rows, cols = self.grid
        if not (1 <= self.levels <= 64 and 1 <= self.codebook_size <= 65536 and rows >= 1 and cols >= 1
                and rows * cols <= 65536):
            raise ValueError(f"bad stream shape {self}")
        object.__setattr__(self, "modality", Modality(self.modality))
        object.__setattr__(self, "scale", Scale(self.scale))
        object.__setattr__(self, "grid", (int(rows), int(cols)))

    @property
    def key(self) -> str:
        return stream_key(self.modality, self.scale)

    @property
    def cells(self) -> int:
        return self.grid[0] * self.grid[1]


@dataclass(frozen=True)
class VocabSpec:
    """The codebook description a vocabulary is derived from (and that meta publishes)."""

    codebook_id: str
    streams: tuple[StreamShape, ...]

    def __post_init__(self) -> None:
        keys = [s.key for s in self.streams]
        if len(set(keys)) != len(keys):
            raise ValueError(f"streams repeat: {keys}")
        # canonical order, so that two descriptions of the same codebooks compare equal
        order = {k: i for i, k in enumerate(STREAM_ORDER)}
        object.__setattr__(self, "streams",
                           tuple(sorted(self.streams, key=lambda s: order[(s.modality, s.scale)])))


@dataclass(frozen=True)
class StreamIds:
    """Where one stream's ids are: code id = ``code_offsets[level] + code``; position id =
    ``position_offset + cell``."""

    shape: StreamShape
    code_offsets: tuple[int, ...]
    position_offset: int


@dataclass(frozen=True)
class VocabRange:
    """One row of the table: ids ``start .. start + size - 1`` are ``name``."""

    name: str
    start: int
    size: int


@dataclass(frozen=True)
class FlatPacket:
    """A packet as the ids describe it: ``codes`` [P, L] uint16, ``positions`` [P] uint16 or None
    (None: the whole grid in order)."""

    modality: Modality
    scale: Scale
    flags: Flag
    codes: np.ndarray
    positions: np.ndarray | None


@dataclass(frozen=True)
class FlatStep:
    """A step as the ids describe it."""

    flags: StepFlag
    packets: tuple[FlatPacket, ...]


class _CodebookLike(Protocol):
    """What :meth:`Vocabulary.from_codebooks` reads of a ``livetok.tokenizers.CodebookSet``."""

    @property
    def frontend(self) -> Mapping[str, Mapping[str, Any]]: ...
    @property
    def scales(self) -> Mapping[str, Any]: ...
    @property
    def codebook_id(self) -> str: ...


class Vocabulary:
    """The joint id space of one codebook set; build it with :meth:`from_codebook_file`,
    :meth:`from_codebooks`, :meth:`from_dict` (meta) or from a :class:`VocabSpec`."""

    def __init__(self, spec: VocabSpec) -> None:
        self.spec = spec
        self.codebook_id = spec.codebook_id
        self._streams: dict[tuple[Modality, Scale], StreamIds] = {}
        self._level_offsets: dict[tuple[Modality, Scale], np.ndarray] = {}
        start = N_SPECIAL
        for shape in spec.streams:
            offsets = tuple(start + level * shape.codebook_size for level in range(shape.levels))
            start += shape.levels * shape.codebook_size
            ids = StreamIds(shape, offsets, start)
            start += shape.cells
            self._streams[(shape.modality, shape.scale)] = ids
            self._level_offsets[(shape.modality, shape.scale)] = np.asarray(offsets, dtype=np.int64)
        self.size = start
        # per-id lookup tables for unflatten: which stream a code/position id is, and its level
        # (-1: a position id). Small: one int8 + one int8 per id.
        self._stream_of = np.full(self.size, -1, dtype=np.int8)
        self._level_of = np.full(self.size, -2, dtype=np.int8)
        self._stream_list = list(self._streams.values())
        for i, sid in enumerate(self._stream_list):
            k = sid.shape.codebook_size
            for level, off in enumerate(sid.code_offsets):
                self._stream_of[off:off + k] = i
                self._level_of[off:off + k] = level
            self._stream_of[sid.position_offset:sid.position_offset + sid.shape.cells] = i
            self._level_of[sid.position_offset:sid.position_offset + sid.shape.cells] = -1

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_codebooks(cls, cbs: _CodebookLike) -> Vocabulary:
        """From a loaded ``CodebookSet`` (its fitted levels and sizes, its front end's grids)."""
        shapes = []
        for key, arrays in cbs.scales.items():
            mod, _, sc = key.partition(".")
            levels, size = (int(n) for n in arrays.codebooks.shape[:2])
            shapes.append(StreamShape(Modality[mod.upper()], Scale[sc.upper()], levels, size,
                                      _grid(cbs.frontend, mod, sc)))
        return cls(VocabSpec(cbs.codebook_id, tuple(shapes)))

    @classmethod
    def from_codebook_file(cls, path: str | Path | None = None) -> Vocabulary:
        """From a codebook file's header alone (no torch, no safetensors): its recorded
        ``codebook_id``, front end and tensor shapes. None: the codebooks packaged with livetok."""
        p = Path(str(resources.files("livetok") / "codebooks" / "default.safetensors")) if path is None else Path(path)
        try:
            with open(p, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                if n > 100_000_000:
                    raise ValueError("header length is implausible")
                header = json.loads(f.read(n))
            meta = header["__metadata__"]
            frontend = json.loads(meta["frontend"])
            codebook_id = meta["codebook_id"]
            shapes = []
            for mod, sc in ((m.name.lower(), s.name.lower()) for m, s in STREAM_ORDER):
                entry = header.get(f"{mod}.{sc}.codebooks")
                if entry is None:
                    continue
                levels, size = (int(n) for n in entry["shape"][:2])
                shapes.append(StreamShape(Modality[mod.upper()], Scale[sc.upper()], levels, size,
                                          _grid(frontend, mod, sc)))
        except (OSError, ValueError, KeyError, TypeError, struct.error) as err:
            raise CodebookError(f"{p}: not a readable livetok codebook file ({err})") from err
        return cls(VocabSpec(codebook_id, tuple(shapes)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form published in meta: the layout name, the spec, and the table it gives."""
        return {
            "layout": LAYOUT,
            "codebook_id": self.codebook_id,
            "size": self.size,
            "streams": {s.key: {"levels": s.levels, "codebook_size": s.codebook_size, "grid": list(s.grid)}
                        for s in self.spec.streams},
            "special": {SPECIAL_NAMES[s]: int(s) for s in Special},
            "ranges": [{"name": r.name, "start": r.start, "size": r.size} for r in self.table()],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Vocabulary:
        """Rebuild from :meth:`to_dict`'s form; DecodeError when the layout is unknown or the
        published table disagrees with the one this version derives from the spec."""
        try:
            if doc["layout"] != LAYOUT:
                raise DecodeError(f"vocabulary layout {doc['layout']!r} is not {LAYOUT!r} (upgrade livetok)")
            shapes = []
            for key, s in doc["streams"].items():
                mod, sc = parse_stream_key(key)
                rows, cols = s["grid"]
                shapes.append(StreamShape(mod, sc, int(s["levels"]), int(s["codebook_size"]), (int(rows), int(cols))))
            vocab = cls(VocabSpec(str(doc["codebook_id"]), tuple(shapes)))
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DecodeError(f"vocabulary description is malformed: {err!r}") from err
        if "size" in doc and doc["size"] != vocab.size:
            raise DecodeError(f"vocabulary size {doc['size']} disagrees with its spec ({vocab.size})")
        if "ranges" in doc and doc["ranges"] != vocab.to_dict()["ranges"]:
            raise DecodeError("vocabulary table disagrees with its spec (another layout version?)")
        return vocab

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Vocabulary:
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise DecodeError(f"vocabulary JSON is not valid: {err}") from err
        if not isinstance(doc, dict):
            raise DecodeError("vocabulary JSON is not an object")
        return cls.from_dict(doc)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"Vocabulary(codebook_id={self.codebook_id!r}, size={self.size})"

    # -- the table ---------------------------------------------------------------------------------

    def stream(self, modality: Modality, scale: Scale) -> StreamIds:
        """Offsets of one stream; CodebookError when these codebooks have no such stream."""
        try:
            return self._streams[(modality, scale)]
        except KeyError:
            raise CodebookError(
                f"codebooks {self.codebook_id} have no {stream_key(modality, scale)} stream") from None

    @property
    def streams(self) -> tuple[StreamIds, ...]:
        return tuple(self._stream_list)

    def code_id(self, modality: Modality, scale: Scale, level: int, code: int) -> int:
        sid = self.stream(modality, scale)
        if not (0 <= level < len(sid.code_offsets) and 0 <= code < sid.shape.codebook_size):
            raise ValueError(f"level {level}, code {code} outside {sid.shape.key}")
        return sid.code_offsets[level] + code

    def position_id(self, modality: Modality, scale: Scale, cell: int) -> int:
        sid = self.stream(modality, scale)
        if not 0 <= cell < sid.shape.cells:
            raise ValueError(f"cell {cell} outside the {sid.shape.grid} grid of {sid.shape.key}")
        return sid.position_offset + cell

    def table(self) -> list[VocabRange]:
        """Every range of ids with its name, in id order (special tokens one by one)."""
        rows = [VocabRange(SPECIAL_NAMES[s], int(s), 1) for s in Special]
        rows.append(VocabRange("<reserved>", len(Special), N_SPECIAL - len(Special)))
        for sid in self._stream_list:
            key, k = sid.shape.key, sid.shape.codebook_size
            rows += [VocabRange(f"{key}/level{level}", off, k) for level, off in enumerate(sid.code_offsets)]
            rows.append(VocabRange(f"{key}/position", sid.position_offset, sid.shape.cells))
        return rows

    def describe(self, token: int) -> str:
        """A readable name for one id: ``<step>``, ``video/fine/level2:517``, ``video/fine/position:13``."""
        t = int(token)
        if 0 <= t < len(Special):
            return SPECIAL_NAMES[Special(t)]
        if 0 <= t < N_SPECIAL:
            return f"<reserved{t}>"
        if not 0 <= t < self.size:
            raise ValueError(f"id {t} is outside the vocabulary (size {self.size})")
        sid = self._stream_list[int(self._stream_of[t])]
        level = int(self._level_of[t])
        if level < 0:
            return f"{sid.shape.key}/position:{t - sid.position_offset}"
        return f"{sid.shape.key}/level{level}:{t - sid.code_offsets[level]}"

    # -- flatten -----------------------------------------------------------------------------------

    def flatten(self, step: AlignedStep, dtype: npt.DTypeLike = np.int32) -> np.ndarray:
        """One aligned step as a flat id sequence [N] (``dtype``, int32 by default). Packets from
        other codebooks, or whose grid, levels or codes do not fit these, raise CodebookError."""
        head = [int(Special.STEP)] + [int(s) for f, s in _STEP_FLAGS if step.flags & f]
        parts: list[np.ndarray] = [np.asarray(head, dtype=np.int64)]
        for p in step.packets:
            self._flatten_packet(p, parts)
        return np.concatenate(parts).astype(dtype, copy=False)

    def flatten_packet(self, packet: TokenPacket,
                       dtype: npt.DTypeLike = np.int32) -> np.ndarray:
        """One token packet (its marker, flags and codes) as ids [N], as inside a flattened step."""
        parts: list[np.ndarray] = []
        self._flatten_packet(packet, parts)
        return np.concatenate(parts).astype(dtype, copy=False)

    def flatten_steps(self, steps: Iterable[AlignedStep],
                      dtype: npt.DTypeLike = np.int32) -> np.ndarray:
        """Several steps back to back [N]."""
        parts = [self.flatten(s, np.int64) for s in steps]
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)

    def _flatten_packet(self, p: TokenPacket, parts: list[np.ndarray]) -> None:
        key = (p.modality, p.scale)
        sid = self.stream(p.modality, p.scale)
        shape = sid.shape
        if p.codebook_id != self.codebook_id:
            raise CodebookError(
                f"packet of {p.source!r} {shape.key} is from codebooks {p.codebook_id}, "
                f"this vocabulary is for {self.codebook_id}")
        if p.grid != shape.grid:
            raise CodebookError(f"packet of {p.source!r} {shape.key} has grid {p.grid}, the codebooks {shape.grid}")
        codes = p.codes
        levels = codes.shape[1]
        if levels > shape.levels:
            raise CodebookError(
                f"packet of {p.source!r} {shape.key} has {levels} levels, the codebooks {shape.levels}")
        if codes.size and int(codes.max()) >= shape.codebook_size:
            raise CodebookError(
                f"packet of {p.source!r} {shape.key} has code {int(codes.max())}, "
                f"the codebooks {shape.codebook_size} codes per level")
        head = [int(_MARKER[key])] + [int(s) for f, s in _PACKET_FLAGS if p.flags & f]
        if p.positions is not None:
            head.append(int(Special.POSITIONS))
        parts.append(np.asarray(head, dtype=np.int64))
        # [P, L] code ids: one broadcast add of the per-level offsets
        ids = codes.astype(np.int64) + self._level_offsets[key][:levels]
        if p.positions is not None:
            pos = p.positions.astype(np.int64) + sid.position_offset
            ids = np.concatenate([pos[:, None], ids], axis=1)
        parts.append(ids.reshape(-1))

    # -- unflatten ---------------------------------------------------------------------------------

    def unflatten(self, ids: Sequence[int] | np.ndarray) -> FlatStep:
        """The one step ``ids`` hold (as made by :meth:`flatten`; PAD ids are ignored).
        DecodeError when the ids are not exactly one well-formed step."""
        steps = self.unflatten_steps(ids)
        if len(steps) != 1:
            raise DecodeError(f"token ids hold {len(steps)} steps, expected exactly 1")
        return steps[0]

    def unflatten_steps(self, ids: Sequence[int] | np.ndarray) -> list[FlatStep]:
        """Every step in ``ids`` (steps back to back, PAD anywhere between tokens ignored)."""
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        arr = arr[arr != Special.PAD]
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= self.size):
            bad = int(arr[(arr < 0) | (arr >= self.size)][0])
            raise DecodeError(f"token id {bad} is outside the vocabulary (size {self.size})")
        if arr.size and arr[0] != Special.STEP:
            raise DecodeError(f"token ids must start with <step>, not {self.describe(int(arr[0]))}")
        specials = np.flatnonzero(arr < N_SPECIAL)
        steps: list[FlatStep] = []
        step_flags = StepFlag.NONE
        packets: list[FlatPacket] = []
        current: list[Any] | None = None  # [modality, scale, flags, has_positions] of the open packet
        n = len(specials)
        for k in range(n):
            i = int(specials[k])
            tok = int(arr[i])
            body_end = int(specials[k + 1]) if k + 1 < n else arr.size
            body = arr[i + 1:body_end]
            if tok == Special.STEP:
                if k:
                    self._close(current, np.zeros(0, np.int64), packets)
                    steps.append(FlatStep(step_flags, tuple(packets)))
                step_flags, packets, current = StepFlag.NONE, [], None
            elif tok in _STEP_FLAG_OF_SPECIAL:
                if current is not None:
                    raise DecodeError(f"step flag {SPECIAL_NAMES[Special(tok)]} after a packet started")
                step_flags |= _STEP_FLAG_OF_SPECIAL[tok]
            elif tok in _STREAM_OF_MARKER:
                self._close(current, np.zeros(0, np.int64), packets)
                mod, sc = _STREAM_OF_MARKER[tok]
                current = [mod, sc, Flag.NONE, False]
            elif tok in _FLAG_OF_SPECIAL or tok == Special.POSITIONS:
                if current is None:
                    raise DecodeError(f"{self.describe(tok)} outside a packet")
                if tok == Special.POSITIONS:
                    current[3] = True
                else:
                    current[2] |= _FLAG_OF_SPECIAL[tok]
            else:
                raise DecodeError(f"{self.describe(tok)} is not used by layout {LAYOUT}")
            if body.size:
                if current is None:
                    raise DecodeError(f"{body.size} code ids outside any packet")
                self._close(current, body, packets)
                current = None
        if arr.size:
            self._close(current, np.zeros(0, np.int64), packets)
            steps.append(FlatStep(step_flags, tuple(packets)))
        return steps

    def _close(self, current: list[Any] | None, body: np.ndarray, packets: list[FlatPacket]) -> None:
        """Finish the open packet with ``body`` (its code and position ids) and append it."""
        if current is None:
            return
        mod, sc, flags, has_pos = current
        sid = self.stream(mod, sc)
        shape = sid.shape
        stream_index = self._stream_list.index(sid)
        if body.size and np.any(self._stream_of[body] != stream_index):
            raise DecodeError(f"a {shape.key} packet holds ids of another stream")
        levels_of = self._level_of[body]
        if has_pos:
            n_pos = int(np.count_nonzero(levels_of == -1))
            if n_pos == 0:
                if body.size:
                    raise DecodeError(f"a {shape.key} packet with <positions> has codes but no position")
                packets.append(FlatPacket(mod, sc, flags, np.zeros((0, 0), np.uint16), np.zeros(0, np.uint16)))
                return
            if body.size % n_pos:
                raise DecodeError(f"a {shape.key} packet's {body.size} ids do not split into {n_pos} positions")
            width = body.size // n_pos
            rows = body.reshape(n_pos, width)
            expect = np.arange(-1, width - 1, dtype=np.int8)
            if not np.array_equal(levels_of.reshape(n_pos, width), np.broadcast_to(expect, rows.shape)):
                raise DecodeError(f"a {shape.key} packet's ids are not position, level 0, level 1, ... repeated")
            positions = (rows[:, 0] - sid.position_offset).astype(np.uint16)
            codes = rows[:, 1:]
        else:
            cells = shape.cells
            if body.size % cells:
                raise DecodeError(f"a {shape.key} full-grid packet has {body.size} ids, not a multiple of {cells}")
            width = body.size // cells
            codes = body.reshape(cells, width)
            expect = np.arange(width, dtype=np.int8)
            if not np.array_equal(levels_of.reshape(cells, width), np.broadcast_to(expect, codes.shape)):
                raise DecodeError(f"a {shape.key} packet's ids are not level 0, level 1, ... per position")
            positions = None
        levels = codes.shape[1]
        out = (codes - self._level_offsets[(mod, sc)][:levels]).astype(np.uint16)
        packets.append(FlatPacket(mod, sc, flags, out, positions))


def _grid(frontend: Mapping[str, Mapping[str, Any]], modality: str, scale: str) -> tuple[int, int]:
    """Token grid of a stream from the codebooks' front-end parameters: audio tokens are one cell;
    video has (size / patch) x (size / patch) patches."""
    if modality == "audio":
        return (1, 1)
    video = frontend["video"]
    n = int(video["size"]) // int(video[f"{scale}_patch"])
    return (n, n)
