"""The joint vocabulary's layout: the special tokens, the streams' order and shapes, the table's rows.

What :class:`~livetok.vocab.vocabulary.Vocabulary` derives its id space from (a :class:`VocabSpec`:
the codebooks' fitted levels, sizes and grids) and the names the table and the meta use.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from livetok.wire import Flag, Modality, Scale, StepFlag

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


def grid_of(frontend: Mapping[str, Mapping[str, Any]], modality: str, scale: str) -> tuple[int, int]:
    """Token grid of a stream from the codebooks' front-end parameters: audio tokens are one cell;
    video has (size / patch) x (size / patch) patches."""
    if modality == "audio":
        return (1, 1)
    video = frontend["video"]
    n = int(video["size"]) // int(video[f"{scale}_patch"])
    return (n, n)
