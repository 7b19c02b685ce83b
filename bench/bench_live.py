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

Token rates (``--token-fps 30,10,5,1``): the same search at each token rate (``token_fps`` on every
source), with the bus on (``--bus``: a private Mosquitto on a free loopback port, every token and
step published with QoS 1), next to the decode-only ceiling measured in the same run (and the
ceilings of a decode with ``-skip_frame noref``, what the token rate's decoder skips at most for
this clip, and ``nokey``, keyframes only). A count is sustained when capture keeps 97 % of real
time, fewer than 1 % of the token frames are dropped, the token frames reach 97 % of
``N x token_fps x seconds``, and the bus lost nothing. Each row gives the load average
(``uptime``) at its end, the machine being shared, and the CPU the daemon and the broker used per
stream and second of video in the run's steady state: 2 cores' worth of CPU over that is a
capacity estimate less sensitive to others' load than the sustained count.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_header, table

from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking


def latency_metrics(seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """One live run of the synthetic 640x480@30 camera with 16 kHz audio: its latency series (ms) and
    gauges (bench_latency_ab.py runs the same, in turns with another tree)."""
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": "cam", "size": "640x480", "fps": 30, "rate": 16000}],
    })
    report = run_blocking(cfg, seconds)
    series = report.metrics["series_ms"]
    gauges = report.metrics["gauges"]
    assert isinstance(series, dict) and isinstance(gauges, dict)
    return series, gauges


def latency(seconds: float) -> None:
    series, gauges = latency_metrics(seconds)
    rows = []
    for key, target in (("latency.video.fine", "<= 50"), ("latency.video.coarse", ""),
                        ("latency.audio.fine", "<= 40"), ("latency.audio.coarse", ""), ("latency.step.cam", "")):
        s = series[key]
        rows.append([key.removeprefix("latency."), s["n"], s["p50"], s["p95"], s["p99"], target])
    print(f"\n640x480@30 + 16 kHz audio, {seconds:g} s live (synthetic source), latency in ms")
    print(table(["series", "n", "p50", "p95", "p99", "target p99"], rows))
    print(f"dropped: video {gauges['dropped.cam.video']}, audio {gauges['dropped.cam.audio']}")


def make_clip(tmp: Path, gop: int = 60, bframes: bool = True) -> Path:
    """10 s of testsrc2 at 720p30 in H.264, a keyframe every ``gop`` frames (x264 veryfast: B-frames
    unless ``bframes`` is False)."""
    clip = tmp / "720p30.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=30:duration=10", "-c:v", "libx264", "-preset", "veryfast",
                    "-g", str(gop), *([] if bframes else ["-bf", "0"]), "-pix_fmt", "yuv420p", str(clip)], check=True)
    return clip


def ffmpeg_ceiling(clip: Path, *decoder: str) -> float:
    return ffmpeg_ceilings(clip, *decoder)[0]


def ffmpeg_ceilings(clip: Path, *decoder: str) -> tuple[float, float]:
    """Streams of 720p30 ffmpeg decodes in real time: by wall time (both cores, as fast as it can), and
    by its CPU time (what 2 cores' worth of CPU would decode; less sensitive to a shared machine)."""
    cpu0 = _children_cpu_s()
    t = time.monotonic()
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-threads", "0", *decoder, "-i", str(clip), "-f",
                    "null", "-"], check=True)
    wall, cpu = time.monotonic() - t, _children_cpu_s() - cpu0
    return 300 / wall / 30, 2 * 10.0 / cpu  # 10 s at 30 fps = 300 frames (or 30 fps' worth of them)


def pyav_decode_ms(clip: Path, mode: str, repeat: int = 3) -> float:
    """CPU ms to decode the clip with PyAV in one thread (as a capture thread does) with ``skip_frame``
    = ``mode`` for every packet, best of ``repeat``."""
    import av

    best = float("inf")
    for _ in range(repeat):
        with av.open(str(clip)) as c:
            s = c.streams.video[0]
            s.codec_context.skip_frame = mode  # type: ignore[assignment]
            t = time.process_time()
            for _frame in c.decode(s):
                pass
            best = min(best, time.process_time() - t)
    return 1000 * best


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cpu_s(pid: int | None = None) -> float:
    """CPU seconds of this process (or of ``pid``), from /proc."""
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuWindow:
    """CPU seconds this process (and the broker) use between ``skip_s`` and ``skip_s + window_s`` after
    the start: the streams' steady state, without the run's start-up and shutdown."""

    def __init__(self, skip_s: float, window_s: float, broker_pid: int | None) -> None:
        self.window_s, self.cpu_s = window_s, float("nan")
        self._pids: list[int | None] = [None] + ([broker_pid] if broker_pid else [])
        self._thread = threading.Thread(target=self._run, args=(skip_s,), daemon=True)
        self._thread.start()

    def _run(self, skip_s: float) -> None:
        time.sleep(skip_s)
        c0 = sum(_cpu_s(p) for p in self._pids)
        time.sleep(self.window_s)
        self.cpu_s = sum(_cpu_s(p) for p in self._pids) - c0

    def join(self) -> float:
        self._thread.join()
        return self.cpu_s


