"""The A/V offset figure, live over UDP: flashes and beeps with the beep 37 ms late, recovered
from the packets; and compensated by ``audio_latency_ms``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from mediagen import ffmpeg
from streamgen import free_port

from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking
from livetok.wire import AlignedStep, read_ltk

OFFSET_S = 0.037
SECONDS = 7


@pytest.fixture(scope="module")
def marker_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """640x480@30 H.264 + AAC in MPEG-TS: a white frame every 2 s, a 1 kHz beep 37 ms after it."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (scripts/setup.sh installs it)")
    out = tmp_path_factory.mktemp("udp") / "markers.ts"
    flash = "drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t\\,2)\\,0.03)'"
    beep = f"0.5*sin(2*PI*1000*t)*lt(mod(t-{OFFSET_S}\\,2)\\,0.05)*gte(t\\,{OFFSET_S})"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=640x480:rate=30:duration={SECONDS},{flash}",
           "-f", "lavfi", "-i", f"aevalsrc='0.02*sin(2*PI*440*t)+{beep}':s=48000:d={SECONDS}",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac",
           "-f", "mpegts", str(out))
    return out


def serve_later(clip: Path, port: int, delay_s: float) -> threading.Thread:
    """ffmpeg sending the clip in real time to a UDP port, started once the reader listens."""
    def send() -> None:
        time.sleep(delay_s)
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", str(clip), "-c", "copy",
                        "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"], check=False, timeout=60)

    t = threading.Thread(target=send, daemon=True)
    t.start()
    return t


def test_offset_recovered_and_compensated_over_udp(marker_clip: Path, tmp_path: Path) -> None:
    raw_port, fixed_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    out = tmp_path / "udp.ltk"
    cfg = LivetokConfig.model_validate({
        "sources": [
            {"kind": "stream", "name": "raw", "url": f"udp://127.0.0.1:{raw_port}", "format": "mpegts"},
            {"kind": "stream", "name": "fixed", "url": f"udp://127.0.0.1:{fixed_port}", "format": "mpegts",
             "audio_latency_ms": OFFSET_S * 1000},
        ],
        "groups": [{"name": "raw", "video": "raw", "audio": "raw", "markers": True},
                   {"name": "fixed", "video": "fixed", "audio": "fixed", "markers": True}],
        "sinks": [{"kind": "file", "path": str(out), "per_modality": False}],
    })
    senders = [serve_later(marker_clip, p, 3.0) for p in (raw_port, fixed_port)]
    run_blocking(cfg, SECONDS + 6.0)
    for s in senders:
        s.join(timeout=30)
    steps = [p for p in read_ltk(out).packets if isinstance(p, AlignedStep)]
    last = {g: [s.skew_ns for s in steps if s.group == g and s.skew_ns is not None] for g in ("raw", "fixed")}
    assert last["raw"] and last["fixed"], "no marker pair measured"
    assert abs(last["raw"][-1] - OFFSET_S * 1e9) <= 10_000_000, last["raw"][-1]
    assert abs(last["fixed"][-1]) <= 10_000_000, last["fixed"][-1]
