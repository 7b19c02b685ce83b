"""The daemon's core without threads: captures in, aligned steps out, on one clock."""

from __future__ import annotations

import time

import numpy as np
import pytest

from livetok.config import LivetokConfig
from livetok.daemon.engine import Engine
from livetok.streams.types import AudioCapture, VideoCapture
from livetok.tokenizers import Tokenizers
from livetok.wire import AlignedStep, Clock, Modality, Scale, StepFlag, TokenPacket

NS = 1_000_000_000
RATE = 16000
BLOCK = 320  # 20 ms
FRAME_NS = NS // 30


class ListSink:
    def __init__(self) -> None:
        self.items: list[TokenPacket | AlignedStep] = []

    def write(self, packet: TokenPacket | AlignedStep) -> None:
        self.items.append(packet)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def engine(toks: Tokenizers, sources: list[dict[str, object]], **extra: object) -> tuple[Engine, ListSink]:
    cfg = LivetokConfig.model_validate({"sources": sources, **extra})
    sink = ListSink()
    return Engine(cfg, toks, [sink]), sink


def feed(eng: Engine, seconds: float, t0: int | None = None, delay_ns: int = 3_000_000,
         audio_drift: float = 0.0, drop_audio_at: int | None = None) -> None:
    """Frames at 30 fps and 20 ms audio blocks of one 'cam' source, arriving ``delay_ns`` after
    capture (plus jitter), in arrival order; ticks the engine as time passes."""
    t0 = time.monotonic_ns() if t0 is None else t0
    rng = np.random.default_rng(0)
    events: list[tuple[int, object]] = []
    image = np.full((224, 224, 3), 90, np.uint8)
    for i in range(int(seconds * 30)):
        media = i * FRAME_NS
        arrival = t0 + media + delay_ns + int(rng.exponential(1e6))
        events.append((arrival, VideoCapture("cam", image, media, arrival, FRAME_NS, discontinuity=i == 0)))
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(BLOCK) / RATE)).astype(np.float32)[None]
    for j in range(int(seconds * RATE / BLOCK)):
        if drop_audio_at is not None and j == drop_audio_at:
            continue
        media = j * BLOCK * NS // RATE
        end_host = t0 + round((media + BLOCK * NS // RATE) * (1 + audio_drift))
        arrival = end_host + delay_ns + int(rng.exponential(1e6))
        events.append((arrival, AudioCapture("cam", tone, RATE, media, arrival, discontinuity=j == 0)))
    for arrival, item in sorted(events, key=lambda e: e[0]):
        if isinstance(item, VideoCapture):
            eng.on_video([item])
        else:
            assert isinstance(item, AudioCapture)
            eng.on_audio(item)
        eng.tick(arrival)


@pytest.fixture(scope="module")
def run(toks: Tokenizers) -> tuple[Engine, ListSink]:
    eng, sink = engine(toks, [{"kind": "synthetic", "name": "cam"}])
    feed(eng, 3.0, t0=10 * NS)
    eng.flush()
    return eng, sink


def test_steps_hold_four_fine_one_coarse_and_the_frames(run: tuple[Engine, ListSink]) -> None:
    _, sink = run
    steps = [s for s in sink.items if isinstance(s, AlignedStep)]
    assert 30 <= len(steps) <= 38  # 3 s / 80 ms, the last ones flushed
    assert [s.seq for s in steps] == list(range(len(steps)))
    middle = steps[5:-5]
    for s in middle:
        kinds = [(p.modality, p.scale) for p in s.packets]
        assert kinds.count((Modality.AUDIO, Scale.FINE)) == 4
        assert kinds.count((Modality.AUDIO, Scale.COARSE)) == 1
        assert kinds.count((Modality.VIDEO, Scale.FINE)) in (2, 3)  # 80 ms of 30 fps
        assert s.flags == StepFlag.NONE and s.clock == Clock.UNIX
        for p in s.packets:
            mid = (p.start_ns + p.end_ns) // 2 if p.modality == Modality.AUDIO else p.start_ns
            assert s.start_ns <= mid < s.end_ns
            assert p.clock == Clock.UNIX


def test_video_and_audio_of_one_instant_share_a_timestamp(toks: Tokenizers) -> None:
    """Media time 1 s of the source: the video frame and the audio step that start there carry the
    same UNIX time (within the arrival jitter the clock model cannot remove)."""
    eng, sink = engine(toks, [{"kind": "synthetic", "name": "cam"}])
    feed(eng, 1.5)
    packets = [p for p in sink.items if isinstance(p, TokenPacket)]
    frame30 = next(p for p in packets if p.modality == Modality.VIDEO and p.scale == Scale.FINE and p.seq == 30)
    audio50 = next(p for p in packets if p.modality == Modality.AUDIO and p.scale == Scale.FINE and p.seq == 50)
    assert abs(frame30.start_ns - audio50.start_ns) < 2_000_000
    unix_now = time.time_ns()
    assert abs(frame30.start_ns - unix_now) < 3600 * NS  # UNIX epoch, not monotonic


def test_metrics_and_no_late_packets(run: tuple[Engine, ListSink]) -> None:
    eng, _ = run
    snap = eng.metrics.snapshot()
    series = snap["series_ms"]
    assert isinstance(series, dict)
    assert {"latency.video.fine", "latency.audio.fine", "latency.step.cam"} <= set(series)
    assert eng.groups["cam"].aligner.stats.late_packets == 0


def test_missing_audio_gives_late_flagged_steps(toks: Tokenizers) -> None:
    eng, sink = engine(toks, [{"kind": "stream", "name": "cam", "url": "udp://127.0.0.1:1"}])
    image = np.zeros((224, 224, 3), np.uint8)
    for i in range(30):
        eng.on_video([VideoCapture("cam", image, i * FRAME_NS, 10 * NS + i * FRAME_NS, FRAME_NS)])
    eng.tick(10 * NS + 3 * NS)  # long past the lateness bound
    steps = [s for s in sink.items if isinstance(s, AlignedStep)]
    assert steps and all(s.flags & StepFlag.MISSING_AUDIO and s.flags & StepFlag.LATE for s in steps)


def test_lost_audio_block_restarts_the_stream_with_a_gap(toks: Tokenizers) -> None:
    eng, sink = engine(toks, [{"kind": "synthetic", "name": "cam"}])
    feed(eng, 2.0, drop_audio_at=40)  # the block at 0.8 s never arrives
    eng.flush()
    fine = [p for p in sink.items if isinstance(p, TokenPacket) and p.modality == Modality.AUDIO
            and p.scale == Scale.FINE]
    gaps = [p for p in fine if p.flags]
    assert len(gaps) == 1 and gaps[0].seq == 0  # the restarted stream's first packet
    assert eng.metrics.counters["gaps.cam.audio"] == 1
    # no packet claims the lost 20 ms: every fine packet after the gap starts at or after 0.82 s
    t_gap = min(p.start_ns for p in gaps)
    before = [p for p in fine if p.end_ns <= t_gap]
    assert before and max(p.end_ns for p in before) <= t_gap


def test_audio_latency_offset_shifts_audio_only(toks: Tokenizers) -> None:
    a, sa = engine(toks, [{"kind": "synthetic", "name": "cam"}])
    b, sb = engine(toks, [{"kind": "synthetic", "name": "cam", "audio_latency_ms": 25}])
    b.wall = a.wall  # the same UNIX mapping, so the two runs compare exactly
    t0 = time.monotonic_ns()
    for e in (a, b):
        feed(e, 1.0, t0=t0)
        e.flush()

    def first(sink: ListSink, modality: Modality) -> int:
        return next(p.start_ns for p in sink.items if isinstance(p, TokenPacket) and p.modality == modality)

    assert first(sa, Modality.AUDIO) - first(sb, Modality.AUDIO) == 25_000_000
    assert first(sa, Modality.VIDEO) == first(sb, Modality.VIDEO)


def test_a_failing_batch_is_counted_and_the_daemon_goes_on(toks: Tokenizers) -> None:
    from livetok.daemon.runner import Daemon

    daemon = Daemon(LivetokConfig(), toks)

    def boom() -> None:
        raise ValueError("bad frame")

    daemon._guarded("video", boom)
    daemon._guarded("video", boom)
    assert daemon.metrics.counters["errors.engine.video"] == 2
