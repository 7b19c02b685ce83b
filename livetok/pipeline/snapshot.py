"""One run snapshot per interval: every number the daemon reports, taken at one moment on the loop.

The runner takes a :class:`RunSnapshot` once per metrics interval (and at READY and after a reload);
the stats document (:mod:`livetok.daemon.statsdoc`), the STATUS line (:mod:`livetok.daemon.supervise`)
and the Prometheus exposition (:mod:`livetok.daemon.prometheus`) are renderings of it, so they cannot
disagree, and none of them reads the runner's internals. A snapshot is frozen: its series are copies
(counts, buckets, percentiles), not the rings the loop keeps filling.

Keys of ``series``, ``gauges`` and ``counters`` are the structured metric keys of
:class:`~livetok.pipeline.metrics.Metrics` (``("latency", "emit", source, modality, scale)``): a
reader takes them apart by position, never by splitting names on dots.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from livetok.pipeline.metrics import Key, Series
from livetok.pipeline.outlets import Outlet
from livetok.pipeline.sources import RunningSource
from livetok.streams.types import SourceState, SourceStats


@dataclass(frozen=True)
class SeriesSnap:
    """One latency or skew series: its histogram since the start, the latest value, and percentiles
    (ms) of its recent values (NaN when it has none)."""

    count: int
    total_ns: int
    buckets: tuple[int, ...]
    last: int | None
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, s: Series) -> SeriesSnap:
        pct = s.percentiles_ms()
        return cls(s.count, s.total_ns, tuple(s.buckets), s.last, pct["p50"], pct["p95"], pct["p99"])

    def percentiles(self) -> dict[str, float | None] | None:
        """``{p50, p95, p99}`` (ms; JSON-ready: no NaN), or None before the first value."""
        if not self.count:
            return None
        return {"p50": _num(self.p50), "p95": _num(self.p95), "p99": _num(self.p99)}


@dataclass(frozen=True)
class SourceSnap:
    """One source: its capture thread's state and counters, its hand-over queues, its drops."""

    name: str
    state: SourceState
    video: bool  # a group uses its video
    audio: bool  # ... its audio
    frames: int
    blocks: int
    reconnects: int
    stalls: int
    errors: int
    last_error: str
    finished: bool  # its capture thread ended (a file played to its end)
    queue: dict[str, int]  # per modality: depth of the hand-over queue
    dropped: dict[str, int]  # per modality: dropped by the hand-over queue
    sink_drops: dict[str, int]  # per sink: its messages dropped or failed there
    token_fps: float | None = None  # its token rate (frames/s); None: every frame
    nominal_fps: float | None = None  # the camera's nominal rate as its stream says (frames/s); None: unknown
    skipped_by_rate: int = 0  # video frames its token rate skipped

    @classmethod
    def of(cls, src: RunningSource, outlets: list[Outlet], earlier: Sequence[RunningSource] = ()) -> SourceSnap:
        """``earlier``: the run's earlier incarnations of this source (a reload restarted it): its
        counters are the run's, never back to 0 at a restart."""
        st, n = run_totals(src.stats, [e.stats for e in earlier]), src.name
        handoffs = [(k, h) for k, h in (("video", src.video), ("audio", src.audio)) if h is not None]
        sink_drops = {o.name: sum(v for (stream, _), v in o.sink.stats.dropped_by.items() if stream == n)
                      + sum(v for (stream, _), v in o.sink.stats.failed_by.items() if stream == n)
                      for o in outlets}
        return cls(n, st.state, src.video is not None, src.audio is not None, st.frames, st.blocks, st.reconnects,
                   st.stalls, st.errors, st.last_error, src.finished, {k: h.depth for k, h in handoffs},
                   run_dropped(src, earlier), sink_drops, src.token_fps,
                   st.nominal_fps if src.video is not None and st.nominal_fps > 0 else None, st.skipped_by_rate)


def run_dropped(src: RunningSource, earlier: Sequence[RunningSource] = ()) -> dict[str, int]:
    """Per modality ``src`` captures: what its hand-over queues dropped over the run, its ``earlier``
    incarnations' included."""
    return {kind: sum(h.dropped for e in (*earlier, src) if (h := getattr(e, kind)) is not None)
            for kind in ("video", "audio") if getattr(src, kind) is not None}


def run_totals(current: SourceStats, earlier: Sequence[SourceStats]) -> SourceStats:
    """A source's counters over the run: every count (int fields, ``extra``) summed over its earlier
    incarnations (a reload restarted it) and ``current``; its state, last error and rates are the
    current one's. ``current`` itself when there is no earlier one."""
    if not earlier:
        return current
    out = dataclasses.replace(current, extra=dict(current.extra))
    for f in dataclasses.fields(SourceStats):
        value = getattr(current, f.name)
        if isinstance(value, int) and not isinstance(value, bool | SourceState):
            setattr(out, f.name, value + sum(getattr(e, f.name) for e in earlier))
    for e in earlier:
        for k, v in e.extra.items():
            out.extra[k] = out.extra.get(k, 0) + v
    return out


@dataclass(frozen=True)
class SinkSnap:
    """One sink in the fan-out: its counts over every incarnation, its state and queue, its own figures
    (``gauges``) and its part of the stats document (``doc``: the bus's connection)."""

    name: str
    latency_kind: str  # "write" (a file), "publish" (the bus)
    state: str
    last_error: str
    written: int
    dropped: int
    failed: int
    queue_depth: int
    gauges: dict[str, float]
    doc: dict[str, Any] | None

    @property
    def is_bus(self) -> bool:
        return self.latency_kind == "publish"


@dataclass(frozen=True)
class RunSnapshot:
    """The run at one moment (module doc). ``taken_ns``: monotonic; ``captures``: the capture books
    per (source, modality); ``tokenized``: captures tokenized so far, per (source, modality), for
    rates; ``emitted``: messages made so far; ``groups``: each group's aligner counts."""

    run_id: str
    taken_ns: int = 0
    time_unix_ns: int = 0
    uptime_s: float = 0.0
    sources: tuple[SourceSnap, ...] = ()
    sinks: tuple[SinkSnap, ...] = ()
    groups: dict[str, dict[str, int]] = field(default_factory=dict)
    captures: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    tokenized: Counter[tuple[str, str]] = field(default_factory=Counter)
    emitted: int = 0
    series: dict[Key, SeriesSnap] = field(default_factory=dict)
    gauges: dict[Key, float] = field(default_factory=dict)
    counters: dict[Key, int] = field(default_factory=dict)

    @property
    def bus(self) -> SinkSnap | None:
        """The MQTT bus's sink, if the run has one."""
        return next((s for s in self.sinks if s.is_bus), None)

    def skew_ms(self, group: str) -> float | None:
        """A group's A/V skew (running median of the recent markers, ms), or None."""
        s = self.series.get(("skew", group))
        return None if s is None or not s.count else _num(s.p50)


def _num(v: float) -> float | None:
    return None if math.isnan(v) else v
