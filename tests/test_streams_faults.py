"""AvSource faults against real servers: a source that stalls with its socket open, one that dies
and comes back, one that never opens; and stop() in every state."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from requires import require
from streamgen import Collector, StallingHttpServer, free_port, make_clip, serve_http, serve_udp, wait_until
from test_streams_av import Run, prepare

from livetok.runtime.backoff import BackoffPolicy
from livetok.streams.av_source import AvSource, AvSourceOptions
from livetok.streams.handoff import Handoff
from livetok.streams.pacing import Pacer
from livetok.streams.types import SourceState, SourceStats, VideoCapture

FAST = BackoffPolicy(initial_s=0.2, max_s=0.5, jitter=0.0, stable_s=1.0)
SLOW = BackoffPolicy(initial_s=30.0, max_s=30.0, jitter=0.0)  # stays in BACKOFF for the whole test
QUICK = BackoffPolicy(initial_s=0.05, max_s=0.1, jitter=0.0)


@pytest.fixture(scope="module")
def clip_ts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require("ffmpeg")
    return make_clip(tmp_path_factory.mktemp("faults") / "clip.ts", 4.0)


def quiet(frames: Collector, for_s: float, timeout_s: float = 20.0) -> bool:
    """Wait until no frame has come for ``for_s`` seconds."""
    seen = [frames.count(), time.monotonic()]

    def still() -> bool:
        n, now = frames.count(), time.monotonic()
        if n != seen[0]:
            seen[:] = [n, now]
        return now - seen[1] >= for_s
    return wait_until(still, timeout_s)


@pytest.fixture()
def stalling(clip_ts: Path) -> Iterator[StallingHttpServer]:
    """Sends the first quarter of the clip, then nothing, socket open."""
    data = clip_ts.read_bytes()
    server = StallingHttpServer(data[: len(data) // 4])
    yield server
    server.close()


@pytest.mark.slow
def test_stall_with_socket_open_is_detected(stalling: StallingHttpServer) -> None:
    """Counted once, after the server's last byte and every frame its data held; then backoff, where
    stop() ends the thread. (How soon, in figures: bench/bench_stall.py, docs/performance.md.)"""
    opts = AvSourceOptions(read_timeout_s=1.0, backoff=BackoffPolicy(initial_s=5.0, max_s=5.0, jitter=0.0))
    run = Run(stalling.url, opts)
    assert run.wait(lambda r: r.frames.count() >= 5)  # connected, data flowed, then the server went silent
    assert run.wait(lambda r: r.stats.stalls >= 1, 10.0)
    noticed_ns, captured = time.monotonic_ns(), run.video.put_count
    assert stalling.sent_ns < noticed_ns
    assert run.stats.state is SourceState.BACKOFF
    assert "stalled" in run.stats.last_error and stalling.url in run.stats.last_error
    assert run.source.alive
    frames, _ = run.stop()  # in backoff: the thread ends (Run.stop asserts it)
    assert len(frames) == captured == run.video.put_count  # all captured before the stall, none after
    assert run.stats.connects == 1 and run.stats.stalls == 1 and run.stats.reconnects == 0


@pytest.mark.slow
def test_stop_interrupts_a_blocked_read(stalling: StallingHttpServer) -> None:
    # Read and open timeouts far longer than the test: only the interrupt can end the read.
    opts = AvSourceOptions(read_timeout_s=120.0, open_timeout_s=120.0, backoff=FAST)
    video: Handoff[VideoCapture] = Handoff(512)
    stats = SourceStats()
    source = AvSource("cam", stalling.url, opts, prepare, video, None, stats)
    source.start()
    frames = Collector(video)
    assert wait_until(lambda: frames.count() >= 5, 20.0)
    assert quiet(frames, 0.5)  # all the data is decoded: the thread is blocked reading a silent socket
    assert stats.state is SourceState.RUNNING
    assert source.stop(timeout_s=5.0)  # ended long before the 120 s read timeout
    assert stats.state is SourceState.STOPPED and stats.stalls == 0
    frames.close()


def test_stop_interrupts_a_blocked_open() -> None:
    server = StallingHttpServer(b"")  # a header, then silence: probing the stream blocks
    try:
        stats = SourceStats()
        source = AvSource("cam", server.url, AvSourceOptions(open_timeout_s=120.0, read_timeout_s=120.0),
                          prepare, Handoff(4), None, stats)
        source.start()
        assert wait_until(lambda: server.sent_ns > 0, 10.0)  # it has the header: probing blocks on silence
        assert stats.state is SourceState.CONNECTING
        assert source.stop(timeout_s=5.0)
        assert stats.state is SourceState.STOPPED
    finally:
        server.close()


@pytest.mark.slow
def test_open_that_times_out_is_a_stall_and_retried() -> None:
    server = StallingHttpServer(b"")
    try:
        stats = SourceStats()
        source = AvSource("cam", server.url, AvSourceOptions(open_timeout_s=0.5, backoff=FAST),
                          prepare, Handoff(4), None, stats)
        source.start()
        assert wait_until(lambda: stats.stalls >= 2 and stats.reconnects >= 1, 15.0)
        assert server.connections >= 2  # it came back and tried again
        assert source.stop()
    finally:
        server.close()


def test_unopenable_source_is_counted_and_retried(tmp_path: Path) -> None:
    stats = SourceStats()
    missing = tmp_path / "missing.mp4"
    source = AvSource("cam", str(missing), AvSourceOptions(backoff=FAST), prepare, Handoff(4), None, stats)
    source.start()
    assert wait_until(lambda: stats.errors >= 2 and stats.reconnects >= 1, 10.0)
    assert str(missing) in stats.last_error and "\n" not in stats.last_error
    assert source.alive  # a fault never ends the thread
    assert source.stop() and stats.state is SourceState.STOPPED


def test_stop_in_backoff_and_before_start_and_twice() -> None:
    stats = SourceStats()
    port = free_port()  # nothing listens: connection refused, then a 30 s backoff
    source = AvSource("cam", f"http://127.0.0.1:{port}/x.ts", AvSourceOptions(backoff=SLOW), prepare,
                      Handoff(4), None, stats)
    assert source.stop()  # never started
    source2 = AvSource("cam", f"http://127.0.0.1:{port}/x.ts", AvSourceOptions(backoff=SLOW), prepare,
                       Handoff(4), None, stats)
    source2.start()
    assert wait_until(lambda: stats.state is SourceState.BACKOFF, 10.0)
    assert "Connection refused" in stats.last_error
    assert source2.stop(timeout_s=3.0)
    assert source2.stop()
    assert stats.state is SourceState.STOPPED


def test_stop_interrupts_pacing(monkeypatch: pytest.MonkeyPatch) -> None:
    # One frame every 5 s, paced: the thread spends its time waiting for the next frame's media time.
    pacing = threading.Event()
    real_wait = Pacer.wait
    calls = itertools.count(1)

    def noted(self: Pacer, media_ns: int) -> bool:
        if next(calls) >= 2:  # the second frame: 5 s ahead of the first
            pacing.set()
        return real_wait(self, media_ns)

    monkeypatch.setattr(Pacer, "wait", noted)
    run = Run("testsrc2=size=64x64:rate=0.2", AvSourceOptions(format="lavfi"), audio=False)
    assert run.wait(lambda r: r.frames.count() >= 1, 10.0)
    assert pacing.wait(10.0)
    assert run.source.stop(timeout_s=3.0)
    frames, _ = run.stop()
    assert len(frames) == 1


@pytest.mark.slow
def test_udp_sender_dies_then_comes_back_on_the_same_socket(clip_ts: Path) -> None:
    """A UDP source listens: its sender dying is a wait (reported), not a stall; the socket stays
    open and the sender's return is read on it, flagged as the discontinuity it is."""
    port = free_port(socket.SOCK_DGRAM)
    server = serve_udp(clip_ts, port)
    run = Run(f"udp://127.0.0.1:{port}", AvSourceOptions(read_timeout_s=1.0, open_timeout_s=1.5, backoff=FAST))
    try:
        assert run.wait(lambda r: r.frames.count() >= 10)
        server.stop()  # the sender dies: UDP just goes silent
        assert run.wait(lambda r: r.stats.state is SourceState.WAITING and r.stats.waits == 1, 15.0)
        t_back = time.monotonic_ns()
        server = serve_udp(clip_ts, port)
        assert run.wait(lambda r: r.frames.count(lambda f: f.arrival_ns > t_back) >= 10, 20.0)
        assert run.stats.state is SourceState.RUNNING
        frames, blocks = run.stop()
    finally:
        server.stop()
        run.source.stop()
    # The new sender's timestamps start again: the first frame and block of it are flagged, nothing
    # else after the first (MPEG-TS hands over a stream's last frame only when the next data comes:
    # the old sender's last frames arrive with the new sender's first packets).
    restart = next(i for i in range(1, len(frames)) if frames[i].media_ns < frames[i - 1].media_ns)
    assert frames[restart].arrival_ns > t_back
    assert [i for i, f in enumerate(frames) if f.discontinuity] == [0, restart]
    audio_restart = next(i for i in range(1, len(blocks)) if blocks[i].media_ns < blocks[i - 1].media_ns)
    assert [i for i, b in enumerate(blocks) if b.discontinuity] == [0, audio_restart]
    assert run.stats.connects == 1 and run.stats.reconnects == 0 and run.stats.stalls == 0
    assert run.stats.gaps >= 1


