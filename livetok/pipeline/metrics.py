"""In-process metrics: latencies, skew, drift, drops and queue depths, kept for publishing.

Latencies are kept in bounded rings (the most recent ``window`` values per series), so memory is
flat however long the daemon runs; percentiles are computed on demand.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

WINDOW = 4096


# Histogram bucket bounds for latencies (s), as Prometheus histograms export them: from 5 ms (a
# frame's tokenization) to 5 s (a step held for a late modality), denser where the targets are.
BUCKETS_S = (0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
_BOUNDS_NS = tuple(round(b * 1e9) for b in BUCKETS_S)


@dataclass
class Series:
    """The most recent values of one measurement (ns), with a total count, and a histogram of every
    value since the start (``buckets[i]``: values <= ``BUCKETS_S[i]`` and > the one before; the last
    one above them all).

    The recent values live in a ring allocated whole at creation (``WINDOW`` int64s, 32 KiB): a
    series costs the same memory on its first value and its millionth, so a daemon's RSS does not
    creep while its rings fill (a deque of Python ints grew ~144 KiB per series over minutes)."""

    ring: np.ndarray = field(default_factory=lambda: np.zeros(WINDOW, dtype=np.int64))
    count: int = 0
    total_ns: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_S) + 1))

    def add(self, v: int) -> None:
        self.ring[self.count % WINDOW] = v
        self.count += 1
        self.total_ns += v
        self.buckets[bisect.bisect_left(_BOUNDS_NS, v)] += 1

    @property
    def last(self) -> int | None:
        """The most recent value, or None before the first."""
        return int(self.ring[(self.count - 1) % WINDOW]) if self.count else None

    def recent(self) -> np.ndarray:
        """The most recent values, at most ``WINDOW`` (order not kept: for percentiles)."""
        return self.ring[:min(self.count, WINDOW)]

    def percentiles_ms(self) -> dict[str, float]:
        if not self.count:
            return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "n": 0}
        a = self.recent() / 1e6
        p50, p95, p99 = np.percentile(a, [50, 95, 99])
        return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3), "n": self.count}


Key = str | tuple[str, ...]  # a literal ("reloads"), or parts of which some are names ("skew", group)


def dotted(key: Key) -> str:
    """How a key reads in the snapshot (``latency.emit.cam.video.fine``): its parts joined by dots."""
    return key if isinstance(key, str) else ".".join(key)


@dataclass
class Metrics:
    """Everything the daemon measures. A key that holds a source, group or sink name is a tuple of
    its parts (``("latency", "emit", source, modality, scale)``), so a reader takes it apart by
    position, never by splitting on dots (names may contain dots); the snapshot joins the parts
    with dots (``latency.emit.cam.video.fine``)."""

    series: dict[Key, Series] = field(default_factory=dict)
    gauges: dict[Key, float] = field(default_factory=dict)
    counters: dict[Key, int] = field(default_factory=dict)

    def observe(self, key: Key, ns: int) -> None:
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series()
        s.add(ns)

    def set(self, key: Key, value: float) -> None:
        self.gauges[key] = value

    def count(self, key: Key, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready view: percentiles (ms) per series, gauges and counters, by dotted key."""
        return {
            "series_ms": dict(sorted((dotted(k), s.percentiles_ms()) for k, s in self.series.items())),
            "gauges": dict(sorted((dotted(k), v) for k, v in self.gauges.items())),
            "counters": dict(sorted((dotted(k), v) for k, v in self.counters.items())),
        }
