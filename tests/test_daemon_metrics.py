"""The daemon's in-process series: a fixed ring of recent values, a count and a histogram of all."""

from __future__ import annotations

import numpy as np

from livetok.pipeline.metrics import BUCKETS_S, WINDOW, Metrics, Series


def test_a_series_keeps_the_most_recent_window_and_counts_everything() -> None:
    s = Series()
    assert s.last is None and s.percentiles_ms()["n"] == 0
    values = list(range(1, 3 * WINDOW + 7))  # wraps the ring twice and a bit
    for v in values:
        s.add(v * 1000)
    assert s.count == len(values) and s.total_ns == sum(values) * 1000
    assert s.last == values[-1] * 1000
    assert sorted(s.recent().tolist()) == [v * 1000 for v in values[-WINDOW:]]
    want = np.percentile(np.array(values[-WINDOW:]) * 1000 / 1e6, [50, 95, 99])
    got = s.percentiles_ms()
    assert [got["p50"], got["p95"], got["p99"]] == [round(float(x), 3) for x in want]
    assert sum(s.buckets) == len(values) and len(s.buckets) == len(BUCKETS_S) + 1


def test_a_series_memory_is_allocated_whole_at_creation() -> None:
    s = Series()
    before = s.ring.nbytes
    for v in range(2 * WINDOW):
        s.add(v)
    assert s.ring.nbytes == before == WINDOW * 8


def test_metrics_snapshot_is_json_ready() -> None:
    m = Metrics()
    m.observe("latency.video.fine", 12_000_000)
    m.observe("latency.video.fine", 8_000_000)
    m.count("dropped", 2)
    m.set("drift", 1.5)
    snap = m.snapshot()
    assert snap["series_ms"] == {"latency.video.fine": {"p50": 10.0, "p95": 11.8, "p99": 11.96, "n": 2}}
    assert snap["counters"] == {"dropped": 2} and snap["gauges"] == {"drift": 1.5}
