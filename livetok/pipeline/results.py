"""What the engine hands back: packets and steps on the host clock, one call's output, a source's
clock state, and a batch's pre-encoded video codes (:mod:`livetok.pipeline.engine`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from livetok.sync import Step
from livetok.tokenizers.video import BatchCodes
from livetok.wire import Modality, Scale, TokenPacket


@dataclass(frozen=True, slots=True)
class HostPacket:
    """A token packet as the tokenizer made it (media times, ``Clock.MEDIA``) and the host monotonic
    interval ``[start_ns, end_ns)`` its source's clock maps it to."""

    packet: TokenPacket
    start_ns: int
    end_ns: int

    @property
    def source(self) -> str:
        return self.packet.source

    @property
    def modality(self) -> Modality:
        return self.packet.modality

    @property
    def scale(self) -> Scale | None:
        return self.packet.scale

    @property
    def stream_name(self) -> str:
        return self.packet.stream_name

    @property
    def capture_ns(self) -> int:
        """Host time at which its input was complete: a frame's time, the end of an audio window."""
        return self.start_ns if self.packet.modality == Modality.VIDEO else self.end_ns


HostStep = Step[HostPacket]


@dataclass
class EngineOutput:
    """What one call produced, in host monotonic ns; ``skews``: new median A/V skews (group, ns)."""

    packets: list[HostPacket] = field(default_factory=list)
    steps: list[HostStep] = field(default_factory=list)
    skews: list[tuple[str, int]] = field(default_factory=list)
    gaps: list[tuple[str, str]] = field(default_factory=list)  # (source, modality) whose input was lost
    model_errors: list[tuple[str, str]] = field(default_factory=list)  # (tokenizer, line): a failed model call

    def extend(self, other: EngineOutput) -> None:
        self.packets += other.packets
        self.steps += other.steps
        self.skews += other.skews
        self.gaps += other.gaps
        self.model_errors += other.model_errors


@dataclass(frozen=True)
class ClockState:
    """One source's clock, for metrics: drift (ppm), the start-up error still being slewed (ns), and
    how long its first output was held while the clock settled (ms; None while it still holds)."""

    drift_ppm: float
    slewing_ns: int
    settled_after_ms: float | None = None


@dataclass(frozen=True)
class EncodedFrames:
    """The built-in video kind's codes of some frames of a batch: row r is frame ``indices[r]``."""

    indices: tuple[int, ...]
    codes: BatchCodes

    def select(self, kept: list[int]) -> BatchCodes | None:
        """The rows of frames ``kept``, in that order; None when one of them was not encoded (a reload
        came between :meth:`Engine.encode` and :meth:`Engine.on_video`: encode them there)."""
        if tuple(kept) == self.indices:
            return self.codes
        row = {i: r for r, i in enumerate(self.indices)}
        if any(i not in row for i in kept):
            return None
        rows = [row[i] for i in kept]
        levels = self.codes.fine_levels
        return BatchCodes({k: v[rows] for k, v in self.codes.codes.items()},
                          {k: None if v is None else v[rows] for k, v in self.codes.vectors.items()},
                          None if levels is None else levels[rows], self.codes.greedy)
