"""Memory over a long run with a source that keeps dying, and stall detection / backoff figures.

    .venv/bin/python bench/bench_soak.py [--minutes 10] [--die-every 8]

Runs ``livetok run`` as a subprocess with two sources: the synthetic source, and a UDP MPEG-TS
stream served by ffmpeg on loopback that is killed every ``--die-every`` seconds and restarted a
few seconds later (so the daemon sees it stall, back off and reconnect, again and again). Samples
the daemon's resident memory (VmRSS) every 15 s, prints the series and the slope over the second
half of the run (after warm-up), and at the end the source counters (stalls, reconnects) and the
metrics. Figures are printed, not asserted.
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
from _common import REPO, machine_line, table

PY = os.environ.get("PYTHON", str(REPO / ".venv" / "bin" / "python"))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--die-every", type=float, default=8.0, help="seconds the stream lives each time")
    ap.add_argument("--dead-for", type=float, default=4.0, help="seconds it stays dead")
    args = ap.parse_args()
    print("== bench_soak: memory with a source that keeps dying")
    print(machine_line())
    tmp = Path(tempfile.mkdtemp(prefix="livetok-soak-"))
    clip = tmp / "clip.ts"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=640x480:rate=30:duration=20", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000:duration=20", "-c:v", "libx264", "-preset",
                    "ultrafast", "-g", "30", "-c:a", "aac", "-f", "mpegts", str(clip)], check=True)
    port = free_udp_port()
    cfg = tmp / "soak.yaml"
    cfg.write_text(
        "sources:\n"
        f"  - {{kind: stream, name: flaky, url: 'udp://127.0.0.1:{port}', format: mpegts, read_timeout_s: 2}}\n"
        "  - {kind: synthetic, name: syn}\n"
        f"sinks:\n  - {{kind: file, path: '{tmp / 'soak.ltk'}'}}\n")
    daemon = subprocess.Popen([PY, "-m", "livetok.cli", "run", "-c", str(cfg)], stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + args.minutes * 60
    samples: list[tuple[float, int]] = []
    server: subprocess.Popen[bytes] | None = None
    next_toggle = time.monotonic() + 3
    next_sample = time.monotonic() + 15
    kills = 0
    t0 = time.monotonic()
    try:
        while time.monotonic() < end and daemon.poll() is None:
            now = time.monotonic()
            if now >= next_toggle:
                if server is None:
                    server = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1",
                                               "-i", str(clip), "-c", "copy", "-f", "mpegts",
                                               f"udp://127.0.0.1:{port}?pkt_size=1316"])
                    next_toggle = now + args.die_every
                else:
                    server.kill()
                    server.wait()
                    server = None
                    kills += 1
                    next_toggle = now + args.dead_for
            if now >= next_sample:
                samples.append((now - t0, rss_kib(daemon.pid)))
                print(f"  t={now - t0:6.0f} s  rss={samples[-1][1] / 1024:7.1f} MiB  (stream killed {kills}x)",
                      flush=True)
                next_sample = now + 15
            time.sleep(0.2)
    finally:
        if server is not None:
            server.kill()
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    print(f"daemon exit code {daemon.returncode}; stream killed {kills} times")
    half = [s for s in samples if s[0] >= samples[-1][0] / 2] if samples else []
    if len(half) >= 2:
        (ta, ra), (tb, rb) = half[0], half[-1]
        slope = (rb - ra) / 1024 / ((tb - ta) / 60)
        print(table(["first sample MiB", "at half-time MiB", "last MiB", "slope, 2nd half (MiB/min)"],
                    [[f"{samples[0][1] / 1024:.1f}", f"{ra / 1024:.1f}", f"{rb / 1024:.1f}", f"{slope:+.3f}"]]))
    text = err[err.index("{"):] if "{" in err else "{}"
    metrics = json.loads(text)
    gauges = metrics.get("gauges", {})
    print(table(["counter", "value"], [[k, v] for k, v in sorted(gauges.items()) if k.startswith("source.flaky")
                                        or k.startswith("dropped.")]))


if __name__ == "__main__":
    main()
