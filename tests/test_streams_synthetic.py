"""SyntheticSource: motion, a quiet tone, and flash + beep markers at known instants and offsets."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from streamgen import Collector, drain, wait_until
from test_streams_av import VIDEO, TimedPrepare, check_paced, increasing, prepare

from livetok.streams.handoff import Handoff
from livetok.streams.synthetic import SyntheticOptions, SyntheticSource
from livetok.streams.types import AudioCapture, SourceState, SourceStats, VideoCapture

NS = 1_000_000_000


def run_unpaced(opts: SyntheticOptions) -> tuple[list[VideoCapture], list[AudioCapture], SourceStats]:
    video: Handoff[VideoCapture] = Handoff(10_000)
    audio: Handoff[AudioCapture] = Handoff(10_000)
    stats = SourceStats()
    src = SyntheticSource("syn", opts, prepare, video, audio, stats)
    src.start()
    assert wait_until(lambda: not src.alive, 30.0)  # with duration_s it ends by itself
    assert stats.state is SourceState.STOPPED and stats.dropped_frames == 0 and stats.dropped_blocks == 0
    return drain(video), drain(audio), stats


def beep_segments(blocks: list[AudioCapture], opts: SyntheticOptions) -> list[tuple[int, int]]:
    """(first, last) sample index of each beep: where the signal differs from the known tone."""
    x = np.concatenate([b.samples[0] for b in blocks]).astype(np.float64)
    n = np.arange(len(x), dtype=np.float64)
    residual = x - opts.tone_level * np.sin(2 * math.pi * opts.tone_hz / opts.rate * n)
    idx = np.flatnonzero(np.abs(residual) > 1e-4)
    if idx.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(idx) > 10) + 1
    return [(int(g[0]), int(g[-1])) for g in np.split(idx, cuts)]


BASE = SyntheticOptions(width=160, height=120, fps=25, rate=16000, marker_interval_s=0.5, realtime=False,
                        duration_s=2.1)


def test_markers_flash_and_beep_together() -> None:
    frames, blocks, stats = run_unpaced(BASE)
    assert len(frames) == 53  # frames at 0, 40, ... 2080 ms
    assert len(blocks) == 105  # 20 ms blocks starting before 2.1 s
    assert [f.media_ns for f in frames] == [i * 40_000_000 for i in range(53)]
    assert [b.media_ns for b in blocks] == [i * 20_000_000 for i in range(105)]
    assert all(f.image.shape == (VIDEO.size, VIDEO.size, 3) for f in frames)
    assert frames[0].discontinuity and not any(f.discontinuity for f in frames[1:])
    assert blocks[0].discontinuity and not any(b.discontinuity for b in blocks[1:])
    markers = BASE.marker_times_ns(round(2.1 * NS))
    # Every 0.5 s, on the first frame at or after it (frames are 40 ms apart).
    assert markers == [520_000_000, 1_000_000_000, 1_520_000_000, 2_000_000_000]
    flashes = [f.media_ns for f in frames if f.image.mean() > 250]
    assert flashes == markers
    assert max(f.image.mean() for f in frames if f.media_ns not in markers) < 200
    # Motion: consecutive ordinary frames differ.
    plain = [f.image.astype(np.int16) for f in frames if f.media_ns not in markers]
    assert min(float(np.abs(a - b).mean()) for a, b in itertools.pairwise(plain)) > 1.0
    beeps = beep_segments(blocks, BASE)
    beep_len = round(BASE.beep_ms * BASE.rate / 1000)
    # sin(0) = 0: the first beep sample is exactly on the tone, the residual starts one sample later.
    assert [(s - 1, e - s + 2) for s, e in beeps] == [(m * 16000 // NS, beep_len) for m in markers]
    assert stats.frames == 53 and stats.blocks == 105


@pytest.mark.parametrize("offset_ms", [120.0, -80.0])
def test_audio_offset_shifts_the_beep(offset_ms: float) -> None:
    opts = SyntheticOptions(**{**BASE.__dict__, "audio_offset_ms": offset_ms})
    frames, blocks, _ = run_unpaced(opts)
    markers = opts.marker_times_ns(round(2.1 * NS))
    assert [f.media_ns for f in frames if f.image.mean() > 250] == markers  # the flashes do not move
    starts = [s - 1 for s, _ in beep_segments(blocks, opts)]
    expected = [round((m + offset_ms * 1e6) * 16000 / NS) for m in markers]
    if offset_ms > 0:  # the last beep may start after the end of the signal
        expected = [e for e in expected if e < 2.1 * 16000 - 1]
    assert starts == expected
    # The beep is a 1 kHz tone.
    x = np.concatenate([b.samples[0] for b in blocks])
    seg = x[expected[0]: expected[0] + 800]
    peak = np.argmax(np.abs(np.fft.rfft(seg * np.hanning(len(seg))))) * 16000 / len(seg)
    assert peak == pytest.approx(1000.0, abs=20.0)


def test_ntsc_rate_and_stereo() -> None:
    opts = SyntheticOptions(width=64, height=48, fps=30000 / 1001, rate=48000, channels=2, marker_interval_s=0,
                            realtime=False, duration_s=0.5)
    frames, blocks, _ = run_unpaced(opts)
    assert [f.media_ns for f in frames[:3]] == [0, 33_366_666, 66_733_333]  # 1001/30000 s each
    assert frames[0].duration_ns == 33_366_666
    assert all(b.samples.shape == (2, 960) and np.array_equal(b.samples[0], b.samples[1]) for b in blocks)
    assert not any(f.image.mean() > 250 for f in frames)  # no markers
    assert float(np.max(np.abs(np.concatenate([b.samples for b in blocks], axis=1)))) <= opts.tone_level + 1e-6


@pytest.mark.slow
def test_realtime_pacing_on_the_monotonic_clock() -> None:
    opts = SyntheticOptions(width=160, height=120, fps=25, rate=16000, marker_interval_s=0.5)
    video: Handoff[VideoCapture] = Handoff(512)
    audio: Handoff[AudioCapture] = Handoff(512)
    stats = SourceStats()
    timed = TimedPrepare()
    src = SyntheticSource("syn", opts, timed, video, audio, stats)
    src.start()
    vc, ac = Collector(video), Collector(audio)
    assert wait_until(lambda: vc.count() >= 20 and ac.count() >= 40, 20.0)
    assert src.stop() and stats.state is SourceState.STOPPED
    frames, blocks = vc.close(), ac.close()
    check_paced(frames, timed.times[: len(frames)])
    # An audio block is handed over once its last sample is due, as a microphone would.
    t0 = timed.times[0]
    assert all(b.arrival_ns - t0 >= b.media_ns + 20_000_000 - 1_000_000 for b in blocks)
    assert increasing([b.media_ns for b in blocks]) and increasing([f.media_ns for f in frames])


def test_audio_only_and_options_checked() -> None:
    audio: Handoff[AudioCapture] = Handoff(100)
    src = SyntheticSource("syn", SyntheticOptions(realtime=False, duration_s=0.2, rate=8000), prepare, None, audio,
                          SourceStats())
    src.start()
    assert wait_until(lambda: not src.alive, 10.0)
    assert len(drain(audio)) == 10
    with pytest.raises(ValueError):
        SyntheticOptions(fps=0)
