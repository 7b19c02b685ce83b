"""Capture-to-emit latency before / after: the live source of bench_live.py, each run in a fresh
process, this tree's runs taking turns with another tree's.

    git archive main livetok | tar -x -C /tmp/base
    .venv/bin/python bench/bench_latency_ab.py --rounds 3 --seconds 30 --baseline /tmp/base

The source is bench_live.py's: the synthetic 640x480@30 camera with 16 kHz audio through the
daemon (``run_blocking``) for ``--seconds``; the daemon's own series give p50 / p95 / p99 of emit
time - capture time (video) and emit time - end of the fine audio window (audio). ``--baseline
DIR``: another livetok tree (``PYTHONPATH=DIR`` with this .venv, run from a temporary folder so the
repository does not come first on sys.path). Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import print_header, table

SERIES = ("latency.audio.fine", "latency.video.fine")


def latency_run(seconds: float) -> dict[str, object]:
    """One live run (in this process, with whichever livetok comes first on sys.path): its latency
    series (ms) and the source's drop counts."""
    from bench_live import latency_metrics

    series, gauges = latency_metrics(seconds)
    return {"series": {k: series[k] for k in SERIES},
            "dropped": [gauges["dropped.cam.video"], gauges["dropped.cam.audio"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="another livetok tree whose runs take turns with this one's")
    args = ap.parse_args()
    print_header("bench_latency_ab: capture-to-emit latency, 640x480@30 + 16 kHz, in turns")
    trees: list[tuple[str, dict[str, str]]] = [("this tree", dict(os.environ))]
    if args.baseline is not None:
        trees.insert(0, ("baseline", {**os.environ, "PYTHONPATH": str(args.baseline.resolve())}))
    child = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_latency_ab; "
             f"print(json.dumps(bench_latency_ab.latency_run({args.seconds})))")
    rows = []
    with tempfile.TemporaryDirectory() as cwd:
        for i in range(args.rounds):
            for name, env in trees:
                res = subprocess.run([sys.executable, "-c", child], env=env, cwd=cwd, capture_output=True,
                                     text=True, check=True)
                got = json.loads(res.stdout.strip().splitlines()[-1])
                s = got["series"]
                rows.append([i + 1, name, *(f"{s[k]['p50']:.1f} / {s[k]['p95']:.1f} / {s[k]['p99']:.1f}"
                                            for k in SERIES), got["dropped"], f"{os.getloadavg()[0]:.2f}"])
    print(f"\n{args.seconds:g} s live per run, p50 / p95 / p99 in ms (target: audio fine p99 <= 26)")
    print(table(["round", "tree", "audio fine", "video fine", "dropped v, a", "load (1 min)"], rows))


if __name__ == "__main__":
    main()
