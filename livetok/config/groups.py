"""The ``groups:`` and ``alignment:`` sections: which sources are aligned together, into what steps."""

from __future__ import annotations

from pydantic import Field, model_validator

from livetok.config.base import NAME, Strict


class Group(Strict):
    """Sources aligned together into steps: at most one video and one audio."""

    name: str = Field(pattern=NAME, description="group name (aligned-step packets carry it)")
    video: str | None = Field(None, description="name of the source whose video this group uses")
    audio: str | None = Field(
        None, description="name of the source whose audio this group uses (a mic, or a stream's track)")
    markers: bool = Field(
        False, description="measure A/V skew from sync markers (white flash + 1 kHz beep); always on for synthetic")

    @model_validator(mode="after")
    def _one(self) -> Group:
        if self.video is None and self.audio is None:
            raise ValueError("a group needs a video or an audio source")
        return self


class Alignment(Strict):
    step_ms: float = Field(80.0, gt=0, le=10_000, description="aligned step length (ms); 80 = the coarse audio step")
    lateness_ms: float = Field(
        500.0, ge=0, le=60_000, description="emit a step this long after its end even if a modality is missing (ms)")
