"""The Prometheus endpoint, scraped from a live daemon and parsed with prometheus-client's own parser."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from broker import Mosquitto, free_port
from prometheus_client.parser import text_string_to_metric_families

from livetok.cli import main
from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking
from livetok.daemon.runner import Daemon
from livetok.runtime.stopping import StopControl
from livetok.sinks import open_sinks
from livetok.tokenizers import Tokenizers

pytestmark = pytest.mark.slow  # every test here runs a live daemon, broker, stream or subprocess


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


def scrape_live(cfg: LivetokConfig, port: int) -> dict[str, object]:
    """Run ``cfg`` in a thread, scrape it until every series the tests read has data, then stop it."""
    stop = StopControl()
    t = threading.Thread(target=run_blocking, args=(cfg, 60.0, stop), daemon=True)  # 60 s: a bound, not a wait
    t.start()
    families: dict[str, object] = {}
    try:
        while t.is_alive():  # until the latency histograms have data
            try:
                families = scrape(port)
            except OSError:
                time.sleep(0.3)
                continue
            if ready(families):
                break
            time.sleep(0.3)
    finally:
        stop.request("scraped")
        t.join(60)
    assert not t.is_alive()
    return families


def test_scrape_a_live_daemon(tmp_path: Path, mosquitto: Mosquitto) -> None:
    port = free_port()
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": "cam", "size": "160x120", "fps": 10}],
        "sinks": [{"kind": "file", "path": str(tmp_path / "m.ltk")}],
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "instance": "prom"},
        "metrics": {"listen": f"127.0.0.1:{port}"},
    })
    families = scrape_live(cfg, port)
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


def test_names_with_dots_keep_their_series_and_labels(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Source, group and sink names may contain dots (the configuration allows them): every series
    is there, under the whole name (keys were split on dots: such series vanished or took wrong labels)."""
    port = free_port()
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": "cam.front", "size": "160x120", "fps": 10}],
        "sinks": [{"kind": "file", "name": "disk.a", "path": str(tmp_path / "m.ltk")}],
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "instance": "prom"},
        "metrics": {"listen": f"127.0.0.1:{port}"},
    })
    f = scrape_live(cfg, port)
    assert ready(f)
    kinds = {("video", "fine"), ("video", "coarse"), ("audio", "fine"), ("audio", "coarse")}
    for name in ("livetok_capture_to_emit_seconds", "livetok_capture_to_publish_seconds"):
        samples = f[name].samples  # type: ignore[attr-defined]
        assert {s.labels["source"] for s in samples} == {"cam.front"}, name
        assert {(s.labels["modality"], s.labels["scale"]) for s in samples} == kinds, name
    write = f["livetok_capture_to_write_seconds"].samples  # type: ignore[attr-defined]
    assert {s.labels["sink"] for s in write} == {"disk.a"}
    step = f["livetok_step_latency_seconds"].samples  # type: ignore[attr-defined]
    assert {s.labels["group"] for s in step} == {"cam.front"}
    drift = f["livetok_clock_drift_ppm"].samples  # type: ignore[attr-defined]
    assert {s.labels["source"] for s in drift} == {"cam.front"}
    sinks = {s.labels["sink"] for s in f["livetok_sink_messages"].samples}  # type: ignore[attr-defined]
    assert sinks == {"disk.a", "mqtt"}


# -- the port: checked before anything opens, moved or refused on SIGHUP (issue 13 item 3, issue 14 §2) --

