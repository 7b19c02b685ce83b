"""A camera that starts after the daemon: what is lost, how fast tokens come, and how true their times are.

    .venv/bin/python bench/bench_late.py [--delay 4] [--seconds 10] [--runs 2] [--busy 0] [--before DIR]

A daemon (``livetok run``, one ``udp://127.0.0.1:PORT`` source, a file sink) is started and left
waiting; ``--delay`` seconds after its socket is bound, ``tests/livesender.py`` starts a live camera
there: ``--seconds`` of H.264 + AAC encoded as captured, with its start ``T0`` on this machine's
clock and a flash + beep every second (see its docstring). Then the live token file is compared
with the truth (``tests/latetruth.py``): per stream, packets received against the reference
(``livetok tokenize`` of the bytes sent), the rates ``livetok probe`` reports, and every token's
capture time against ``T0 + its media time``: max and median |error| over the first second after
the first token and over the whole run. Also: the time from the sender's start to the first token
written.

``--before DIR``: the same runs, interleaved, with the daemon imported from another checkout (e.g.
``git archive main | tar -x -C /tmp/before``), so that before and after are measured in one run on
one machine. ``--busy N``: N processes spinning on the CPU during every run. ``--pause-at S
--pause-s P``: the camera goes silent for P seconds at S (bursts). ``--read-timeout S``: the
source's ``read_timeout_s``.

Figures only; nothing is asserted (tests/test_daemon_late.py asserts).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import REPO, machine_line, table
from latetruth import compare

SENDER = REPO / "tests" / "livesender.py"
# What no arrival can reveal (docs/sources.md): FFmpeg's MPEG-TS demuxer hands an H.264 frame over
# when the second frame after it begins to arrive (a video PES ends where the next one starts, then
# the parser waits for the next access unit): two frame periods at 30 fps.
DEMUX_LATENCY_MS = 2000 / 30


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def udp_bound(port: int) -> bool:
    """Whether something has bound the UDP port (read from /proc/net/udp)."""
    try:
        rows = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(int(r.split()[1].rsplit(":", 1)[1], 16) == port for r in rows)


def daemon(tree: Path, cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = "import sys; from livetok.cli import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, "run", "-c", str(cfg), "--duration", "300"],
                            env=env, cwd=str(tree), stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def one_run(tree: Path, work: Path, args: argparse.Namespace) -> dict[str, object]:
    port = free_udp_port()
    out, sent, truth_path = work / "live.ltk", work / "sent.ts", work / "truth.json"
    for p in (out, sent, truth_path):
        p.unlink(missing_ok=True)
    cfg = work / "config.yaml"
    source = {"kind": "stream", "name": "cam", "url": f"udp://127.0.0.1:{port}", "format": "mpegts",
              "read_timeout_s": args.read_timeout, "latency_ms": args.latency_ms}
    cfg.write_text(json.dumps({"sources": [source], "sinks": [{"kind": "file", "path": str(out), "aligned": False}]}))
    proc = daemon(tree, cfg, work / "daemon.log")
    burners = [subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 120\n"
                                 "while time.time() < end: pass"]) for _ in range(args.busy)]
    try:
        deadline = time.monotonic() + 60
        while not udp_bound(port):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the daemon never listened: {(work / 'daemon.log').read_text()[-2000:]}")
            time.sleep(0.02)
        time.sleep(args.delay)
        cmd = [sys.executable, str(SENDER), str(port), "--seconds", str(args.seconds), "--record", str(sent),
               "--truth", str(truth_path)]
        if args.pause_s:
            cmd += ["--pause-at", str(args.pause_at), "--pause-s", str(args.pause_s)]
        sender = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        first_token_mono = None
        while sender.poll() is None:
            if first_token_mono is None and out.exists() and out.stat().st_size > 8:
                first_token_mono = time.monotonic_ns()
            time.sleep(0.005)
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            if first_token_mono is None and out.exists() and out.stat().st_size > 8:
                first_token_mono = time.monotonic_ns()
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        for b in burners:
            b.kill()
            b.wait()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    truth = json.loads(truth_path.read_text())
    reference = work / "reference.ltk"
    reference.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-c", "import sys; from livetok.cli import main; sys.exit(main())",
                    "tokenize", str(sent), "-o", str(reference)], check=True, cwd=str(REPO),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    streams = compare(out, reference, truth, "cam")
    first_s = (first_token_mono - truth["t0_mono_ns"]) / 1e9 if first_token_mono else None
    log_lines = [ln for ln in (work / "daemon.log").read_text().splitlines() if "cam:" in ln]
    return {"streams": {"/".join(k): v.summary() for k, v in streams.items()}, "first_token_s": first_s,
            "sender_lag_ms": truth["video_lag_ms"], "log": log_lines}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay", type=float, default=4.0, help="sender starts this long after the daemon listens (s)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the live clip (s)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--busy", type=int, default=0, help="CPU-spinning processes during each run")
    ap.add_argument("--before", type=Path, help="another checkout to compare with (its livetok/ is imported)")
    ap.add_argument("--pause-at", type=float, default=0.0)
    ap.add_argument("--pause-s", type=float, default=0.0)
    ap.add_argument("--read-timeout", type=float, default=3.0)
    ap.add_argument("--latency-ms", type=float, default=DEMUX_LATENCY_MS,
                    help="the source's latency_ms (default: FFmpeg's MPEG-TS H.264 demuxing delay, 2 frames at 30 fps)")
    ap.add_argument("--json", type=Path, help="write every run's figures here too")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep its files (default: a temporary one)")
    args = ap.parse_args()
    print("== bench_late: a UDP camera starting while the daemon waits")
    print(machine_line())
    print(f"sender starts {args.delay:g} s after the daemon listens; {args.seconds:g} s clip, 320x240@30 H.264 + "
          f"48 kHz AAC; {args.busy} busy processes" + (f"; silent {args.pause_s:g} s from {args.pause_at:g} s"
                                                         if args.pause_s else ""))
    print(f"source latency_ms: {args.latency_ms:.3f} (errors without it: each {args.latency_ms:.1f} ms later)")
    variants = ([("before", args.before.resolve())] if args.before else []) + [("after", REPO)]
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-late-") as temporary:
        tmp = args.keep or temporary
        for run in range(args.runs):
            for name, tree in variants:
                work = Path(tmp) / f"{name}-{run}"
                work.mkdir(parents=True, exist_ok=True)
                r = one_run(tree, work, args)
                r.update(variant=name, run=run)
                results.append(r)
    rows = []
    for r in results:
        streams = r["streams"]
        assert isinstance(streams, dict)
        for key in ("video/fine", "audio/fine", "audio/coarse"):
            s = next((v for v in streams.values() if v["stream"] == key), None)
            if s is None:
                continue
            e, f = s["error_ms"], s["first_second_error_ms"]
            rows.append([r["variant"], r["run"], key, f"{s['matched']}/{s['reference']}", s["lost_start"],
                         s["missing"], f"{s['rate_hz']:.3f}", f"{s['rate_error_pct']:+.2f}",
                         f"{f['max']}", f"{f['p50']}", f"{e['max']}", f"{e['p50']}",
                         f"{r['first_token_s']:.2f}" if r["first_token_s"] is not None else "-"])
    print(table(["code", "run", "stream", "matched/sent", "lost at start", "lost after", "rate (Hz)", "rate err %",
                 "1st s max |err| ms", "1st s p50", "run max |err| ms", "run p50", "first token (s)"], rows))
    for r in results:
        lag = r["sender_lag_ms"]
        assert isinstance(lag, dict)
        print(f"{r['variant']} run {r['run']}: sender capture-to-socket {lag['min']:.1f}/{lag['median']:.1f}/"
              f"{lag['max']:.1f} ms (min/median/max); daemon log: {r['log'] or 'nothing about cam'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
