"""The token rate on real media: a clip with B-frames decoded with skip_frame (the kept frames equal
a full decode's), a live MPEG-TS stream served by ffmpeg on loopback at token_fps 5 (a frame every
200 ms of capture time, exact counts), and the daemon's books and packets for such a stream."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import av
import numpy as np
import pytest
from mediagen import ffmpeg
from requires import require
from streamgen import Collector, free_port, serve_http, wait_until

from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking
from livetok.media.decode import ticks_to_ns
from livetok.runtime.backoff import BackoffPolicy
from livetok.streams.av_source import AvSource, AvSourceOptions
from livetok.streams.handoff import Handoff
from livetok.streams.types import SourceStats, VideoCapture
from livetok.wire import Modality, Scale, TokenPacket, read_ltk

NS = 1_000_000_000
MS = 1_000_000
SLOT = 200 * MS  # token_fps 5
FAST = BackoffPolicy(initial_s=0.2, max_s=1.0, stable_s=1.0)


@pytest.fixture(scope="module")
def bclip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of 320x240 at 30 fps, H.264 with up to 3 B-frames between references (x264 veryfast keeps
    most of them non-reference: what skip_frame=NONREF discards), a keyframe every 2 s."""
    require("ffmpeg")
    path = tmp_path_factory.mktemp("rate") / "b.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=4", "-c:v", "libx264", "-preset", "veryfast",
           "-bf", "3", "-g", "60", "-pix_fmt", "yuv420p", str(path))
    return path


