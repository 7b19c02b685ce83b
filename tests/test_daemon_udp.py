"""The A/V offset figure, live over UDP: flashes and beeps with the beep 37 ms late, recovered
from the packets; and compensated by ``audio_latency_ms``."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import uvloop
from mediagen import ffmpeg
from requires import require
from streamgen import free_port, udp_bound, wait_until

from livetok.cli import main
from livetok.config import LivetokConfig
from livetok.daemon.main import run_async, run_blocking
from livetok.daemon.runner import RunReport
from livetok.runtime.stopping import StopControl
from livetok.sync.clock import MAX_SLEW
from livetok.wire import AlignedStep, Flag, Modality, Scale, TokenPacket, read_ltk

pytestmark = pytest.mark.slow  # every test here runs a live daemon, broker, stream or subprocess

OFFSET_S = 0.037
SECONDS = 7


@pytest.fixture(scope="module")
def marker_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """640x480@30 H.264 + AAC in MPEG-TS: a white frame every 2 s, a 1 kHz beep 37 ms after it."""
    require("ffmpeg")
    out = tmp_path_factory.mktemp("udp") / "markers.ts"
    flash = "drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t\\,2)\\,0.03)'"
    beep = f"0.5*sin(2*PI*1000*t)*lt(mod(t-{OFFSET_S}\\,2)\\,0.05)*gte(t\\,{OFFSET_S})"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=640x480:rate=30:duration={SECONDS},{flash}",
           "-f", "lavfi", "-i", f"aevalsrc='0.02*sin(2*PI*440*t)+{beep}':s=48000:d={SECONDS}",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac",
           "-f", "mpegts", str(out))
    return out


@pytest.fixture(scope="module")
def offline(marker_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``livetok tokenize`` of the marker clip: the truth live packets are matched against."""
    out = tmp_path_factory.mktemp("udp-offline") / "offline.ltk"
    assert main(["tokenize", str(marker_clip), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def offline_greedy(marker_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same with the coarse encoder greedy (``beam: 1``): the codes an overloaded daemon's catch-up
    batches make (counted in the books as ``scales.coarse.degraded``)."""
    d = tmp_path_factory.mktemp("udp-offline-greedy")
    (d / "greedy.yaml").write_text("tokenizer:\n  video:\n    coarse:\n      beam: 1\n")
    assert main(["tokenize", str(marker_clip), "-c", str(d / "greedy.yaml"), "-o", str(d / "greedy.ltk")]) == 0
    return d / "greedy.ltk"


def serve_once_bound(clip: Path, port: int) -> threading.Thread:
    """ffmpeg sending the clip in real time to a UDP port, started once the daemon's reader is bound
    to it (a datagram sent before would be lost)."""
    def send() -> None:
        if not wait_until(lambda: udp_bound(port), 120.0, 0.05):
            return  # the daemon never listened: the test fails on what it did not receive
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
    senders = [serve_once_bound(marker_clip, p) for p in (raw_port, fixed_port)]
    run_blocking(cfg, SECONDS + 3.0)  # the senders start as capture does: the clip, its audio's lag, a margin
    for s in senders:
        s.join(timeout=30)
    steps = [p for p in read_ltk(out).packets if isinstance(p, AlignedStep)]
    last = {g: [s.skew_ns for s in steps if s.group == g and s.skew_ns is not None] for g in ("raw", "fixed")}
    assert last["raw"] and last["fixed"], "no marker pair measured"
    assert abs(last["raw"][-1] - OFFSET_S * 1e9) <= 10_000_000, last["raw"][-1]
    assert abs(last["fixed"][-1]) <= 10_000_000, last["fixed"][-1]


def _by_stream(path: Path) -> dict[tuple[str, Modality, Scale], list[TokenPacket]]:
    out: dict[tuple[str, Modality, Scale], list[TokenPacket]] = {}
    for p in read_ltk(path).packets:
        if isinstance(p, TokenPacket):
            out.setdefault((p.source, p.modality, p.scale), []).append(p)
    return out


def _match(live: list[TokenPacket], offline: list[TokenPacket], greedy: list[TokenPacket] | None = None) -> list[int]:
    """For each live packet, the index of the offline packet with the same codes, searching forward
    (a busy machine drops frames from the queue, counted: the live stream skips); ``greedy``: the
    offline packets of the greedy coarse encoder, which an overloaded daemon's catch-up batches use:
    a live packet flagged GREEDY must match those, any other the configured encoder's."""
    out, j = [], 0

    def same(p: TokenPacket, k: int) -> bool:
        want = greedy if greedy is not None and p.flags & Flag.GREEDY else offline
        return np.array_equal(p.codes, want[k].codes)

    for p in live:
        k = next((k for k in range(j, len(offline)) if same(p, k)), None)
        assert k is not None, f"live packet {p.seq} matches no offline packet after {j}"
        out.append(k)
        j = k + 1
    return out


def run_until(cfg: LivetokConfig, senders: list[threading.Thread], done: Callable[[], bool]) -> RunReport:
    """The daemon in a thread of this process until its senders have finished and ``done()`` (what
    was sent has been read), then stopped; ``done`` waits at most 60 s: the books say what is missing."""
    stop = StopControl()
    result: list[RunReport] = []
    t = threading.Thread(target=lambda: result.append(uvloop.run(run_async(cfg, None, stop))), daemon=True)
    t.start()
    try:
        for s in senders:
            s.join(timeout=120)
        wait_until(done, 60.0, 0.2)
    finally:
        stop.request("test")
        t.join(60)
    assert result, "the daemon did not stop"
    return result[0]


def _accounted(name: str, live: list[TokenPacket], matched: list[int], sent: int, books: dict[str, int]) -> None:
    """Every video frame of the clip is a live packet (matched, in order) or counted by the daemon:
    dropped from its queue, at shutdown, failed; or one of the stream's last frames, which FFmpeg's
    MPEG-TS demuxer hands over only when more data comes (docs/sources.md): nothing else is lost."""
    counted = books["dropped_queue"] + books["dropped_shutdown"] + books["failed"]
    held = sent - books["captured"]
    assert books["balanced"] == 1 and books["tokenized"] == len(live) == len(matched), (name, books)
    assert 0 <= held <= 2, (name, books)  # the demuxer's hold, nothing lost on the way
    missing = set(range(sent)) - set(matched)
    assert len(missing) == counted + held, (name, len(missing), books)
    assert set(range(sent - held, sent)) <= missing, name  # the held ones are the last


@pytest.mark.exclusive  # it loads both cores itself: nothing else runs beside it
def test_av_relation_over_udp_from_the_first_packet_with_both_cores_busy(marker_clip: Path, offline: Path,
                                                                         offline_greedy: Path, tmp_path: Path) -> None:
    """Three live UDP MPEG-TS streams of the marker clip into one daemon, while two other processes
    keep both cores busy through start-up: for every audio fine packet, its time relative to the
    nearest video frame equals the media-time relation that `livetok tokenize` gives, from the very
    first packet (audio arrives up to ~0.7 s behind video in MPEG-TS): within the clock's slew bound
    (5 % of their distance in media time, so 1 ms for a frame and a sound 20 ms apart).

    An overloaded machine drops frames, counted: however many, the books account for every frame
    of the clip (:func:`_accounted`), and the audio, with none counted as dropped, is whole."""
    ref = _by_stream(offline)
    # Video by its coarse tokens: an overloaded daemon sheds fine levels and fine frames (counted in the
    # books' scales), never coarse ones, so every frame tokenized has its exact coarse packet.
    # Catch-up batches (an overloaded daemon's last resort before dropping whole frames) make the coarse
    # codes greedily, counted as scales.coarse.degraded: those frames match the greedy encoder's codes.
    ref_video = ref[(marker_clip.stem, Modality.VIDEO, Scale.COARSE)]
    ref_greedy = _by_stream(offline_greedy)[(marker_clip.stem, Modality.VIDEO, Scale.COARSE)]
    ref_audio = ref[(marker_clip.stem, Modality.AUDIO, Scale.FINE)]
    ports = [free_port(socket.SOCK_DGRAM) for _ in range(3)]
    out = tmp_path / "busy.ltk"
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "stream", "name": f"u{i}", "url": f"udp://127.0.0.1:{p}", "format": "mpegts"}
                    for i, p in enumerate(ports)],
        "sinks": [{"kind": "file", "path": str(out), "aligned": False}],
    })

    def all_audio_in() -> bool:  # all that was sent was read: every stream's audio is in the file but the
        got = _by_stream(out) if out.exists() else {}  # last packet, which the tokenizer completes at the stop
        return all(len(got.get((f"u{i}", Modality.AUDIO, Scale.FINE), [])) >= len(ref_audio) - 1 for i in range(3))

    burners = [subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 60\n"
                                 "while time.time() < end: pass"]) for _ in range(2)]
    try:
        senders = [serve_once_bound(marker_clip, p) for p in ports]
        report = run_until(cfg, senders, all_audio_in)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    live = _by_stream(out)
    for i in range(3):
        video, audio = live[(f"u{i}", Modality.VIDEO, Scale.COARSE)], live[(f"u{i}", Modality.AUDIO, Scale.FINE)]
        mv, ma = _match(video, ref_video, ref_greedy), _match(audio, ref_audio)
        books = report.accounting["captures"][f"u{i}.video"]
        _accounted(f"u{i}", video, mv, len(ref_video), books)
        flagged = sum(bool(p.flags & Flag.GREEDY) for p in video)
        assert flagged == books["scales"]["coarse"]["degraded"], (f"u{i}", flagged, books)
        audio_books = report.accounting["captures"][f"u{i}.audio"]
        if audio_books["dropped_queue"] + audio_books["dropped_shutdown"] + audio_books["failed"] == 0:
            assert ma == list(range(len(ref_audio))), f"u{i}: audio lost without being counted"
        assert [p.seq for p in video] == list(range(len(video)))  # dropped frames are not numbered
        ref_v_start = np.array([ref_video[k].start_ns for k in mv])
        worst, near = 0.0, 0
        for a, k in zip(audio, ma, strict=True):
            ref_a = ref_audio[k]
            n = int(np.argmin(np.abs(ref_v_start - ref_a.start_ns)))  # nearest live frame in media time
            live_rel = a.start_ns - video[n].start_ns
            ref_rel = ref_a.start_ns - ref_video[mv[n]].start_ns
            bound = MAX_SLEW * abs(ref_rel) + 20_000  # + rounding of the integer ns
            worst = max(worst, abs(live_rel - ref_rel) / bound)
            if abs(ref_rel) <= 20_000_000:
                near = max(near, abs(live_rel - ref_rel))
        assert worst <= 1.0, f"u{i}: A/V relation off by {worst:.2f} x the slew bound"
        assert near <= 1_000_000, f"u{i}: A/V relation off by {near / 1e6:.3f} ms within 20 ms"
