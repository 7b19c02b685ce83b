"""Graceful overload (issue 16 §2): N synthetic cameras through the daemon, more than it sustains;
per source, how many captured frames kept their coarse and their fine tokens, the fine frames
degraded and shed, the frames whose coarse codes a catch-up batch made greedily, and the books.

    .venv/bin/python bench/bench_overload.py [--streams 12] [--seconds 20] [--size 640x480] [--fps 30]
                                             [--high 0] [--coarse-beam B] [--queue FRAMES]

``--high K``: the first K sources get ``priority: 1``; ``--coarse-beam``: ``tokenizer.video.coarse.beam``
(default: the default, 4); ``--queue``: ``queues.video_frames`` (default: the default, 8). Run it once
at the count bench_live.py finds sustainable and once at twice that. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_header, table

from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--high", type=int, default=0)
    ap.add_argument("--coarse-beam", type=int, default=None, help="tokenizer.video.coarse.beam (default: the default)")
    ap.add_argument("--queue", type=int, default=None, help="queues.video_frames (default: the default)")
    args = ap.parse_args()
    print_header("bench_overload")
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": f"cam{i}", "size": args.size, "fps": args.fps,
                     "priority": 1 if i < args.high else 0} for i in range(args.streams)],
        "sinks": [{"kind": "file", "path": "/tmp/bench_overload.ltk"}],
        **({"tokenizer": {"video": {"coarse": {"beam": args.coarse_beam}}}} if args.coarse_beam else {}),
        **({"queues": {"video_frames": args.queue}} if args.queue else {}),
    })
    report = run_blocking(cfg, args.seconds)
    books = report.accounting
    rows = []
    for i in range(args.streams):
        r = books["captures"][f"cam{i}.video"]
        fine, coarse = r["scales"]["fine"], r["scales"]["coarse"]
        n = r["captured"]
        rows.append([f"cam{i}", 1 if i < args.high else 0, n, f"{coarse['tokenized'] / n:.3f}",
                     f"{fine['tokenized'] / n:.3f}", fine["degraded"], fine["shed"], coarse.get("degraded", 0),
                     r["dropped_queue"]])
    print(f"\n{args.streams} x {args.size}@{args.fps:g} synthetic, {args.seconds:g} s; books balanced: "
          f"{books['balanced']}")
    print(table(["source", "priority", "captured", "coarse", "fine", "fine degraded", "fine shed", "coarse greedy",
                 "dropped"], rows))


if __name__ == "__main__":
    main()