@pytest.fixture(scope="module")
def mjpeg_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of 320x240 at 30 fps in MJPEG (what a USB webcam sends): every frame intra."""
    require("ffmpeg")
    path = tmp_path_factory.mktemp("rate") / "m.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=4", "-c:v", "mjpeg", "-q:v", "5",
           "-pix_fmt", "yuvj420p", str(path))
    return path


def no_b_clip(tmp_path_factory: pytest.TempPathFactory, gop: int) -> Path:
    """4 s of 320x240 at 30 fps, H.264 without B-frames (like most IP cameras), a keyframe every ``gop``
    frames, each an IDR (x264's default without open GOP)."""
    require("ffmpeg")
    path = tmp_path_factory.mktemp("rate") / f"g{gop}.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=4", "-c:v", "libx264", "-preset", "veryfast",
           "-bf", "0", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-pix_fmt", "yuv420p", str(path))
    return path


@pytest.fixture(scope="module")
def gop30(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return no_b_clip(tmp_path_factory, 30)


@pytest.fixture(scope="module")
def gop5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return no_b_clip(tmp_path_factory, 5)


@pytest.fixture(scope="module")
def gop60(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return no_b_clip(tmp_path_factory, 60)


def full_decode(path: Path) -> dict[int, np.ndarray]:
    """Every frame of the clip, decoded with nothing skipped, by media time (ns)."""
    out = {}
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            assert f.pts is not None and f.time_base is not None
            out[ticks_to_ns(f.pts, f.time_base)] = f.to_ndarray(format="rgb24")
    return out


def rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")  # full size: any decoding difference shows


def run_to_end(path: Path, token_fps: float) -> tuple[list[VideoCapture], SourceStats]:
    video: Handoff[VideoCapture] = Handoff(1000)
    stats = SourceStats()
    src = AvSource("cam", str(path), AvSourceOptions(realtime=False, want_audio=False, token_fps=token_fps), rgb,
                   video, None, stats)
    src.start()
    assert wait_until(lambda: not src.alive, 60.0)
    caps = []
    while (c := video.get_nowait()) is not None:
        caps.append(c)
    return caps, stats


@pytest.mark.slow
@pytest.mark.parametrize(("token_fps", "every"), [(5, 6), (1, 30), (10, 3)])
def test_skip_frame_keeps_the_kept_frames_exact(bclip: Path, token_fps: float, every: int) -> None:
    """Frames whose slot is already held are decoded with skip_frame=NONREF: the non-reference ones
    are never decoded (counted in ``undecoded``), and every frame handed over equals, pixel for
    pixel, the full decode's frame of the same time."""
    assert check_exact(bclip, token_fps, every).undecoded > 0  # the decoder did skip some


@pytest.mark.slow
def test_an_intra_only_stream_decodes_only_its_token_frames(mjpeg_clip: Path) -> None:
    """MJPEG: no frame refers to another, so a frame the rate skips is not even given to the decoder."""
    stats = check_exact(mjpeg_clip, 5, 6)
    # all but those sent to the decoder before its first frame came out (the slots start there)
    assert stats.skipped_by_rate == 100 and 98 <= stats.undecoded <= 100


@pytest.mark.slow
def test_keyframes_every_slot_skip_decoding_whole_runs(gop30: Path, gop5: Path, gop60: Path) -> None:
    """Keyframes at least once a slot, no B-frames: the frames after each kept one are held undecoded
    and dropped at the next keyframe (what skip_frame=NONKEY would save, without ever decoding a frame
    whose references were skipped); the kept frames still equal a full decode's."""
    stats = check_exact(gop30, 1, 30)  # a keyframe every second, a token frame every second
    assert stats.undecoded == 87  # all but the first second (the keyframe interval is learnt there) and 3 keyframes
    stats = check_exact(gop5, 5, 6)  # a keyframe every 5 frames, a slot every 6
    assert stats.undecoded > 40  # the frames between a kept one and the next keyframe: most of the rest
    # keyframes 2 s apart do not fit a 1 s slot: nothing held, every (reference) frame decoded
    assert check_exact(gop60, 1, 30).undecoded == 0


def check_exact(clip: Path, token_fps: float, every: int) -> SourceStats:
    full = full_decode(clip)
    assert len(full) == 120
    caps, stats = run_to_end(clip, token_fps)
    times = sorted(full)
    assert [c.media_ns for c in caps] == times[::every]  # one per slot: the first frame of each
    for c in caps:
        assert np.array_equal(c.image, full[c.media_ns]), c.media_ns
    assert stats.frames == len(caps) == math.ceil(120 / every)
    assert stats.frames + stats.skipped_by_rate == 120  # every frame in the books
    assert 0 <= stats.undecoded <= stats.skipped_by_rate
    assert stats.nominal_fps == 30.0 and stats.errors == 0
    assert all(c.duration_ns == NS // token_fps for c in caps)  # a token frame stands for its slot
    return stats


@pytest.fixture(scope="module")
def live_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s of 320x240 at 30 fps H.264 in MPEG-TS, no B-frames (a typical IP camera's stream)."""
    require("ffmpeg")
    path = tmp_path_factory.mktemp("live") / "live.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=10", "-c:v", "libx264", "-preset",
           "ultrafast", "-g", "30", "-pix_fmt", "yuv420p", str(path))
    return path


@pytest.mark.slow
def test_a_live_stream_at_5_fps_gives_a_frame_every_200_ms_of_capture_time(live_clip: Path) -> None:
    port = free_port()
    server = serve_http(live_clip, port)
    video: Handoff[VideoCapture] = Handoff(512)
    stats = SourceStats()
    src = AvSource("cam", f"http://127.0.0.1:{port}/live.ts", AvSourceOptions(backoff=FAST, want_audio=False,
                                                                              token_fps=5),
                   lambda f: f.to_ndarray(format="rgb24")[:8, :8], video, None, stats)
    try:
        src.start()
        frames = Collector(video)
        assert wait_until(lambda: frames.count() >= 15, 30.0)
        assert src.stop()
        caps = frames.close()
    finally:
        server.stop()
    assert stats.connects == 1 and stats.reconnects == 0 and stats.dropped_frames == 0
    times = [c.media_ns for c in caps]
    # the grid: exactly one slot apart (90 kHz ticks: 18000 per 200 ms), no slot left out
    assert {b - a for a, b in itertools.pairwise(times)} == {SLOT}
    captured = stats.frames + stats.skipped_by_rate
    assert stats.frames == len(caps) == math.ceil(captured / 6)  # 30 fps: the first of every 6
    assert stats.nominal_fps == 30.0


@pytest.mark.slow
def test_the_daemon_books_and_packets_at_5_fps(live_clip: Path, tmp_path: Path) -> None:
    """``livetok run`` on the live stream with ``token_fps: 5``: the books add up with what the rate
    skipped counted apart from drops, a video packet per token frame, each standing for its 200 ms
    slot and starting one slot after the one before."""
    port = free_port()
    server = serve_http(live_clip, port)
    out = tmp_path / "rate.ltk"
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "stream", "name": "cam", "url": f"http://127.0.0.1:{port}/live.ts", "audio": False,
                     "token_fps": 5}],
        "sinks": [{"kind": "file", "path": str(out)}],
    })
    try:
        report = run_blocking(cfg, 5.0)
    finally:
        server.stop()
    row = report.accounting["captures"]["cam.video"]
    assert report.balanced, report.accounting
    assert row["captured"] == (row["skipped_by_rate"] + row["tokenized"] + row["dropped_queue"] + row["failed"]
                               + row["dropped_shutdown"])
    assert row["tokenized"] > 5 and row["dropped_queue"] == row["failed"] == row["dropped_shutdown"] == 0
    assert row["tokenized"] == math.ceil(row["captured"] / 6)
    gauges = report.metrics["gauges"]
    assert isinstance(gauges, dict)
    assert gauges["source.cam.nominal_fps"] == 30.0 and gauges["source.cam.skipped_by_rate"] == row["skipped_by_rate"]
    packets = [p for p in read_ltk(out).packets
               if isinstance(p, TokenPacket) and p.modality == Modality.VIDEO and p.scale == Scale.FINE]
    assert len(packets) == row["tokenized"]
    assert {p.end_ns - p.start_ns for p in packets} == {SLOT}
    steps = [b.start_ns - a.start_ns for a, b in itertools.pairwise(packets)]
    # Mapped to the host clock: exactly a slot apart, except where the source's clock model corrects
    # its mapping by a few ms (seen: one step of 195.8 ms while a network clock settles): no slot is
    # left out or doubled anywhere.
    assert all(abs(d - SLOT) < SLOT // 4 for d in steps), steps
    assert sum(d == SLOT for d in steps) >= len(steps) * 3 // 4, steps


def test_the_synthetic_source_draws_only_its_token_frames() -> None:
    """The synthetic source (a camera and a microphone in one) applies the rate before drawing a frame."""
    from livetok.streams.synthetic import SyntheticOptions, SyntheticSource

    drawn: list[int] = []

    def prepare(frame: av.VideoFrame) -> np.ndarray:
        drawn.append(1)
        return np.zeros((4, 4, 3), np.uint8)

    video: Handoff[VideoCapture] = Handoff(1000)
    stats = SourceStats()
    src = SyntheticSource("syn", SyntheticOptions(width=64, height=48, fps=30, realtime=False, duration_s=2.0,
                                                  token_fps=5), prepare, video, None, stats)
    src.start()
    assert wait_until(lambda: not src.alive, 30.0)
    caps = []
    while (c := video.get_nowait()) is not None:
        caps.append(c)
    assert [c.media_ns for c in caps] == [i * SLOT for i in range(10)]
    assert len(drawn) == stats.frames == 10 and stats.skipped_by_rate == 50
    assert stats.nominal_fps == 30.0 and all(c.duration_ns == SLOT for c in caps)
