"""Live figures: capture-to-emit latency for one camera + one microphone, and how many 720p30
camera streams this machine tokenizes in real time next to how many ffmpeg alone can decode.

    .venv/bin/python bench/bench_live.py [--seconds 30] [--max-streams 8]
    .venv/bin/python bench/bench_live.py --latency-only --rounds 3 --baseline DIR   # before / after

Latency: the synthetic source at 640x480@30 with 16 kHz audio (a camera and a microphone in one:
no V4L2 camera exists here) runs through ``livetok run`` for ``--seconds``; the daemon's own
metrics give p50/p95/p99 of emit time − capture time (video) and emit time − end of the fine audio
window (audio).

``--rounds N`` repeats the latency run N times, each in a fresh process; with ``--baseline DIR``
(another livetok tree, e.g. ``git archive main livetok | tar -x -C DIR``) a run of that tree
(``PYTHONPATH=DIR``, this .venv) takes turns with each of this tree's, for before / after figures
under the same load.

Streams: N copies of a 720p30 H.264 clip played as live (real-time pacing, looped) through the
daemon for 20 s; a count is "sustained" when fewer than 1 % of frames were dropped and the
frames tokenized reach 97 % of real time. The ceiling: ffmpeg decoding the same clip as fast as it
can (both cores) divided by 30 frames/s. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_header, table

from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking

SERIES = (("latency.video.fine", "<= 50"), ("latency.video.coarse", ""), ("latency.audio.fine", "<= 40"),
          ("latency.audio.coarse", ""), ("latency.step.cam", ""))


def latency_run(seconds: float) -> dict[str, object]:
    """One live run of the synthetic 640x480@30 + 16 kHz source: its series (ms) and drop counts."""
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": "cam", "size": "640x480", "fps": 30, "rate": 16000}],
    })
    report = run_blocking(cfg, seconds)
    series = report.metrics["series_ms"]
    gauges = report.metrics["gauges"]
    assert isinstance(series, dict) and isinstance(gauges, dict)
    return {"series": {k: series[k] for k, _ in SERIES},
            "dropped": [gauges["dropped.cam.video"], gauges["dropped.cam.audio"]]}


def latency(seconds: float) -> None:
    got = latency_run(seconds)
    series = got["series"]
    assert isinstance(series, dict)
    rows = [[k.removeprefix("latency."), series[k]["n"], series[k]["p50"], series[k]["p95"], series[k]["p99"],
             target] for k, target in SERIES]
    print(f"\n640x480@30 + 16 kHz audio, {seconds:g} s live (synthetic source), latency in ms")
    print(table(["series", "n", "p50", "p95", "p99", "target p99"], rows))
    print(f"dropped: video, audio {got['dropped']}")


def latency_rounds(seconds: float, rounds: int, baseline: Path | None) -> None:
    """``rounds`` runs, each in a fresh process; with a baseline tree, its runs take turns with these."""
    trees: list[tuple[str, dict[str, str]]] = [("this tree", dict(os.environ))]
    if baseline is not None:
        trees.insert(0, ("baseline", {**os.environ, "PYTHONPATH": str(baseline.resolve())}))
    child = f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_live; " \
            f"print(json.dumps(bench_live.latency_run({seconds})))"
    rows = []
    with tempfile.TemporaryDirectory() as cwd:  # not the repository: it would come before PYTHONPATH
        for i in range(rounds):
            for name, env in trees:
                res = subprocess.run([sys.executable, "-c", child], env=env, cwd=cwd, capture_output=True,
                                     text=True, check=True)
                got = json.loads(res.stdout.strip().splitlines()[-1])
                s = got["series"]
                rows.append([i + 1, name, *(f"{s[k]['p50']:.1f} / {s[k]['p95']:.1f} / {s[k]['p99']:.1f}"
                                            for k in ("latency.audio.fine", "latency.video.fine")),
                             got["dropped"], f"{os.getloadavg()[0]:.2f}"])
    print(f"\n640x480@30 + 16 kHz audio, {seconds:g} s live per run, p50 / p95 / p99 in ms (target: audio "
          "fine p99 <= 26)")
    print(table(["round", "tree", "audio fine", "video fine", "dropped v, a", "load (1 min)"], rows))


def make_clip(tmp: Path) -> Path:
    clip = tmp / "720p30.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=30:duration=10", "-c:v", "libx264", "-preset", "veryfast",
                    "-g", "60", "-pix_fmt", "yuv420p", str(clip)], check=True)
    return clip


def ffmpeg_ceiling(clip: Path) -> float:
    t = time.monotonic()
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-threads", "0", "-i", str(clip), "-f", "null", "-"],
                   check=True)
    return 300 / (time.monotonic() - t) / 30  # 10 s at 30 fps = 300 frames


def streams(clip: Path, n: int, seconds: float) -> tuple[float, float]:
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "file", "name": f"cam{i}", "path": str(clip), "loop": True, "audio": False}
                    for i in range(n)],
    })
    report = run_blocking(cfg, seconds)
    g = report.metrics["gauges"]
    assert isinstance(g, dict)
    frames = sum(g[f"source.cam{i}.frames"] for i in range(n))
    dropped = sum(g[f"dropped.cam{i}.video"] for i in range(n))
    tokenized = frames - dropped
    return dropped / max(1, frames), tokenized / (n * 30 * seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--max-streams", type=int, default=16)
    ap.add_argument("--from-streams", type=int, default=1, help="first stream count tried")
    ap.add_argument("--step", type=int, default=1, help="stream count increment")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--latency-only", action="store_true", help="no stream counts")
    ap.add_argument("--rounds", type=int, default=1, help="latency runs, each in a fresh process when > 1")
    ap.add_argument("--baseline", type=Path, help="another livetok tree whose latency runs take turns")
    args = ap.parse_args()
    print_header("bench_live: latency and 720p30 streams in real time")
    if not args.no_latency:
        if args.rounds > 1 or args.baseline:
            latency_rounds(args.seconds, args.rounds, args.baseline)
        else:
            latency(args.seconds)
    if args.latency_only:
        return
    with tempfile.TemporaryDirectory() as d:
        clip = make_clip(Path(d))
        ceiling = ffmpeg_ceiling(clip)
        rows = []
        best = 0
        for n in range(args.from_streams, args.max_streams + 1, args.step):
            drop, real_time = streams(clip, n, 20.0)
            ok = drop < 0.01 and real_time >= 0.97
            rows.append([n, f"{100 * drop:.2f} %", f"{100 * real_time:.1f} %", "yes" if ok else "no"])
            if ok:
                best = n
            else:
                break
        print("\n720p30 H.264 files played as live, 20 s each (video only)")
        print(table(["streams", "frames dropped", "tokenized / real time", "sustained"], rows))
        print(f"sustained: {best} streams; ffmpeg decode alone: {ceiling:.1f} streams' worth of 720p30 "
              f"(300 frames decoded in {300 / (ceiling * 30):.2f} s)")


if __name__ == "__main__":
    main()