@pytest.mark.slow
def test_http_source_killed_then_restarted(clip_ts: Path, caplog: pytest.LogCaptureFixture) -> None:
    require("ffmpeg")
    caplog.set_level(logging.DEBUG, logger="livetok.streams")
    port = free_port()
    server = serve_http(clip_ts, port)
    run = Run(f"http://127.0.0.1:{port}/live.ts", AvSourceOptions(read_timeout_s=1.0, backoff=FAST))
    try:
        assert run.wait(lambda r: r.frames.count() >= 10)
        server.stop()  # connection closed: end of stream, then connection refused
        assert run.wait(lambda r: r.stats.reconnects >= 2, 15.0)
        assert run.stats.errors >= 2
        t_back = time.monotonic_ns()
        server = serve_http(clip_ts, port)
        assert run.wait(lambda r: r.frames.count(lambda f: f.arrival_ns > t_back) >= 10, 20.0)
        frames, _ = run.stop()
    finally:
        server.stop()
        run.source.stop()
    after = [f for f in frames if f.arrival_ns > t_back]
    assert after[0].discontinuity
    assert run.stats.connects == 2
    # The outage is said once per reason, and its end once.
    warnings = said(caplog, logging.WARNING)
    assert warnings and all(a != b for a, b in itertools.pairwise(warnings)), warnings
    back = said(caplog, logging.INFO)
    assert len(back) == 1 and f"delivering again after {run.stats.errors + run.stats.stalls} failed" in back[0], back


def said(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "livetok.streams" and r.levelno == level and r.getMessage().startswith("cam:")]


@pytest.mark.slow
def test_a_retrying_source_says_each_reason_once(caplog: pytest.LogCaptureFixture) -> None:
    """Retries for one reason are counted, not logged each time (issue 13: "a source retrying prints the
    same line at every retry"): a warning when a reason first appears and when it changes."""
    caplog.set_level(logging.DEBUG, logger="livetok.streams")
    stalling = StallingHttpServer(b"")  # a header, then silence: every open times out
    run = Run(stalling.url, AvSourceOptions(open_timeout_s=0.3, backoff=QUICK))
    try:
        assert run.wait(lambda r: r.stats.stalls >= 4, 20.0)
        stalling.close()  # now nothing listens: connection refused, again and again
        errors = run.stats.errors
        assert run.wait(lambda r: r.stats.errors >= errors + 4, 20.0)
    finally:
        stalling.close()
        run.stop()
    warnings = said(caplog, logging.WARNING)
    assert len(warnings) == 2, warnings
    assert "stalled" in warnings[0] and "Connection refused" in warnings[1]
    assert len([m for m in said(caplog, logging.DEBUG) if "attempt" in m]) >= 6  # the retries, at debug level
