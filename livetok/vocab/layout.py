"""The joint vocabulary's layout: the special tokens, the streams' order and shapes, the table's rows.

What :class:`~livetok.vocab.vocabulary.Vocabulary` derives its id space from (a :class:`VocabSpec`:
the codebooks' fitted levels, sizes and grids, the named streams of plug-in tokenizers, a text
tokenizer's size as the base) and the names the table, the meta and a text tokenizer use.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from livetok.wire import Flag, Modality, Scale, StepFlag

LAYOUT = "livetok-vocab/1"  # the built-in streams only, no base: what a v1 reader knows
LAYOUT_V2 = "livetok-vocab/2"  # v1, then one block per named stream; an optional base offset
LAYOUTS = (LAYOUT, LAYOUT_V2)
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


def added_token_name(special: int) -> str:
    """The name special id ``special`` (0..31, reserved ones included) takes as a text tokenizer's added
    token: ``<|livetok:step|>``, ``<|livetok:audio/fine|>``, ``<|livetok:reserved14|>``. Namespaced so
    that a text tokenizer's own ``<pad>`` or ``<unk>`` never takes one of them."""
    if not 0 <= special < N_SPECIAL:
        raise ValueError(f"id {special} is not a special token (0..{N_SPECIAL - 1})")
    inner = SPECIAL_NAMES[Special(special)][1:-1] if special < len(Special) else f"reserved{special}"
    return f"<|livetok:{inner}|>"


ADDED_TOKENS = tuple(added_token_name(i) for i in range(N_SPECIAL))

SCALE_OF_NAME = {s.name.lower(): s for s in Scale}
STREAM_ORDER: tuple[tuple[Modality, Scale], ...] = (
    (Modality.AUDIO, Scale.FINE), (Modality.AUDIO, Scale.COARSE),
    (Modality.VIDEO, Scale.FINE), (Modality.VIDEO, Scale.COARSE),
)
MARKER = {
    (Modality.AUDIO, Scale.FINE): Special.AUDIO_FINE, (Modality.AUDIO, Scale.COARSE): Special.AUDIO_COARSE,
    (Modality.VIDEO, Scale.FINE): Special.VIDEO_FINE, (Modality.VIDEO, Scale.COARSE): Special.VIDEO_COARSE,
}
STREAM_OF_MARKER = {int(v): k for k, v in MARKER.items()}
PACKET_FLAGS = ((Flag.KEYFRAME, Special.KEYFRAME), (Flag.DELTA, Special.DELTA), (Flag.GAP, Special.GAP),
                 (Flag.DISCONTINUITY, Special.DISCONTINUITY))
STEP_FLAGS = ((StepFlag.MISSING_AUDIO, Special.MISSING_AUDIO), (StepFlag.MISSING_VIDEO, Special.MISSING_VIDEO),
               (StepFlag.LATE, Special.LATE))
FLAG_OF_SPECIAL = {int(s): f for f, s in PACKET_FLAGS}
STEP_FLAG_OF_SPECIAL = {int(s): f for f, s in STEP_FLAGS}


def stream_key(modality: Modality, scale: Scale | str) -> str:
    """``"video/fine"``, ``"audio/units"``: how streams are named in meta and in the table
    (``scale``: a Scale, or a stream's name)."""
    name = scale.name.lower() if isinstance(scale, Scale) else scale
    return f"{modality.name.lower()}/{name}"


def parse_stream_key(key: str) -> tuple[Modality, Scale]:
    """``"video/fine"`` -> (VIDEO, FINE); ValueError for anything but a built-in stream."""
    mod, sc = parse_stream_ref(key)
    if not isinstance(sc, Scale):
        raise ValueError(f"stream {key!r} is not audio|video/fine|coarse")
    return mod, sc


def parse_stream_ref(key: str) -> tuple[Modality, Scale | str]:
    """``"video/fine"`` -> (VIDEO, FINE); ``"audio/units"`` -> (AUDIO, "units"): a named stream.
    ValueError when the modality is not audio or video or the name is empty."""
    mod, _, name = key.partition("/")
    try:
        modality = Modality[mod.upper()]
    except KeyError:
        raise ValueError(f"stream {key!r} is not audio/NAME or video/NAME") from None
    if not name:
        raise ValueError(f"stream {key!r} has no name")
    return modality, SCALE_OF_NAME.get(name, name)



