"""Prometheus scrapes against capture-to-emit latency: does scraping slow the tokens down?

    .venv/bin/python bench/bench_scrape.py [--seconds 20] [--rounds 2] [--rate 10] [--scrapers 16]

The daemon runs the synthetic source at 640x480@30 with 16 kHz audio (bench_live's latency setup)
with the Prometheus endpoint on, for ``--seconds`` per run, under three loads, interleaved over
``--rounds`` rounds so that a busy machine weighs on each alike:

* ``none``:  nobody scrapes;
* ``rate``:  ``--scrapers`` scrapers in parallel, ``--rate`` scrapes per second in all (a real
  Prometheus scrapes every 15 s; 10/s is a hundred Prometheus servers);
* ``storm``: ``--scrapers`` scrapers back to back, as fast as the endpoint answers.

The scrapers are another process (as a real Prometheus is): threads with urllib, each request a
new connection. Printed: per load, the scrapes done and the p50/p95/p99 (ms) of the daemon's own
``latency.video.fine`` and ``latency.audio.fine`` (emit time − capture time), the median over the
rounds; and the daemon process's CPU time per scrape (its CPU during the run minus that of the run
nobody scraped, over the scrapes): on a machine others keep busy the percentiles wander, this
figure much less. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_header, table

from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking

SCRAPER = r"""
import sys, threading, time, urllib.request
url, n, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
done, failed = [0], [0]
lock = threading.Lock()
start = time.monotonic()
while time.monotonic() - start < 60:  # until the endpoint answers (the daemon is loading)
    try:
        urllib.request.urlopen(url, timeout=2).read()
        break
    except OSError:
        time.sleep(0.2)
end = time.monotonic() + seconds
def one(i):
    period = n / rate if rate > 0 else 0.0
    nxt = time.monotonic() + period * i / n
    while time.monotonic() < end:
        if period:
            time.sleep(max(0.0, nxt - time.monotonic()))
            nxt += period
        try:
            urllib.request.urlopen(url, timeout=5).read()
            with lock:
                done[0] += 1
        except OSError:
            with lock:
                failed[0] += 1
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
[t.start() for t in ts]
[t.join() for t in ts]
print(done[0], failed[0])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_run(seconds: float, load: str, scrapers: int, rate: float, tmp: Path) -> dict[str, object]:
    port = free_port()
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": "cam", "size": "640x480", "fps": 30, "rate": 16000}],
        "sinks": [{"kind": "file", "path": str(tmp / f"{load}.ltk")}],
        "metrics": {"listen": f"127.0.0.1:{port}"},
    })
    proc = None
    if load != "none":
        # the scrapers start now, wait for the endpoint, then scrape for the run's last seconds - 2
        proc = subprocess.Popen([sys.executable, "-c", SCRAPER, f"http://127.0.0.1:{port}/metrics", str(scrapers),
                                 str(rate if load == "rate" else 0), str(max(1.0, seconds - 2))],
                                stdout=subprocess.PIPE, text=True)
    before = resource.getrusage(resource.RUSAGE_SELF)
    report = run_blocking(cfg, seconds)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    done = failed = 0
    if proc is not None:
        out, _ = proc.communicate(timeout=120)
        done, failed = (int(x) for x in out.split())
    series = report.metrics["series_ms"]
    assert isinstance(series, dict)
    return {"done": done, "failed": failed, "video": series["latency.video.fine"],
            "audio": series["latency.audio.fine"], "cpu_s": cpu_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rate", type=float, default=10.0, help="scrapes per second in all, for the 'rate' load")
    ap.add_argument("--scrapers", type=int, default=16)
    args = ap.parse_args()
    print_header("bench_scrape: Prometheus scrapes vs capture-to-emit latency")
    loads = ("none", "rate", "storm")
    runs: dict[str, list[dict[str, object]]] = {k: [] for k in loads}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.rounds):
            for load in loads:
                runs[load].append(one_run(args.seconds, load, args.scrapers, args.rate, Path(d)))
    rows = []
    idle_cpu = statistics.median(float(r["cpu_s"]) for r in runs["none"])  # type: ignore[arg-type]
    for load in loads:
        rs = runs[load]
        done = statistics.median(int(r["done"]) for r in rs)  # type: ignore[call-overload]
        cpu = statistics.median(float(r["cpu_s"]) for r in rs)  # type: ignore[arg-type]
        per = f"{1000 * (cpu - idle_cpu) / done:.2f}" if done else ""
        row: list[object] = [load, f"{done / max(1.0, args.seconds - 2):.1f}"]
        for series in ("video", "audio"):
            for p in ("p50", "p95", "p99"):
                row.append(round(statistics.median(r[series][p] for r in rs), 1))  # type: ignore[index]
        rows.append([*row, round(cpu, 1), per])
    print(f"\n640x480@30 + 16 kHz, {args.seconds:g} s per run, {args.rounds} rounds interleaved, "
          f"{args.scrapers} scrapers; medians over the rounds, latency in ms")
    print(table(["load", "scrapes/s", "video p50", "p95", "p99", "audio p50", "p95", "p99", "daemon CPU s",
                 "CPU ms/scrape"], rows))


if __name__ == "__main__":
    main()
