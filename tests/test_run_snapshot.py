"""One run snapshot, three renderings (issue 14): the stats document, the STATUS line and the
Prometheus exposition show the same numbers, because they are made from the same snapshot; and
what the runner puts in a snapshot is what the run did."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from livetok.config import LivetokConfig
from livetok.daemon.notify import Notifier
from livetok.daemon.prometheus import View, render
from livetok.daemon.statsdoc import StatsDocument
from livetok.daemon.supervise import Supervisor
from livetok.pipeline.metrics import Series
from livetok.pipeline.runner import Pipeline
from livetok.pipeline.snapshot import RunSnapshot, SeriesSnap, SinkSnap, SourceSnap
from livetok.runtime.stopping import StopControl
from livetok.sinks import open_sinks
from livetok.streams.types import SourceState
from livetok.tokenizers import Tokenizers

MS = 1_000_000


def _series(*values_ms: float) -> SeriesSnap:
    s = Series()
    for v in values_ms:
        s.add(round(v * MS))
    return SeriesSnap.of(s)


def snapshot(taken_s: float, tokenized: int, emitted: int) -> RunSnapshot:
    cam = SourceSnap("cam.front", SourceState.RUNNING, True, True, 300, 500, 1, 2, 3, "a stall", False,
                     {"video": 1, "audio": 0}, {"video": 4, "audio": 0}, {"file0": 0, "mqtt": 2}, 6.0, 30.0, 1200)
    mic = SourceSnap("mic", SourceState.WAITING, False, True, 0, 0, 0, 0, 0, "", False, {"audio": 0}, {"audio": 0},
                     {"file0": 0, "mqtt": 0})
    sinks = (SinkSnap("file0", "write", "ok", "", 900, 0, 0, 3, {}, None),
             SinkSnap("mqtt", "publish", "ok", "", 880, 2, 1, 5,
                      {"connected": 1, "reconnects": 1, "connect_failures": 2, "in_flight": 4, "resend_depth": 1,
                       "refused": 1}, {"connected": True, "buffered": 6}))
    return RunSnapshot(
        "0123456789abcdef", round(taken_s * 1e9), 1_700_000_000_000_000_000 + round(taken_s * 1e9), taken_s,
        (cam, mic), sinks, {"cam.front": {"steps": 12, "late": 1}},
        {("cam.front", "video"): {"captured": 1504, "skipped_by_rate": 1200, "tokenized": 300, "dropped_queue": 4,
                                  "dropped_shutdown": 0, "failed": 0, "balanced": 1, "queued": 0, "in_flight": 0,
                                  "scales": {"fine": {"tokenized": 210, "shed": 90, "degraded": 30},
                                             "coarse": {"tokenized": 300, "shed": 0, "degraded": 12}}}},
        Counter({("cam.front", "video"): tokenized, ("cam.front", "audio"): 2 * tokenized}), emitted,
        {("latency", "emit", "cam.front", "video", "fine"): _series(10, 20, 30),
         ("latency", "publish", "mqtt", "cam.front", "video", "fine"): _series(12, 22, 95),
         ("skew", "cam.front"): _series(-37, -37, -37),
         ("latency", "step", "cam.front"): _series(100)},
        {("drift_ppm", "cam.front"): 12.5, ("clock_slewing_ms", "cam.front"): 0.25}, {})


def test_the_three_renderings_agree() -> None:
    stats = StatsDocument()
    stats.render(snapshot(10.0, 100, 1000), 5.0)
    snap = snapshot(15.0, 250, 2000)
    doc = stats.render(snap, 5.0)
    status = Supervisor(Notifier({}), lambda **_: snap, lambda: 0.0)
    status.status_line(snapshot(10.0, 100, 1000))
    line = status.status_line(snap)
    samples = [s for f in text_string_to_metric_families(render(View.of(snap)).decode()) for s in f.samples]

    def value(name: str, **labels: str) -> float:
        return next(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    cam = doc["sources"]["cam.front"]
    # sources: up (running) and waiting, faults
    assert line.startswith("sources 1/2 up, 1 waiting for a sender; 200 msg/s")
    assert cam["state"] == "running" and doc["sources"]["mic"]["state"] == "waiting"
    assert value("livetok_source_up", source="cam.front") == 1 and value("livetok_source_up", source="mic") == 0
    assert (cam["reconnects"], cam["stalls"], cam["errors"]) == (1, 2, 3)
    assert value("livetok_source_reconnects_total", source="cam.front") == 1
    assert value("livetok_source_stalls_total", source="cam.front") == 2
    # rates over the interval, from the same counters
    assert cam["fps"] == 30.0 and cam["audio_blocks_per_s"] == 60.0
    # latency: the worst publish p99, the same series in the document and the histogram
    p99 = cam["latency_ms"]["video/fine"]["publish"]["p99"]
    assert f"worst p99 {p99:.0f} ms (cam.front/video/fine)" in line
    assert value("livetok_capture_to_publish_seconds_count", source="cam.front") == 3
    # skew: -37 ms everywhere
    assert doc["groups"]["cam.front"]["skew_ms"] == -37.0 and "skew -37 ms" in line
    assert value("livetok_av_skew_seconds", group="cam.front") == -0.037
    # sinks and the bus
    assert doc["sinks"]["mqtt"] == {"state": "ok", "written": 880, "dropped": 2, "failed": 1, "queue_depth": 5,
                                    "last_error": ""}
    assert value("livetok_sink_messages_total", sink="mqtt", outcome="written") == 880
    assert value("livetok_bus_buffer_messages") == 5 + 1 and value("livetok_bus_connected") == 1
    assert line.endswith("bus connected") and doc["bus"] == {"connected": True, "buffered": 6}
    # drift, drops
    assert cam["drift_ppm"] == 12.5 and value("livetok_clock_drift_ppm", source="cam.front") == 12.5
    assert cam["dropped"] == {"capture": {"video": 4, "audio": 0}, "sinks": {"file0": 0, "mqtt": 2}}
    assert value("livetok_dropped_total", source="cam.front", modality="video", stage="capture") == 4
    # the token rate next to the camera's, and the books with what the rate skipped (not a drop)
    assert (cam["token_fps"], cam["nominal_fps"]) == (6.0, 30.0)
    assert (doc["sources"]["mic"]["token_fps"], doc["sources"]["mic"]["nominal_fps"]) == (None, None)
    assert value("livetok_source_token_fps", source="cam.front") == 6.0
    assert value("livetok_source_nominal_fps", source="cam.front") == 30.0
    books = cam["books"]["video/coarse"]
    assert books == {"captured": 1504, "skipped_by_rate": 1200, "tokenized": 300, "shed": 0, "dropped": 4,
                     "queued": 0, "degraded": 12}
    assert value("livetok_captured_total", source="cam.front", modality="video") == 1504
    assert value("livetok_skipped_by_rate_total", source="cam.front", modality="video") == 1200
    assert value("livetok_tokenized_total", source="cam.front", modality="video") == 300
    assert doc["time_unix_ns"] == snap.time_unix_ns and doc["uptime_s"] == 15.0


def test_a_snapshot_is_what_the_run_did(toks: Tokenizers, tmp_path: Path) -> None:
    """A real pipeline: the snapshot's books are the run's (each capture tokenized counted, each
    message offered to the sink counted as written or queued), and it is a copy: later messages do
    not change it."""
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": "cam", "size": "160x120", "fps": 10}],
        "sinks": [{"kind": "file", "path": str(tmp_path / "s.ltk")}]})

    async def go() -> tuple[RunSnapshot, RunSnapshot, int]:
        stop = StopControl()
        stop.bind()
        sinks = open_sinks(cfg, "r")
        for s in sinks:
            await s.__aenter__()
        async with Pipeline(cfg, toks, sinks, stop, "r") as p, asyncio.TaskGroup() as tg:
            producers = p.start_tasks(tg)
            loop = asyncio.get_running_loop()
            end = loop.time() + 60
            while sum(p.books.emitted.values()) < 40 and loop.time() < end:
                await asyncio.sleep(0.05)
            await p.refresh()
            first = p.snapshot()
            emitted = sum(p.books.emitted.values())
            while sum(p.books.emitted.values()) < emitted + 20 and loop.time() < end:
                await asyncio.sleep(0.05)
            second = p.snapshot()
            await p.shutdown(producers)
        for s in sinks:
            await s.__aexit__(None, None, None)
        return first, second, emitted

    first, second, emitted = asyncio.run(go())
    assert first.emitted == emitted >= 40 and second.emitted >= emitted + 20
    assert first.tokenized[("cam", "video")] > 0 and first.captures[("cam", "video")]["tokenized"] > 0
    (sink,) = first.sinks
    assert sink.name == "file0" and sink.written + sink.queue_depth <= first.emitted
    assert first.sources[0].name == "cam" and first.sources[0].frames > 0
    assert ("latency", "emit", "cam", "video", "fine") in first.series
    assert first.series[("latency", "emit", "cam", "video", "fine")].count < \
        second.series[("latency", "emit", "cam", "video", "fine")].count  # a copy, not the live ring


def test_the_books_per_scale_agree_in_the_stats_document_and_prometheus() -> None:
    """An overloaded camera with a token rate: captured = skipped_by_rate + tokenized + shed + dropped +
    queued per scale, in both renderings."""
    snap = snapshot(15.0, 250, 2000)
    books = StatsDocument().render(snap, 5.0)["sources"]["cam.front"]["books"]
    row = {"captured": 1504, "skipped_by_rate": 1200, "dropped": 4, "queued": 0}
    assert books == {"video/fine": {**row, "tokenized": 210, "shed": 90, "degraded": 30},
                     "video/coarse": {**row, "tokenized": 300, "shed": 0, "degraded": 12}}
    samples = [s for f in text_string_to_metric_families(render(View.of(snap)).decode()) for s in f.samples]

    def value(name: str, **labels: str) -> float:
        return next(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    cam = {"source": "cam.front", "modality": "video"}
    dropped = sum(value("livetok_dropped_total", **cam, stage=st) for st in ("capture", "shutdown", "error"))
    for scale in ("fine", "coarse"):
        made = value("livetok_scale_tokenized_total", **cam, scale=scale)
        shed = value("livetok_shed_total", **cam, scale=scale)
        skipped = value("livetok_skipped_by_rate_total", **cam)
        pending = value("livetok_pending", **cam)
        assert value("livetok_captured_total", **cam) == skipped + made + shed + dropped + pending
    assert value("livetok_shed_total", **cam, scale="fine") == 90
    assert value("livetok_degraded_total", **cam, scale="fine") == 30
    assert value("livetok_degraded_total", **cam, scale="coarse") == 12  # made greedily by catch-up batches


def test_named_streams_have_latency_and_counts_in_the_stats_document_and_prometheus() -> None:
    """A plug-in tokenizer's stream (audio/units) beside the built-in ones: its latency and packet
    counts under its own key in the stats document, its own label in Prometheus."""
    base = snapshot(15.0, 250, 2000)
    series = {**base.series, ("latency", "emit", "cam.front", "audio", "units"): _series(40, 50, 60),
              ("latency", "publish", "mqtt", "cam.front", "audio", "units"): _series(41, 51, 61, 71),
              ("latency", "emit", "cam.front", "audio", "fine"): _series(5)}
    counters = {("packets", "cam.front", "video", "fine"): 300, ("packets", "cam.front", "audio", "fine"): 750,
                ("packets", "cam.front", "audio", "units"): 1500, ("gap_packets", "cam.front", "audio", "units"): 2,
                ("model_errors", "units"): 3}
    snap = dataclasses.replace(base, series=series, counters=counters)
    doc = StatsDocument().render(snap, 5.0)
    cam = doc["sources"]["cam.front"]
    assert doc["model_errors"] == {"units": 3}
    assert list(cam["latency_ms"]) == ["video/fine", "audio/fine", "audio/units"]
    assert cam["latency_ms"]["audio/units"]["emit"]["p50"] == 50.0
    assert cam["latency_ms"]["audio/units"]["publish"]["p99"] > 70.0
    assert cam["streams"] == {"video/fine": {"packets": 300, "gaps": 0}, "audio/fine": {"packets": 750, "gaps": 0},
                              "audio/units": {"packets": 1500, "gaps": 2}}
    assert StatsDocument().render(snap, 5.0)["sources"]["mic"]["streams"] == {}
    samples = [s for f in text_string_to_metric_families(render(View.of(snap)).decode()) for s in f.samples]

    def value(name: str, **labels: str) -> float:
        return next(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    units = {"source": "cam.front", "modality": "audio"}
    assert value("livetok_capture_to_emit_seconds_count", **units, scale="units") == 3
    assert value("livetok_capture_to_publish_seconds_count", **units, scale="units") == 4
    assert value("livetok_stream_packets_total", **units, stream="units") == 1500
    assert value("livetok_stream_gap_packets_total", **units, stream="units") == 2
    assert value("livetok_stream_packets_total", source="cam.front", modality="video", stream="fine") == 300
    assert value("livetok_model_errors_total", tokenizer="units") == 3
