"""The three phases every plug-in tokenizer kind follows, so that one model call per tick serves every
source using a tokenizer and the model call itself can run in a worker thread:

1. ``stream.take(input) -> list[Job]`` — per source, cheap and stateful: buffering, windowing, the
   front end. A job is one row of the kind's batched call plus where its result belongs.
2. ``kind.run(jobs) -> list[output]`` — the kind's pure batched call over jobs from any number of
   sources, in any thread: one model call per batch (more only beyond the model's ``batch`` rows).
   It raises :class:`~livetok.errors.ModelRunError` for the whole batch when the model fails.
3. ``job.stream.emit(job, output) -> list[StepCodes]`` — per source, stateful: quantizing, step
   numbering, recurrent state. Jobs of one stream are emitted in the order they were taken. After a
   failed ``run``, ``job.stream.abandon(job)`` instead: its steps are lost and the next step emitted is
   flagged ``gap``.

``stream.flush(tail=None) -> list[Job]`` at the end of a stream takes ``tail`` (its last input) and pads
with silence so that every step holding received input is computed (steps made only of padding are
not emitted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from livetok.tokenizers.spec import StreamSpec


@dataclass(frozen=True)
class StepCodes:
    """One step of one stream: ``codes [cells, levels] uint16`` in grid order (row-major), and
    ``vectors [cells, vector_size] float32`` when the stream sends vectors. ``step``: audio, the step
    index from the stream's start (its time is ``StreamSpec.step_bounds_ns(step)`` after t0); video,
    the frame's index. ``gap``: input or results were lost just before this step."""

    stream: str
    step: int
    codes: np.ndarray
    vectors: np.ndarray | None = None
    gap: bool = False


class Job(Protocol):
    """One row of a kind's batched call; ``stream`` is the per-source stream that took it."""

    stream: Any


class TokenStream(Protocol):
    def take(self, data: Any) -> list[Any]: ...

    def flush(self, tail: np.ndarray | None = None) -> list[Any]: ...

    def emit(self, job: Any, output: Any) -> list[StepCodes]: ...

    def abandon(self, job: Any) -> None: ...

    def mark_gap(self) -> None: ...


class TokenizerKind(Protocol):
    name: str

    @property
    def specs(self) -> list[StreamSpec]: ...

    def stream(self, source: str) -> Any: ...

    def run(self, jobs: list[Any]) -> list[Any]: ...


def process(kind: TokenizerKind, jobs: list[Any]) -> list[StepCodes]:
    """Run ``jobs`` and emit every result in order: the three phases in one thread (tests, fitting,
    files). On a model failure every job is abandoned and the error raised."""
    try:
        outputs = kind.run(jobs)
    except Exception:
        for job in jobs:
            job.stream.abandon(job)
        raise
    out: list[StepCodes] = []
    for job, result in zip(jobs, outputs, strict=True):
        out += job.stream.emit(job, result)
    return out
