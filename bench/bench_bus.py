"""The MQTT bus's figures: its own cost, capture-to-receive latency at a subscriber, 720p30 streams
with publishing on, and a soak at ten times the nominal message rate.

    .venv/bin/python bench/bench_bus.py [--seconds 30] [--soak-minutes 10] [--max-streams 12] [--skip ...]

A private Mosquitto on a free loopback port (persistence off) serves every part.

1. **Latency** (``latency``): the synthetic source at 640x480@30 with 16 kHz audio (a camera and a
   microphone in one) through ``livetok run`` with ``--sink mqtt://``; a :class:`livetok.client.Subscriber`
   (QoS 1) in this process takes every message. Printed per stream: capture-to-emit and
   capture-to-publish p50/p95/p99 from the daemon's own metrics (the bus's cost is the difference
   of the p99s), and capture-to-receive at the subscriber: receive time minus the packet's capture
   time (a frame's time; the end of an audio window), both UNIX ns on this machine.
2. **Streams** (``streams``): N copies of a 720p30 H.264 clip played as live, video only, 20 s each,
   published; "sustained" as in bench_live.py (< 1 % dropped, >= 97 % of real time), and every
   message published was acknowledged.
3. **Soak** (``soak``): ``livetok run`` as its own process with one synthetic camera+microphone and
   sixteen microphone-only sources, about ten times the ~135 messages/s of one camera and
   microphone, for ``--soak-minutes``; checked: produced = delivered + dropped, exactly (the
   daemon's books and a subscriber's count), and the daemon's RSS sampled every 10 s (flat: no leak).
   A second, persistent-session consumer is stalled (gone) for two minutes from the first minute:
   the broker queues its backlog, it gets everything when back, and the daemon's RSS and bus queue
   do not notice.

Figures only; nothing is asserted (tests/test_bus_publisher.py asserts the behaviour).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import print_header, table
from bench_live import make_clip
from broker import BrokerOptions, Mosquitto

from livetok.client import Subscriber
from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking
from livetok.wire import Modality

MS = 1_000_000
STALL_S = 120.0  # the soak's stalled consumer is away this long (at most the soak minus 90 s)


class Receiver:
    """A QoS 1 subscriber in a thread: counts messages and capture-to-receive latencies."""

    def __init__(self, url: str, keep_latency: bool = True, client_id: str | None = None,
                 filters: str | None = None) -> None:
        self.url = url
        self.filters = filters
        self.keep_latency = keep_latency
        self.client_id = client_id  # set: a persistent session the broker keeps while it is away
        self.count = 0
        self.av0 = 0
        self.lat: dict[str, list[float]] = {}
        self.stats: Any = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        async with Subscriber(self.url, self.filters, qos=1, buffer_messages=50_000, client_id=self.client_id,
                              persistent=self.client_id is not None) as sub:
            self._ready.set()
            while not self._stop.is_set():
                msg = await sub.get(timeout_s=0.2)
                if msg is None:
                    continue
                if msg.packet is None and msg.step is None:
                    continue
                self.count += 1
                if "av0" in (msg.source, msg.group):
                    self.av0 += 1  # the soak's camera
                p = msg.packet
                if p is not None and self.keep_latency:
                    captured = p.start_ns if p.modality == Modality.VIDEO else p.end_ns
                    key = f"{p.modality.name.lower()}.{p.scale.name.lower()}"
                    self.lat.setdefault(key, []).append((msg.received_unix_ns - captured) / MS)
            self.stats = sub.stats

    def start(self) -> Receiver:
        self.thread.start()
        self._ready.wait(30)
        return self

    def stop(self, quiet_s: float = 2.0) -> Receiver:
        n = -1
        while n != self.count:
            n = self.count
            time.sleep(quiet_s)
        self._stop.set()
        self.thread.join(30)
        return self

    def restart(self) -> Receiver:
        """Connect again (same client id: a persistent session resumes), keeping the counts."""
        self._stop.clear()
        self._ready.clear()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        return self.start()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q / 100 * len(v)))]


def bus_cfg(port: int, sources: list[dict[str, Any]], groups: list[dict[str, Any]] | None = None,
            **mqtt: Any) -> LivetokConfig:
    return LivetokConfig.model_validate({"sources": sources, "groups": groups or [],
                                         "mqtt": {"host": "127.0.0.1", "port": port, "instance": "bench", **mqtt}})


def latency(broker: Mosquitto, seconds: float) -> None:
    rx = Receiver(broker.url).start()
    cfg = bus_cfg(broker.port, [{"kind": "synthetic", "name": "cam", "size": "640x480", "fps": 30, "rate": 16000}])
    report = run_blocking(cfg, seconds)
    rx.stop()
    series = report.metrics["series_ms"]
    rows = []
    for key, target in (("video.fine", "<= 50"), ("video.coarse", ""), ("audio.fine", "<= 40 after window"),
                        ("audio.coarse", "")):
        emit = series[f"latency.emit.cam.{key}"]
        pub = series[f"latency.publish.mqtt.cam.{key}"]
        r = rx.lat.get(key, [])
        rows.append([key, emit["p50"], emit["p99"], pub["p50"], pub["p99"], f"{pub['p99'] - emit['p99']:.3f}",
                     f"{pct(r, 50):.2f}", f"{pct(r, 95):.2f}", f"{pct(r, 99):.2f}", target])
    print(f"\n640x480@30 + 16 kHz, {seconds:g} s, QoS 1 to a local Mosquitto; latency in ms")
    print(table(["stream", "emit p50", "emit p99", "publish p50", "publish p99", "bus cost p99",
                 "receive p50", "receive p95", "receive p99", "target (receive p99)"], rows))
    b = report.sinks["mqtt"]
    print(f"published {b['written']} (dropped {b['dropped']}, failed {b['failed']}); subscriber got {rx.count}; "
          f"gaps {rx.stats.total.gaps}, duplicates {rx.stats.total.duplicates}")


def streams(broker: Mosquitto, max_streams: int, start: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        clip = make_clip(Path(d))
        rows, best = [], 0
        for n in range(start, max_streams + 1):
            cfg = bus_cfg(broker.port, [{"kind": "file", "name": f"cam{i}", "path": str(clip), "loop": True,
                                         "audio": False} for i in range(n)])
            report = run_blocking(cfg, 20.0)
            g = report.metrics["gauges"]
            frames = sum(g[f"source.cam{i}.frames"] for i in range(n))
            dropped = sum(g[f"dropped.cam{i}.video"] for i in range(n))
            real_time = (frames - dropped) / (n * 30 * 20.0)
            b = report.sinks["mqtt"]
            ok = dropped / max(1, frames) < 0.01 and real_time >= 0.97 and not b["dropped"] and not b["failed"]
            rows.append([n, f"{100 * dropped / max(1, frames):.2f} %", f"{100 * real_time:.1f} %", b["written"],
                         b["dropped"] + b["failed"], "yes" if ok else "no"])
            if not ok:
                break
            best = n
        print("\n720p30 H.264 files played as live, 20 s each, video published (QoS 1)")
        print(table(["streams", "frames dropped", "tokenized / real time", "published", "bus lost", "sustained"],
                    rows))
        print(f"sustained with publishing: {best} streams")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def soak(broker: Mosquitto, minutes: float, tmp: Path) -> None:
    """The daemon as its own process (its RSS alone), one camera+microphone and sixteen microphones:
    about ten times the messages of one camera and microphone."""
    import json

    import yaml

    cfg = {
        "sources": [{"kind": "synthetic", "name": "av0", "size": "320x240", "fps": 30, "rate": 16000}]
        + [{"kind": "synthetic", "name": f"mic{i}", "size": "64x48", "fps": 1, "rate": 16000} for i in range(16)],
        "groups": [{"name": "av0", "video": "av0", "audio": "av0"}] + [{"name": f"mic{i}", "audio": f"mic{i}"}
                                                                         for i in range(16)],
        # Expiry above the stalled consumer's absence, so what it missed is still queued for it.
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "instance": "soak", "message_expiry_s": 600},
    }
    path = tmp / "soak.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rx = Receiver(broker.url, keep_latency=False).start()
    # A second consumer on a persistent session, a model server for the camera (its tokens and
    # steps, ~135 messages/s), stalled (gone) for STALL_S from the first minute: the broker queues
    # its backlog; the daemon should not notice. (One for every stream would double the Python
    # subscribers' load in this process, on the daemon's two cores.)
    stalled = Receiver(broker.url, keep_latency=False, client_id="soak-stalled",
                       filters="livetok/soak/av0/#").start()
    stall_from, stall_s = 60.0, min(STALL_S, max(0.0, minutes * 60 - 90))
    stall_state = "before"
    proc = subprocess.Popen([sys.executable, "-m", "livetok.cli", "run", "-c", str(path), "--duration",
                             str(minutes * 60)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    while proc.poll() is None:
        time.sleep(10.0)
        if proc.poll() is None:
            samples.append((time.monotonic() - t0, rss_mb(proc.pid)))
        now = time.monotonic() - t0
        if stall_state == "before" and stall_s > 0 and now >= stall_from:
            stalled.stop(quiet_s=0.0)
            stall_state, stall_at = "away", now
        elif stall_state == "away" and now >= stall_at + stall_s:
            stalled.restart()
            stall_state, back_at = "back", now
    err = proc.stderr.read() if proc.stderr else ""
    took = time.monotonic() - t0
    rx.stop()
    stalled.stop()
    report = json.loads(err[err.index("{"):])
    sink = report["accounting"]["sinks"]["mqtt"]
    offered, written, dropped, failed = sink["offered"], sink["written"], sink["dropped"], sink["failed"]
    print(f"\nsoak: {minutes:g} min, {offered / took:.0f} messages/s offered to the bus (one camera and "
          "microphone is about 135/s)")
    print(f"produced {offered} = written {written} + dropped {dropped} + failed {failed}: "
          f"{'exact' if offered == written + dropped + failed else 'NOT exact'}; books "
          f"{'balanced' if report['accounting']['balanced'] else 'NOT balanced'}")
    total = rx.stats.total
    print(f"subscriber received {rx.count} distinct-or-not messages (written {written}); gaps {total.gaps}, "
          f"missing {total.missing}, duplicates {total.duplicates}, subscriber-side drops {rx.stats.dropped}")
    if samples:
        half = [(t, r) for t, r in samples if t >= samples[-1][0] / 2]
        slope = (half[-1][1] - half[0][1]) / max(1e-9, (half[-1][0] - half[0][0]) / 60)
        print(f"daemon RSS: at {samples[0][0]:.0f} s {samples[0][1]:.1f} MiB, at half-time {half[0][1]:.1f}, "
              f"at {samples[-1][0]:.0f} s {samples[-1][1]:.1f} MiB; second-half slope {slope:+.3f} MiB/min")
        print("  per minute (MiB): " + " ".join(f"{r:.0f}" for t, r in samples if round(t) % 60 < 10))
    if stall_state == "back":
        def rss_in(a: float, b: float) -> str:
            window = [r for t, r in samples if a <= t <= b]
            return f"{min(window):.1f}-{max(window):.1f}" if window else "-"
        st = stalled.stats.total
        gauges = report.get("gauges", {})
        print(f"a persistent consumer stalled {back_at - stall_at:.0f} s (from {stall_at:.0f} s): received "
              f"{stalled.count} (the other subscriber got {rx.av0} of the camera's), "
              f"missing {st.missing}, gaps {st.gaps}, duplicates {st.duplicates}; "
              f"daemon RSS (MiB) before {rss_in(0, stall_at)}, during {rss_in(stall_at, back_at)}, after "
              f"{rss_in(back_at, took)}; bus queue max depth {gauges.get('sink.mqtt.queue_max_depth')} "
              f"(receive maximum {gauges.get('sink.mqtt.receive_maximum')})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--soak-minutes", type=float, default=10.0)
    ap.add_argument("--max-streams", type=int, default=12)
    ap.add_argument("--from-streams", type=int, default=6)
    ap.add_argument("--skip", nargs="*", default=[], choices=["latency", "streams", "soak"])
    args = ap.parse_args()
    print_header("bench_bus: the MQTT bus's cost, latency to a subscriber, streams, soak")
    with tempfile.TemporaryDirectory() as d, Mosquitto(Path(d) / "broker",
                                                       BrokerOptions(max_queued_messages=1_000_000)) as broker:
        if "latency" not in args.skip:
            latency(broker, args.seconds)
        if "streams" not in args.skip:
            streams(broker, args.max_streams, args.from_streams)
        if "soak" not in args.skip:
            soak(broker, args.soak_minutes, Path(d))


if __name__ == "__main__":
    main()
