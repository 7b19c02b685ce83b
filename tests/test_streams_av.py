"""AvSource against real sources: lavfi, files played as live, and ffmpeg serving live MPEG-TS over
UDP and HTTP and RTSP (through rtsp-server-perl) on loopback."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from requires import require
from streamgen import Collector, RtspRelay, free_port, make_clip, serve_http, serve_rtp, serve_udp, wait_until

from livetok.media.frames import to_model_image
from livetok.runtime.backoff import BackoffPolicy
from livetok.streams.av_source import (
    AvSource,
    AvSourceOptions,
    SourceKind,
    effective_av_options,
    is_listening,
    source_kind,
)
from livetok.streams.handoff import Handoff
from livetok.streams.types import AudioCapture, SourceState, SourceStats, VideoCapture
from livetok.tokenizers import TokenizerConfig

VIDEO = TokenizerConfig().video
FAST = BackoffPolicy(initial_s=0.2, max_s=1.0, stable_s=1.0)
NS = 1_000_000_000


def prepare(frame: av.VideoFrame) -> np.ndarray:
    return to_model_image(frame, VIDEO.size, VIDEO.aspect)


class TimedPrepare:
    """``prepare`` that notes when the source released each frame to it (monotonic ns)."""

    def __init__(self) -> None:
        self.times: list[int] = []

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        self.times.append(time.monotonic_ns())
        return prepare(frame)


def check_paced(frames: list[VideoCapture], released: list[int]) -> None:
    """No frame was released before its media time, counted on the monotonic clock from the first.

    The pacer anchors on the first frame just before releasing it, so the only slack is the few
    microseconds between its anchor and the first release (1 ms allowed).
    """
    assert len(released) == len(frames)
    for f, t in zip(frames[1:], released[1:], strict=True):
        assert t - released[0] >= f.media_ns - frames[0].media_ns - 1_000_000


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require("ffmpeg")
    d = tmp_path_factory.mktemp("live")
    return {"ts": make_clip(d / "clip.ts", 4.0), "mp4": make_clip(d / "clip.mp4", 4.0),
            "short": make_clip(d / "short.mp4", 1.0)}


class Run:
    """A started AvSource with collectors on both handoffs."""

    def __init__(self, url: str, options: AvSourceOptions, audio: bool = True) -> None:
        self.video: Handoff[VideoCapture] = Handoff(512)
        self.audio: Handoff[AudioCapture] | None = Handoff(2048) if audio else None
        self.stats = SourceStats()
        self.prepare = TimedPrepare()
        self.source = AvSource("cam", url, options, self.prepare, self.video, self.audio, self.stats)
        self.source.start()
        self.frames = Collector(self.video)
        self.blocks = Collector(self.audio) if self.audio is not None else None

    def wait(self, predicate: Callable[[Run], bool], timeout_s: float = 20.0) -> bool:
        return wait_until(lambda: predicate(self), timeout_s)

    def stop(self) -> tuple[list[VideoCapture], list[AudioCapture]]:
        assert self.source.stop(), "the capture thread did not end"
        assert self.stats.state is SourceState.STOPPED
        frames = self.frames.close()
        blocks = self.blocks.close() if self.blocks is not None else []
        return frames, blocks


def n_frames(at_least: int, blocks: int = 0) -> Callable[[Run], bool]:
    def ok(r: Run) -> bool:
        return r.frames.count() >= at_least and (r.blocks is None or r.blocks.count() >= blocks)
    return ok


def increasing(values: list[int]) -> bool:
    return all(b > a for a, b in itertools.pairwise(values))


def check_video(frames: list[VideoCapture], at_least: int) -> None:
    assert len(frames) >= at_least
    assert all(f.image.shape == (VIDEO.size, VIDEO.size, 3) and f.image.dtype == np.uint8 for f in frames)
    assert increasing([f.media_ns for f in frames])
    assert all(b.arrival_ns >= a.arrival_ns for a, b in itertools.pairwise(frames))
    assert frames[0].discontinuity  # the first capture after a connect
    assert frames[0].source == "cam"
    assert frames[0].duration_ns == NS // 25  # the clips are 25 fps
    assert float(np.std(frames[-1].image)) > 10  # a picture, not a blank


def check_audio(blocks: list[AudioCapture], at_least: int, rate: int = 48000, channels: int = 2) -> None:
    assert len(blocks) >= at_least
    assert all(b.samples.dtype == np.float32 and b.samples.ndim == 2 for b in blocks)
    assert {b.samples.shape[0] for b in blocks} == {channels}
    assert {b.rate for b in blocks} == {rate}
    assert increasing([b.media_ns for b in blocks])
    assert blocks[0].discontinuity
    x = np.concatenate([b.samples[0] for b in blocks])
    assert 0.05 < float(np.max(np.abs(x))) <= 1.01  # the clip's tone, decoded (AAC may overshoot a hair)


def test_source_kinds_and_timeout_options() -> None:
    assert source_kind("clip.mp4", None) is SourceKind.FILE
    assert source_kind("testsrc2", "lavfi") is SourceKind.GENERATED
    assert source_kind("/dev/video0", None) is SourceKind.DEVICE
    assert source_kind("rtsp://h/cam", None) is SourceKind.NETWORK
    o = AvSourceOptions(read_timeout_s=3.0)
    assert effective_av_options("rtsp://h/cam", o) == {"timeout": "4000000"}
    assert effective_av_options("http://h/x.ts", o) == {"rw_timeout": "4000000"}
    # A listener waits for its sender however long it takes: no socket timeout.
    assert effective_av_options("udp://127.0.0.1:5000", o) == {"overrun_nonfatal": "1"}
    assert effective_av_options("srt://:9000?mode=listener", o) == {}
    assert effective_av_options("http://h/x.ts", AvSourceOptions(av_options={"rw_timeout": "5"})) == {"rw_timeout": "5"}
    assert effective_av_options("clip.mp4", o) == {}


@pytest.mark.parametrize(("url", "options", "listening"), [
    ("udp://127.0.0.1:5000", {}, True), ("udp://@:5000", {}, True), ("rtp://127.0.0.1:5004", {}, True),
    ("srt://:9000?mode=listener", {}, True), ("srt://cam:9000", {"mode": "listener"}, True),
    ("srt://cam:9000", {}, False), ("srt://cam:9000?mode=caller", {}, False),
    ("tcp://0.0.0.0:9000?listen=1", {}, True), ("tcp://cam:9000", {}, False), ("tcp://cam:9000?listen=0", {}, False),
    ("http://0.0.0.0:8080/live.ts", {"listen": "1"}, True), ("http://cam/live.ts", {}, False),
    ("rtsp://0.0.0.0:8554/cam", {"rtsp_flags": "listen"}, True), ("rtsp://cam/x", {"rtsp_flags": "prefer_tcp"}, False),
    ("clip.mp4", {}, False), ("/dev/video0", {}, False),
])
def test_which_sources_listen(url: str, options: dict[str, str], listening: bool) -> None:
    assert is_listening(url, options) is listening


@pytest.mark.slow
def test_lavfi_is_paced_and_has_the_model_shape() -> None:
    run = Run("testsrc2=size=320x240:rate=25", AvSourceOptions(format="lavfi"), audio=False)
    assert run.wait(n_frames(15))
    frames, _ = run.stop()
    check_video(frames, 15)
    check_paced(frames, run.prepare.times)


@pytest.mark.slow
def test_file_played_as_live(clips: dict[str, Path]) -> None:
    run = Run(str(clips["mp4"]), AvSourceOptions())
    assert run.source.realtime
    assert run.wait(n_frames(25, 40))
    frames, blocks = run.stop()
    check_video(frames, 25)
    check_audio(blocks, 40)
    # Media time and arrival advance together: pacing never runs ahead of the monotonic clock.
    assert frames[-1].media_ns - frames[0].media_ns >= NS * 2 // 3
    check_paced(frames, run.prepare.times)
    assert run.stats.frames == len(frames) and run.stats.blocks == len(blocks)
    assert run.stats.dropped_frames == 0 and run.stats.connects == 1 and run.stats.reconnects == 0


def test_file_unpaced_ends_by_itself(clips: dict[str, Path]) -> None:
    run = Run(str(clips["short"]), AvSourceOptions(realtime=False))
    assert wait_until(lambda: not run.source.alive, 20.0)  # a file without loop ends: the thread finishes
    frames, blocks = run.stop()
    assert len(frames) == 25  # 1 s at 25 fps, every frame
    check_video(frames, 25)
    check_audio(blocks, 40)
    assert run.stats.errors == 0 and run.stats.reconnects == 0


@pytest.mark.slow
def test_file_loop_flags_discontinuity_and_media_time_continues(clips: dict[str, Path]) -> None:
    run = Run(str(clips["short"]), AvSourceOptions(loop=True))
    assert run.wait(lambda r: r.stats.loops >= 1 and r.frames.count() >= 35)
    frames, blocks = run.stop()
    assert increasing([f.media_ns for f in frames])  # continues across the wrap
    flagged = [i for i, f in enumerate(frames) if f.discontinuity]
    assert flagged[0] == 0 and len(flagged) >= 2
    wrap = frames[flagged[1]]
    assert 900_000_000 <= wrap.media_ns - frames[0].media_ns <= 1_100_000_000  # after one clip length
    assert sum(b.discontinuity for b in blocks) >= 2
    assert run.stats.loops >= 1 and run.stats.gaps >= 1 and run.stats.reconnects == 0


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["udp", "rtp"])
def test_udp_and_rtp_mpegts(clips: dict[str, Path], scheme: str) -> None:
    port = free_port(socket.SOCK_DGRAM)
    server = (serve_udp if scheme == "udp" else serve_rtp)(clips["ts"], port)
    try:
        run = Run(f"{scheme}://127.0.0.1:{port}", AvSourceOptions(backoff=FAST))
        assert not run.source.realtime  # live: the network paces it
        assert run.wait(n_frames(20, 30))
        frames, blocks = run.stop()
    finally:
        server.stop()
    check_video(frames, 20)
    check_audio(blocks, 30)


@pytest.mark.slow
def test_http_mpegts(clips: dict[str, Path]) -> None:
    port = free_port()
    server = serve_http(clips["ts"], port)
    try:
        run = Run(f"http://127.0.0.1:{port}/live.ts", AvSourceOptions(backoff=FAST))
        assert run.wait(n_frames(20, 30))
        frames, blocks = run.stop()
    finally:
        server.stop()
    check_video(frames, 20)
    check_audio(blocks, 30)
    assert run.stats.connects == 1


@pytest.mark.slow
def test_rtsp_over_udp(clips: dict[str, Path]) -> None:
    require("rtsp-server-perl")
    relay = RtspRelay(clips["mp4"])
    try:
        # The relay answers 404 until ffmpeg has announced the stream: the source retries.
        run = Run(relay.url, AvSourceOptions(av_options={"rtsp_transport": "udp"}, open_timeout_s=10.0, backoff=FAST))
        assert run.wait(n_frames(20, 30), 30.0), run.stats
        frames, blocks = run.stop()
    finally:
        relay.stop()
    check_video(frames, 20)
    check_audio(blocks, 30)
