"""A source that must reconnect (HTTP, TCP, RTSP): from the first byte after an outage to the first token.

    .venv/bin/python bench/bench_reconnect.py [--runs 2] [--outage 4] [--kinds http,tcp,rtsp]

The daemon (in this process: ``run_blocking``, one stream source, a file sink) reads a live MPEG-TS
clip (640x480@30 H.264 with a keyframe every second, AAC) served by ffmpeg through a TCP proxy
(tests/netproxy.py). Once tokens flow the server is killed, and ``--outage`` seconds later started
again. Measured on this machine's monotonic clock:

* **back -> first byte**: from the server listening again to the first byte the proxy forwards to
  the daemon: the source's backoff (1, 2, 4 ... s) decides it;
* **first byte -> first token**: from that byte to the first token of the new connection written
  to the file (the file's size polled every 2 ms): FFmpeg's probing, the first keyframe, the
  clock's start-up hold (docs/sync.md), tokenizing, writing.

RTSP goes through rtsp-server-perl (UDP transport): the proxy carries its control connection, and
"first byte" is the first byte of the new RTSP exchange (the media follows over UDP).

Figures only; nothing is asserted (tests/test_streams_faults.py asserts the reconnection).
"""

from __future__ import annotations

import argparse
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import machine_line, table
from mediagen import ffmpeg
from netproxy import NetProxy
from streamgen import Proc, free_port, wait_listening, wait_until

from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking
from livetok.runtime.stopping import StopControl
from livetok.wire import Flag, Modality, Scale, TokenPacket, decode_packet

NS = 1_000_000_000


def make_clip(path: Path) -> Path:
    """10 s of 640x480@30 H.264 (a keyframe every second) + AAC; an .mp4 for RTSP (its AAC needs global
    headers), MPEG-TS otherwise."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30:duration=10", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=48000:duration=10", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
           "-pix_fmt", "yuv420p", "-c:a", "aac", str(path))
    return path


class Server:
    """ffmpeg serving the clip live (looped) on a port, and how the daemon reaches it (through a proxy)."""

    def __init__(self, kind: str, clip: Path) -> None:
        self.kind, self.clip = kind, clip
        self.port = free_port()
        self.proc: Proc | None = None
        self.relay: Proc | None = None
        self.source_port = free_port()
        self.proxy = NetProxy(self.port)
        path = {"http": "/live.ts", "tcp": "", "rtsp": "/cam"}[kind]
        self.url = f"{kind}://127.0.0.1:{self.proxy.port}{path}"

    def start(self) -> None:
        live = ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.clip),
                "-c", "copy"]
        if self.kind == "http":
            self.proc = Proc([*live, "-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{self.port}/live.ts"])
        elif self.kind == "tcp":
            self.proc = Proc([*live, "-f", "mpegts", f"tcp://127.0.0.1:{self.port}?listen=1"])
        else:
            self.relay = Proc(["rtsp-server-perl", "-c", str(self.port), "-s", str(self.source_port),
                               "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1"])
            wait_listening(self.source_port)
            self.proc = Proc([*live, "-f", "rtsp", f"rtsp://127.0.0.1:{self.source_port}/cam"])
        wait_listening(self.port)

    def stop(self) -> None:
        for p in (self.proc, self.relay):
            if p is not None:
                p.stop()
        self.proc = self.relay = None
        self.proxy.cut()


def records(path: Path) -> list[tuple[int, TokenPacket]]:
    """(end offset, packet) of every token packet in a .ltk file, in file order."""
    data = path.read_bytes()
    out, o = [], 8
    while o + 12 <= len(data):
        length = struct.unpack_from("<I", data, o + 4)[0]
        end = o + 12 + length
        if end > len(data):
            break
        p = decode_packet(data[o + 12:end])
        if isinstance(p, TokenPacket):
            out.append((end, p))
        o = end
    return out


def one_run(kind: str, clip: Path, work: Path, outage_s: float) -> dict[str, Any]:
    out = work / f"{kind}.ltk"
    out.unlink(missing_ok=True)
    server = Server(kind, clip)
    source: dict[str, Any] = {"kind": "stream", "name": "cam", "url": server.url}
    if kind == "rtsp":
        source["transport"] = "udp"
    cfg = LivetokConfig.model_validate({"sources": [source],
                                        "sinks": [{"kind": "file", "path": str(out), "aligned": False}]})
    stop = StopControl()
    sizes: list[tuple[int, int]] = []  # (monotonic ns, file size)
    marks: dict[str, int] = {}

    def size() -> int:
        return out.stat().st_size if out.exists() else 0

    def scenario() -> None:
        try:
            server.start()
            assert wait_until(lambda: size() > 100_000, 60.0), "no tokens"
            server.stop()
            marks["down"] = time.monotonic_ns()
            time.sleep(outage_s)
            server.start()
            marks["back"] = time.monotonic_ns()
            before = server.proxy.bytes_down
            deadline = time.monotonic() + 60
            while server.proxy.bytes_down == before and time.monotonic() < deadline:
                time.sleep(0.001)
            marks["first_byte"] = time.monotonic_ns()
            end = time.monotonic() + 8
            while time.monotonic() < end:
                sizes.append((time.monotonic_ns(), size()))
                time.sleep(0.002)
        finally:
            stop.request("bench done")

    t = threading.Thread(target=scenario, daemon=True)
    t.start()
    try:
        run_blocking(cfg, 180.0, stop)
    finally:
        t.join(10)
        server.stop()
        server.proxy.close()
    first = next((end for end, p in records(out) if p.modality == Modality.VIDEO and p.scale == Scale.FINE
                  and p.flags & (Flag.GAP | Flag.DISCONTINUITY) and p.seq > 0), None)
    written = next((ts for ts, sz in sizes if first is not None and sz >= first), None)
    if written is None or "first_byte" not in marks:
        return {"kind": kind, "error": "no token after the outage"}
    return {"kind": kind, "back_to_byte_s": (marks["first_byte"] - marks["back"]) / NS,
            "byte_to_token_s": (written - marks["first_byte"]) / NS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--outage", type=float, default=4.0, help="seconds the server is down")
    ap.add_argument("--kinds", default="http,tcp,rtsp")
    args = ap.parse_args()
    print("== bench_reconnect: from the first byte after an outage to the first token")
    print(machine_line())
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench-reconnect-") as tmp:
        clips = {"ts": make_clip(Path(tmp) / "clip.ts"), "mp4": make_clip(Path(tmp) / "clip.mp4")}
        for run in range(args.runs):
            for kind in args.kinds.split(","):
                r = one_run(kind, clips["mp4" if kind == "rtsp" else "ts"], Path(tmp), args.outage)
                results.append(r)
                rows.append([kind, run, r.get("error") or f"{r['back_to_byte_s']:.2f}",
                             "-" if "error" in r else f"{r['byte_to_token_s']:.2f}"])
    print(table(["source", "run", "back -> first byte (s)", "first byte -> first token (s)"], rows))
    for kind in args.kinds.split(","):
        xs = [r["byte_to_token_s"] for r in results if r["kind"] == kind and "error" not in r]
        if xs:
            print(f"{kind}: first byte -> first token median {statistics.median(xs):.2f} s over {len(xs)} runs")


if __name__ == "__main__":
    main()