@dataclass(frozen=True)
class StreamShape:
    """What the vocabulary needs of one stream's codebook: fitted ``levels``, ``codebook_size`` codes
    per level, and the token ``grid`` (rows, cols).

    A built-in stream has a ``scale`` (FINE, COARSE) and the vocabulary's codebook id. A plug-in
    tokenizer's named stream has ``scale`` None, its ``name`` (as :attr:`TokenPacket.stream`) and
    the ``codebook_id`` of its tokenizer (None: the vocabulary's, filled in by :class:`VocabSpec`).
    """

    modality: Modality
    scale: Scale | None
    levels: int
    codebook_size: int
    grid: tuple[int, int]
    name: str = ""
    codebook_id: str | None = None

    def __post_init__(self) -> None:
        rows, cols = self.grid
        if not (1 <= self.levels <= 64 and 1 <= self.codebook_size <= 65536 and rows >= 1 and cols >= 1
                and rows * cols <= 65536):
            raise ValueError(f"bad stream shape {self}")
        object.__setattr__(self, "modality", Modality(self.modality))
        if self.scale is None:
            if not self.name or "/" in self.name or self.name in SCALE_OF_NAME:
                raise ValueError(f"a named stream needs a name without '/', not fine or coarse: {self.name!r}")
        else:
            object.__setattr__(self, "scale", Scale(self.scale))
            if self.name:
                raise ValueError(f"stream {self.name!r} given with scale {self.scale}: only named streams have names")
        if self.codebook_id is not None and not _is_codebook_id(self.codebook_id):
            raise ValueError(f"codebook_id {self.codebook_id!r} is not 16 lower-case hex digits")
        object.__setattr__(self, "grid", (int(rows), int(cols)))

    @property
    def stream_name(self) -> str:
        """"fine", "coarse" or the named stream's name."""
        return self.name if self.scale is None else self.scale.name.lower()

    @property
    def key(self) -> str:
        return stream_key(self.modality, self.stream_name)

    @property
    def cells(self) -> int:
        return self.grid[0] * self.grid[1]


def _is_codebook_id(value: object) -> bool:
    return isinstance(value, str) and len(value) == 16 and set(value) <= set("0123456789abcdef")


@dataclass(frozen=True)
class VocabSpec:
    """The codebook description a vocabulary is derived from (and that meta publishes).

    ``streams``: the built-in ones are kept in the canonical order (:data:`STREAM_ORDER`), the named
    ones after them in the order given (the meta's: their ids depend on it). ``base``: ids 0..base-1
    belong to a text tokenizer and every livetok id is shifted by it (0: livetok's ids alone).
    """

    codebook_id: str
    streams: tuple[StreamShape, ...]
    base: int = 0

    def __post_init__(self) -> None:
        keys = [s.key for s in self.streams]
        if len(set(keys)) != len(keys):
            raise ValueError(f"streams repeat: {keys}")
        if not isinstance(self.base, int) or self.base < 0:
            raise ValueError(f"base {self.base!r} is not a whole number >= 0")
        # canonical order, so that two descriptions of the same codebooks compare equal
        order = {k: i for i, k in enumerate(STREAM_ORDER)}
        # every stream names its codebooks: the built-in ones the vocabulary's, a named one its tokenizer's
        streams = [s if s.codebook_id is not None else replace(s, codebook_id=self.codebook_id)
                   for s in self.streams]
        for s in streams:
            if s.scale is not None and s.codebook_id != self.codebook_id:
                raise ValueError(f"built-in stream {s.key} is of codebooks {s.codebook_id}, not {self.codebook_id}")
        builtin = sorted((s for s in streams if s.scale is not None),
                         key=lambda s: order[(s.modality, s.scale)])  # type: ignore[index]
        object.__setattr__(self, "streams", tuple(builtin + [s for s in streams if s.scale is None]))

    @property
    def is_v1(self) -> bool:
        """True when layout 1 describes it (no named stream, no base)."""
        return self.base == 0 and all(s.scale is not None for s in self.streams)


@dataclass(frozen=True)
class StreamIds:
    """Where one stream's ids are: code id = ``code_offsets[level] + code``; position id =
    ``position_offset + cell``; ``marker``: the id that starts one of its packets (every id includes
    the vocabulary's base)."""

    shape: StreamShape
    code_offsets: tuple[int, ...]
    position_offset: int
    marker: int = -1


@dataclass(frozen=True)
class VocabRange:
    """One row of the table: ids ``start .. start + size - 1`` are ``name``."""

    name: str
    start: int
    size: int


def grid_of(frontend: Mapping[str, Mapping[str, Any]], modality: str, scale: str) -> tuple[int, int]:
    """Token grid of a stream from the codebooks' front-end parameters: audio tokens are one cell;
    video has (size / patch) x (size / patch) patches."""
    if modality == "audio":
        return (1, 1)
    video = frontend["video"]
    n = int(video["size"]) // int(video[f"{scale}_patch"])
    return (n, n)
