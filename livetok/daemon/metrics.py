"""In-process metrics: latencies, skew, drift, drops and queue depths, kept for publishing.

Latencies are kept in bounded rings (the most recent ``window`` values per series), so memory is
flat however long the daemon runs; percentiles are computed on demand.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

WINDOW = 4096


@dataclass
class Series:
    """The most recent values of one measurement (ns), with a total count."""

    values: deque[int] = field(default_factory=lambda: deque(maxlen=WINDOW))
    count: int = 0

    def add(self, v: int) -> None:
        self.values.append(v)
        self.count += 1

    def percentiles_ms(self) -> dict[str, float]:
        if not self.values:
            return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "n": 0}
        a = np.fromiter(self.values, dtype=np.int64) / 1e6
        p50, p95, p99 = np.percentile(a, [50, 95, 99])
        return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3), "n": self.count}


@dataclass
class Metrics:
    """Everything the daemon measures; series keys look like ``latency.video.fine`` or ``skew.desk``."""

    series: dict[str, Series] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def observe(self, key: str, ns: int) -> None:
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series()
        s.add(ns)

    def set(self, key: str, value: float) -> None:
        self.gauges[key] = value

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready view: percentiles (ms) per series, gauges and counters."""
        return {
            "series_ms": {k: s.percentiles_ms() for k, s in sorted(self.series.items())},
            "gauges": dict(sorted(self.gauges.items())),
            "counters": dict(sorted(self.counters.items())),
        }
