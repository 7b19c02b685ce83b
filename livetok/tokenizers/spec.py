"""What a tokenizer emits, stream by stream: the one description everything downstream derives from.

A tokenizer (any kind: the built-in codecs, spectrogram patches, a user's TorchScript or ONNX model)
states one :class:`StreamSpec` per token stream it emits. A step of a stream is one packet's worth
of tokens: ``rows x cols`` grid cells, each with ``levels`` codes below ``codebook_size`` (and,
optionally, a vector of ``vector_size`` values). Audio steps follow each other at a fixed rate,
``step_ns`` nanoseconds (an exact rational: 160 samples at 22 050 Hz is not a whole number of ns);
video steps are one per frame (``step_ns`` None).

This module is pure Python (no NumPy, no torch): ``check-config`` and clients may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

MAX_CODEBOOK = 65536  # codes travel as u16 (docs/wire-format.md)
NS = 1_000_000_000


@dataclass(frozen=True)
class StreamSpec:
    """One token stream of a tokenizer.

    * ``modality``: "audio" or "video";
    * ``name``: the stream's name within its tokenizer ("fine", "units", "patches", ...);
    * ``step_ns``: nanoseconds per step as an exact fraction (audio), or None: one step per frame (video);
    * ``grid``: ``(rows, cols)`` cells per step; position ``p = row * cols + col``;
    * ``levels``: codes per cell (RVQ depth; 1 for k-means units);
    * ``codebook_size``: every code is below it (2 .. 65536);
    * ``vector_size``: values per cell of the optional continuous vectors, or None when none are sent.
    """

    modality: Literal["audio", "video"]
    name: str
    step_ns: Fraction | None
    grid: tuple[int, int]
    levels: int
    codebook_size: int
    vector_size: int | None = None

    def __post_init__(self) -> None:
        if self.modality not in ("audio", "video"):
            raise ValueError(f"stream {self.name!r}: modality {self.modality!r} is not 'audio' or 'video'")
        if not self.name:
            raise ValueError("a stream needs a name")
        if self.step_ns is None:
            if self.modality == "audio":
                raise ValueError(f"stream {self.name!r}: an audio stream needs a step (step_ns)")
        elif not isinstance(self.step_ns, Fraction) or self.step_ns <= 0:
            raise ValueError(f"stream {self.name!r}: step_ns {self.step_ns} is not a Fraction above 0")
        rows, cols = self.grid
        if rows < 1 or cols < 1:
            raise ValueError(f"stream {self.name!r}: grid {self.grid} needs at least one row and one column")
        if self.levels < 1:
            raise ValueError(f"stream {self.name!r}: levels {self.levels} is below 1")
        if not 2 <= self.codebook_size <= MAX_CODEBOOK:
            raise ValueError(f"stream {self.name!r}: codebook_size {self.codebook_size} is not in 2..{MAX_CODEBOOK}")
        if self.vector_size is not None and self.vector_size < 1:
            raise ValueError(f"stream {self.name!r}: vector_size {self.vector_size} is below 1")

    @property
    def cells(self) -> int:
        """Grid cells per step (``rows * cols``)."""
        return self.grid[0] * self.grid[1]

    def step_bounds_ns(self, step: int) -> tuple[int, int]:
        """``(start, end)`` of audio step ``step`` in integer ns from the stream's t0: ``floor(k * step_ns)``
        and ``floor((k + 1) * step_ns)``, so consecutive steps tile time without gaps or overlaps."""
        if self.step_ns is None:
            raise ValueError(f"stream {self.name!r}: video steps are one per frame; their times are the frames'")
        s = self.step_ns
        return (step * s.numerator // s.denominator, (step + 1) * s.numerator // s.denominator)


def step_ns_of(samples: int, sample_rate: int) -> Fraction:
    """The duration of ``samples`` samples at ``sample_rate`` Hz in ns, exactly."""
    return Fraction(samples * NS, sample_rate)
