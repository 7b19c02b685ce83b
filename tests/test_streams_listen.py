"""A listening source (UDP) against a live camera that starts late or goes quiet between bursts:
the wait is reported, the socket stays open, and every frame the camera sent is received.

The camera is ``tests/livesender.py``: 320x240@30 H.264 + AAC, a keyframe every 2 s, a white frame
and a 1 kHz beep every second, encoded as captured. Before the listener kept its socket, a wait
longer than the open or read timeout closed it and reopened it: what came meanwhile was lost, and
then everything up to the next keyframe.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
from requires import require
from streamgen import Collector, LiveCamera, free_port, wait_until
from test_streams_av import prepare

from livetok.runtime.backoff import BackoffPolicy
from livetok.streams.av_source import AvSource, AvSourceOptions
from livetok.streams.handoff import Handoff
from livetok.streams.types import AudioCapture, SourceState, SourceStats, VideoCapture
from livetok.sync import BeepDetector

pytestmark = pytest.mark.slow  # every test here runs a live daemon, broker, stream or subprocess

FAST = BackoffPolicy(initial_s=0.2, max_s=0.5, jitter=0.0, stable_s=1.0)
FRAME_NS = 1_000_000_000 // 30
# FFmpeg's MPEG-TS demuxer hands a video frame over once the next frame's data has begun (a PES
# without a length ends where the next starts, then the H.264 parser waits for the next access
# unit): when a camera stops, its last two frames wait in the demuxer for its next packets.
TAIL = 2


class Listener:
    """An AvSource on udp://127.0.0.1:PORT with short timeouts (a wait longer than them is the test)."""

    def __init__(self, port: int) -> None:
        self.stats = SourceStats()
        self.video: Handoff[VideoCapture] = Handoff(4096)
        self.audio: Handoff[AudioCapture] = Handoff(8192)
        opts = AvSourceOptions(format="mpegts", open_timeout_s=0.5, read_timeout_s=0.5, backoff=FAST)
        self.source = AvSource("cam", f"udp://127.0.0.1:{port}", opts, prepare, self.video, self.audio, self.stats)
        self.states: list[SourceState] = []
        self.source.start()
        self.frames, self.blocks = Collector(self.video), Collector(self.audio)

    def note_state(self) -> bool:
        if not self.states or self.states[-1] is not self.stats.state:
            self.states.append(self.stats.state)
        return False

    def stop(self) -> tuple[list[VideoCapture], list[AudioCapture]]:
        assert self.source.stop()
        return self.frames.close(), self.blocks.close()


def markers(frames: list[VideoCapture], blocks: list[AudioCapture]) -> tuple[int, int]:
    """(flashes, beeps) in what was received: white frames, and 1 kHz onsets in the audio."""
    flashes = sum(1 for f in frames if float(f.image.mean()) > 200)
    beep = BeepDetector()
    beeps = sum(len(beep.feed_all(b.samples.mean(axis=0), b.media_ns, b.rate)) for b in blocks)
    return flashes, beeps


def check_everything_received(frames: list[VideoCapture], truth: dict[str, object], pause_frames: int = 0) -> None:
    """Every frame the camera sent (but the last two, still in the demuxer), in order: one per 1/30 s
    of media time, but across its pause."""
    assert len(frames) == truth["frames_sent"] - TAIL, (len(frames), truth)
    steps = np.round(np.diff([f.media_ns for f in frames]) / FRAME_NS).astype(int).tolist()
    assert [s for s in steps if s != 1] == ([pause_frames + 1] if pause_frames else [])


def test_a_sender_that_starts_late_is_waited_for_and_nothing_is_lost(tmp_path: Path) -> None:
    require("ffmpeg")
    port = free_port(socket.SOCK_DGRAM)
    listener = Listener(port)
    try:
        assert wait_until(lambda: listener.stats.state is SourceState.WAITING, 10.0)
        time.sleep(2.5)  # the scenario: the camera comes up well after both timeouts (0.5 s) have passed
        assert listener.stats.state is SourceState.WAITING and listener.stats.connects == 0
        camera = LiveCamera(port, tmp_path, 3.0)
        assert wait_until(lambda: listener.stats.state is SourceState.RUNNING, 20.0)
        truth = camera.finish()
        assert wait_until(lambda: listener.frames.count() >= truth["frames_sent"] - TAIL, 10.0)
    finally:
        frames, blocks = listener.stop()
    check_everything_received(frames, truth)
    assert markers(frames, blocks) == (3, 3)  # at 0, 1 and 2 s: the very first flash included
    st = listener.stats
    assert (st.connects, st.reconnects, st.stalls, st.errors) == (1, 0, 0, 0), st
    assert st.dropped_frames == 0 and st.dropped_blocks == 0


def test_a_pause_between_bursts_is_a_wait_not_a_reconnect(tmp_path: Path) -> None:
    """The camera sends 1.5 s, is silent 2 s (four read timeouts), then sends again from the middle of
    a group of pictures (frame 105; keyframes every 60): a reopened socket would have lost every
    frame until frame 120."""
    require("ffmpeg")
    port = free_port(socket.SOCK_DGRAM)
    listener = Listener(port)
    try:
        assert wait_until(lambda: listener.stats.state is SourceState.WAITING, 10.0)
        camera = LiveCamera(port, tmp_path, 5.0, "--pause-at", "1.5", "--pause-s", "2.0")
        assert wait_until(lambda: listener.stats.state is SourceState.RUNNING, 20.0)
        # During the pause the source says it waits (the polling only notes the state as it goes).
        assert wait_until(lambda: listener.note_state() or listener.stats.waits >= 1, 20.0)
        assert wait_until(lambda: listener.note_state() or listener.stats.state is SourceState.RUNNING, 20.0)
        truth = camera.finish()
        assert wait_until(lambda: listener.frames.count() >= truth["frames_sent"] - TAIL, 10.0)
    finally:
        frames, blocks = listener.stop()
    assert truth["frames_sent"] == 150 - 60  # 2 s of 30 fps not captured
    check_everything_received(frames, truth, pause_frames=60)
    assert markers(frames, blocks) == (3, 3)  # 0, 1 and 4 s (2 and 3 s fell in the pause)
    st = listener.stats
    assert (st.connects, st.reconnects, st.stalls, st.errors, st.waits) == (1, 0, 0, 0, 1), st
    assert SourceState.WAITING in listener.states


@pytest.mark.parametrize("stop_when", ["waiting", "between bursts"])
def test_stop_ends_a_listeners_untimed_wait_at_once(tmp_path: Path, stop_when: str) -> None:
    port = free_port(socket.SOCK_DGRAM)
    listener = Listener(port)
    if stop_when == "between bursts":
        camera = LiveCamera(port, tmp_path, 1.0)
        camera.finish()
        assert wait_until(lambda: listener.stats.waits >= 1, 20.0)
    else:
        assert wait_until(lambda: listener.stats.state is SourceState.WAITING, 10.0)
    assert listener.source.stop(timeout_s=5.0)  # the interrupt ended it: its wait has no timeout
    assert listener.stats.state is SourceState.STOPPED
    listener.frames.close()
    listener.blocks.close()