def load() -> str:
    """The load average over the last minute (the machine is shared: a figure is only as quiet as this)."""
    return f"{os.getloadavg()[0]:.2f}"


@dataclass
class Trial:
    """One run of N streams at a token rate: shares of real time and of the books."""

    n: int
    captured: float  # frames captured / (N x 30 x seconds)
    tokenized: float  # token frames tokenized / (N x min(token_fps, 30) x seconds)
    dropped: float  # token frames dropped / token frames handed over
    undecoded: float  # frames never decoded (skip_frame) / frames captured
    bus_lost: int  # messages the bus dropped or failed
    load: str
    cpu_ms: float  # CPU of the daemon and the broker per stream and second of video, in steady state (ms)

    @property
    def sustained(self) -> bool:
        return self.captured >= 0.97 and self.tokenized >= 0.97 and self.dropped < 0.01 and not self.bus_lost


def rate_trial(clip: Path, n: int, seconds: float, token_fps: float, broker_port: int | None,
               broker_pid: int | None = None) -> Trial:
    sources = [{"kind": "file", "name": f"cam{i}", "path": str(clip), "loop": True, "audio": False,
                "token_fps": token_fps} for i in range(n)]
    doc: dict[str, Any] = {"sources": sources}
    if broker_port is not None:
        doc["mqtt"] = {"host": "127.0.0.1", "port": broker_port, "instance": "bench"}
    else:
        doc["sinks"] = [{"kind": "file", "path": "/dev/null"}]
    window = CpuWindow(4.0, seconds - 6.0, broker_pid)
    report = run_blocking(LivetokConfig.model_validate(doc), seconds)
    cpu_ms = 1000 * window.join() / (n * window.window_s)
    rows = [report.accounting["captures"][f"cam{i}.video"] for i in range(n)]
    g = report.metrics["gauges"]
    assert isinstance(g, dict)
    captured = sum(r["captured"] for r in rows)
    handed = sum(r["captured"] - r["skipped_by_rate"] for r in rows)
    dropped = sum(r["dropped_queue"] for r in rows)
    tokenized = sum(r["tokenized"] for r in rows)
    undecoded = sum(g.get(f"source.cam{i}.undecoded", 0) for i in range(n))
    bus = report.sinks.get("mqtt", {"dropped": 0, "failed": 0})
    return Trial(n, captured / (n * 30 * seconds), tokenized / (n * min(token_fps, 30) * seconds),
                 dropped / max(1, handed), undecoded / max(1, captured), bus["dropped"] + bus["failed"], load(),
                 cpu_ms)


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


def search(trial: Callable[[int], bool], start: int, step: int, most: int = 64) -> int:
    """The most streams ``trial`` sustains: up by ``step`` from ``start`` to the first failure, then
    one by one between the last success and it (down one by one when ``start`` already fails)."""
    best, n = 0, start
    while n <= most and trial(n):
        best, n = n, n + step
    if best == 0:
        n = start - 1
        while n > 0 and not trial(n):
            n -= 1
        return max(n, 0)
    for m in range(best + 1, min(n, most + 1)):
        if not trial(m):
            break
        best = m
    return best


