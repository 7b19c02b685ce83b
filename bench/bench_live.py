"""Live figures: capture-to-emit latency for one camera + one microphone, and how many 720p30
camera streams this machine tokenizes in real time next to how many ffmpeg alone can decode.

    .venv/bin/python bench/bench_live.py [--seconds 30] [--max-streams 8]

Latency: the synthetic source at 640x480@30 with 16 kHz audio (a camera and a microphone in one:
no V4L2 camera exists here) runs through ``livetok run`` for ``--seconds``; the daemon's own
metrics give p50/p95/p99 of emit time − capture time (video) and emit time − end of the fine audio
window (audio).

Streams: N copies of a 720p30 H.264 clip played as live (real-time pacing, looped) through the
daemon for 20 s; a count is "sustained" when fewer than 1 % of frames were dropped and the
frames tokenized reach 97 % of real time. The ceiling: ffmpeg decoding the same clip as fast as it
can (both cores) divided by 30 frames/s. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_header, table

from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking


def latency(seconds: float) -> None:
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": "cam", "size": "640x480", "fps": 30, "rate": 16000}],
    })
    report = run_blocking(cfg, seconds)
    series = report.metrics["series_ms"]
    gauges = report.metrics["gauges"]
    assert isinstance(series, dict) and isinstance(gauges, dict)
    rows = []
    for key, target in (("latency.video.fine", "<= 50"), ("latency.video.coarse", ""),
                        ("latency.audio.fine", "<= 40"), ("latency.audio.coarse", ""), ("latency.step.cam", "")):
        s = series[key]
        rows.append([key.removeprefix("latency."), s["n"], s["p50"], s["p95"], s["p99"], target])
    print(f"\n640x480@30 + 16 kHz audio, {seconds:g} s live (synthetic source), latency in ms")
    print(table(["series", "n", "p50", "p95", "p99", "target p99"], rows))
    print(f"dropped: video {gauges['dropped.cam.video']}, audio {gauges['dropped.cam.audio']}")


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
    args = ap.parse_args()
    print_header("bench_live: latency and 720p30 streams in real time")
    if not args.no_latency:
        latency(args.seconds)
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
