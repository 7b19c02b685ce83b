"""The Prometheus endpoint, scraped from a live daemon and parsed with prometheus-client's own parser."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

from broker import Mosquitto, free_port
from prometheus_client.parser import text_string_to_metric_families

from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking


def scrape(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def ready(families: dict[str, object]) -> bool:
    """Every series the test reads has enough data: each of the four latency series, acks, captures."""
    pub, ack, cap = (families.get(n) for n in ("livetok_capture_to_publish_seconds", "livetok_bus_publish",
                                               "livetok_captured"))
    if pub is None or ack is None or cap is None:
        return False
    counts = [s.value for s in pub.samples if s.name.endswith("_count")]  # type: ignore[attr-defined]
    acks = [s.value for s in ack.samples if s.labels.get("outcome") == "acknowledged"]  # type: ignore[attr-defined]
    caps = {s.labels.get("modality"): s.value for s in cap.samples}  # type: ignore[attr-defined]
    return (len(counts) >= 4 and min(counts) > 10 and bool(acks) and acks[0] > 10
            and caps.get("video", 0) > 5 and caps.get("audio", 0) > 20)


def test_scrape_a_live_daemon(tmp_path: Path, mosquitto: Mosquitto) -> None:
    port = free_port()
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": "cam", "size": "160x120", "fps": 10}],
        "sinks": [{"kind": "file", "path": str(tmp_path / "m.ltk")}],
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "instance": "prom"},
        "metrics": {"listen": f"127.0.0.1:{port}"},
    })
    t = threading.Thread(target=run_blocking, args=(cfg, 10.0), daemon=True)  # margin for a slow CI
    t.start()
    families: dict[str, object] = {}
    end = time.monotonic() + 60
    while time.monotonic() < end:  # until the latency histograms have data (bounded)
        try:
            families = scrape(port)
        except OSError:
            time.sleep(0.3)
            continue
        if ready(families):
            break
        time.sleep(0.3)
    t.join(60)
    assert not t.is_alive()
    f = families
    hist = f["livetok_capture_to_publish_seconds"]
    assert hist.type == "histogram"  # type: ignore[attr-defined]
    samples = [s for s in hist.samples if s.labels.get("source") == "cam"]  # type: ignore[attr-defined]
    kinds = {(s.labels["modality"], s.labels["scale"]) for s in samples}
    assert kinds == {("video", "fine"), ("video", "coarse"), ("audio", "fine"), ("audio", "coarse")}
    buckets = [s for s in samples if s.name.endswith("_bucket") and s.labels["modality"] == "video"
               and s.labels["scale"] == "fine"]
    counts = [s.value for s in sorted(buckets, key=lambda s: float(s.labels["le"]))]
    assert counts == sorted(counts) and counts[-1] > 10  # cumulative, +Inf last
    for name, kind in (("livetok_capture_to_emit_seconds", "histogram"), ("livetok_step_latency_seconds", "histogram"),
                       ("livetok_av_skew_seconds", "gauge"), ("livetok_clock_drift_ppm", "gauge"),
                       ("livetok_dropped", "counter"), ("livetok_captured", "counter"), ("livetok_gaps", "counter"),
                       ("livetok_source_reconnects", "counter"), ("livetok_bus_buffer_messages", "gauge"),
                       ("livetok_bus_publish", "counter"), ("livetok_bus_reconnects", "counter"),
                       ("livetok_sink_messages", "counter")):
        assert name in f and f[name].type == kind, name  # type: ignore[attr-defined]
    ack = next(s.value for s in f["livetok_bus_publish"].samples  # type: ignore[attr-defined]
               if s.labels.get("outcome") == "acknowledged")
    assert ack > 10
    captured = {s.labels["modality"]: s.value for s in f["livetok_captured"].samples}  # type: ignore[attr-defined]
    assert captured["video"] > 5 and captured["audio"] > 20