@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    """A loopback port another process's socket listens on (here: the test's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


def test_a_busy_port_is_one_line_and_78_before_any_source_or_sink_opens(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never.ltk"
    cfg = tmp_path / "c.yaml"
    with busy_port() as port:
        cfg.write_text(f"sources:\n  - {{kind: synthetic, name: cam}}\nsinks:\n  - {{kind: file, path: '{out}'}}\n"
                       f"metrics:\n  listen: 127.0.0.1:{port}\n")
        code = main(["run", "-c", str(cfg), "--duration", "5"])
        err = capsys.readouterr().err.strip()
        assert code == 78, err
        assert len(err.splitlines()) == 1 and f"c.yaml:6: metrics.listen: 127.0.0.1:{port}" in err, err
        assert "in use" in err and "ExceptionGroup" not in err
        assert not out.exists()  # no sink was opened: no 8-byte token file left behind
        assert not [t for t in threading.enumerate() if t.name.startswith("livetok-src-")]
        assert main(["check-config", "-c", str(cfg)]) == 78
        assert "metrics.listen" in capsys.readouterr().err


def test_capture_threads_stop_when_the_run_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever makes the run fail once capture started (here: an error injected into its wait), the
    capture threads are stopped before the error leaves the daemon."""
    async def boom(self: Daemon, duration_s: float | None) -> None:
        await asyncio.sleep(0.5)
        raise RuntimeError("injected")

    monkeypatch.setattr(Daemon, "_wait_stop", boom)
    cfg = LivetokConfig.model_validate({"sources": [{"kind": "synthetic", "name": "cam", "size": "160x120"}],
                                        "sinks": [{"kind": "file", "path": str(tmp_path / "f.ltk")}]})
    with pytest.raises(BaseException) as info:
        run_blocking(cfg, 5.0)
    assert "injected" in repr(info.value)
    alive = [t.name for t in threading.enumerate() if t.name.startswith("livetok-src-")]
    assert alive == []


def test_sighup_moves_the_endpoint_or_refuses_in_one_line(toks: Tokenizers, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    first, second = free_port(), free_port()
    out = tmp_path / "m.ltk"

    def cfg(listen: str | None) -> LivetokConfig:
        return LivetokConfig.model_validate({
            "sources": [{"kind": "synthetic", "name": "cam", "size": "160x120", "fps": 10}],
            "sinks": [{"kind": "file", "path": str(out)}], "metrics": {"listen": listen}})

    steps: list[str] = []

    async def go() -> None:
        stop = StopControl()
        stop.bind()
        current = cfg(f"127.0.0.1:{first}")
        sinks = open_sinks(current, "r")
        for s in sinks:
            await s.__aenter__()

        async def reload_to(c: LivetokConfig) -> None:
            nonlocal current
            current = c
            n = d.stop.reloads
            stop._hup(signal.SIGHUP, None)
            await until(lambda: d.reloads_done > n)

        async with Daemon(current, toks, sinks, stop, "r", reconfigure=lambda: current) as d:
            task = asyncio.create_task(d.run(None))
            await until(lambda: b"livetok_captured" in fetch(first))
            await reload_to(cfg(f"127.0.0.1:{second}"))  # applied: the new address serves, the old is let go
            await until(lambda: b"livetok_captured" in fetch(second))
            steps.append("moved" if fetch(first) is None else "old still open")
            with busy_port() as port:  # refused: the endpoint stays where it is
                await reload_to(cfg(f"127.0.0.1:{port}"))
                steps.append("kept" if fetch(second) is not None else "lost")
            await reload_to(cfg(None))  # removed: off
            steps.append("off" if fetch(second) is None else "still on")
            stop.request("test")
            await task
        for s in sinks:
            await s.__aexit__(None, None, None)

    with caplog.at_level(logging.INFO, logger="livetok"):
        asyncio.run(go())
    assert steps == ["moved", "kept", "off"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reload:")]
    assert any(f"metrics: on 127.0.0.1:{second}" in ln for ln in lines), lines
    refused = [ln for ln in lines if "metrics.listen" in ln and "keeping the running configuration" in ln]
    assert len(refused) == 1 and "in use" in refused[0], lines
    assert any("metrics: off" in ln for ln in lines), lines


def fetch(port: int) -> bytes | None:
    """/metrics on ``port``, or None when nothing listens there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return bytes(r.read())
    except OSError:
        return None


async def until(condition: Any, limit_s: float = 60.0) -> None:
    """Wait (bounded) until ``condition()`` holds, checking off the loop (a scrape blocks)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not await asyncio.to_thread(condition):
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.1)