def token_rates(clip: Path, rates: list[float], seconds: float, start: int, step: int,
                broker_port: int | None, broker_pid: int | None = None, decode_only: bool = False,
                most: int = 64) -> None:
    """The most streams sustained at each token rate (rates in increasing order of what they allow:
    each search starts at the previous rate's best)."""
    ceiling, ceiling_cpu = ffmpeg_ceilings(clip)
    nonref, nonref_cpu = ffmpeg_ceilings(clip, "-skip_frame", "noref")
    nokey, nokey_cpu = ffmpeg_ceilings(clip, "-skip_frame", "nokey")
    print(f"\ndecode-only ceiling (same run): ffmpeg {ceiling:.1f} streams of 720p30 by wall time, "
          f"{ceiling_cpu:.1f} by CPU time (load {load()}); with -skip_frame noref {nonref:.1f} / {nonref_cpu:.1f}, "
          f"with -skip_frame nokey {nokey:.1f} / {nokey_cpu:.1f}")
    costs = {m: pyav_decode_ms(clip, m) for m in ("DEFAULT", "NONREF", "NONKEY")}
    print("PyAV decode of the 10 s clip, one thread, CPU ms (best of 3): "
          + ", ".join(f"{m} {v:.0f}" for m, v in costs.items()))
    if decode_only:
        return
    cpu: dict[float, dict[int, float]] = {}  # token rate -> streams -> CPU ms per stream-second, when sustained
    rows: list[list[object]] = []
    summary: list[list[object]] = []
    best = start
    for fps in rates:
        def trial(n: int, fps: float = fps) -> bool:
            t = rate_trial(clip, n, seconds, fps, broker_port, broker_pid)
            rows.append([f"{fps:g}", n, f"{100 * t.captured:.1f} %", f"{100 * t.tokenized:.1f} %",
                         f"{100 * t.dropped:.2f} %", f"{100 * t.undecoded:.0f} %", t.bus_lost,
                         "yes" if t.sustained else "no", f"{t.cpu_ms:.0f}", t.load])
            if t.sustained:
                cpu.setdefault(fps, {})[n] = t.cpu_ms
            print("  " + " | ".join(str(c) for c in rows[-1]), flush=True)
            return t.sustained

        found = search(trial, max(start, best), step, most)
        best = max(found, 1)
        per = cpu.get(fps, {}).get(found, float("nan"))  # at the most streams sustained
        summary.append([f"{fps:g}", found, f"{ceiling:.1f}", f"{100 * found / ceiling:.0f} %", f"{per:.0f}",
                        f"{2000 / per:.1f}", f"{ceiling_cpu:.1f}", f"{100 * 2000 / per / ceiling_cpu:.0f} %"])
    print(f"\n720p30 H.264 files played as live, {seconds:g} s each, token_fps on every stream, "
          f"{'bus on (QoS 1, local Mosquitto)' if broker_port is not None else 'file sink /dev/null'}")
    print(table(["token fps", "streams", "captured / real time", "token frames / target", "dropped",
                 "never decoded", "bus lost", "sustained", "CPU ms / stream-s", "load (1 min)"], rows))
    print(table(["token fps", "sustained streams", "decode-only ceiling", "share", "CPU ms / stream-s",
                 "streams per 2 cores by CPU", "ceiling by CPU", "share by CPU"], summary))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--max-streams", type=int, default=16)
    ap.add_argument("--from-streams", type=int, default=1, help="first stream count tried")
    ap.add_argument("--step", type=int, default=1, help="stream count increment")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--token-fps", default="", help="comma-separated token rates (e.g. 30,10,5,1): the search "
                    "at each rate instead of the plain one")
    ap.add_argument("--bus", action="store_true", help="publish to a private Mosquitto (with --token-fps)")
    ap.add_argument("--stream-seconds", type=float, default=20.0, help="length of each streams trial (s)")
    ap.add_argument("--gop", type=int, default=60, help="the clip's keyframe interval (frames), with --token-fps")
    ap.add_argument("--no-bframes", action="store_true", help="a clip without B-frames, with --token-fps")
    ap.add_argument("--decode-only", action="store_true", help="with --token-fps: the decode figures only")
    args = ap.parse_args()
    print_header("bench_live: latency and 720p30 streams in real time")
    if not args.no_latency:
        latency(args.seconds)
    if args.token_fps:
        rates = [float(x) for x in args.token_fps.split(",")]
        with tempfile.TemporaryDirectory() as d:
            clip = make_clip(Path(d), args.gop, not args.no_bframes)
            print(f"clip: 720p30 H.264, keyframe every {args.gop} frames, {'no ' if args.no_bframes else ''}B-frames")
            if args.bus:
                sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
                from broker import Mosquitto

                with Mosquitto(Path(d) / "broker") as broker:
                    pid = broker.proc.pid if broker.proc is not None else None
                    token_rates(clip, rates, args.stream_seconds, args.from_streams, args.step, broker.port, pid,
                                most=args.max_streams)
            else:
                token_rates(clip, rates, args.stream_seconds, args.from_streams, args.step, None,
                            decode_only=args.decode_only, most=args.max_streams)
        return
    with tempfile.TemporaryDirectory() as d:
        clip = make_clip(Path(d))
        ceiling = ffmpeg_ceiling(clip)
        rows = []
        best = 0
        for n in range(args.from_streams, args.max_streams + 1, args.step):
            drop, real_time = streams(clip, n, args.stream_seconds)
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
