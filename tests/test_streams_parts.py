"""The capture machinery on its own: backoff, pacing, audio conversion, the PyAV interrupt."""

from __future__ import annotations

import errno
import itertools
import random
import threading
import time
from collections.abc import Iterator

import av
import numpy as np
import pytest

from livetok.media.audioconv import AudioToFloat
from livetok.runtime.backoff import Backoff, BackoffPolicy
from livetok.streams import interrupt
from livetok.streams.av_source import demux_resuming
from livetok.streams.pacing import Pacer
from livetok.streams.timeline import SampleTimeline
from livetok.streams.worker import Stall


def test_backoff_doubles_to_the_cap_and_resets_after_a_stable_run() -> None:
    b = Backoff(BackoffPolicy(jitter=0.0, stable_s=3600.0))
    assert [b.next_delay_s() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    b.running()  # not yet stable: keeps growing
    assert b.next_delay_s() == 30
    quick = Backoff(BackoffPolicy(jitter=0.0, stable_s=0.0))
    assert [quick.next_delay_s() for _ in range(3)] == [1, 2, 4]
    quick.running()  # ran "long enough" (0 s): starts over
    assert quick.next_delay_s() == 1


def test_backoff_jitter_stays_below_each_step_and_the_cap() -> None:
    b = Backoff(BackoffPolicy(), random.Random(7))
    for nominal in [1, 2, 4, 8, 16, 30, 30, 30]:
        assert 0.75 * nominal <= b.next_delay_s() <= nominal
    for _ in range(1000):  # never overflows, never above the cap
        assert b.next_delay_s() <= 30
    with pytest.raises(ValueError):
        BackoffPolicy(initial_s=0)
    with pytest.raises(ValueError):
        BackoffPolicy(jitter=1.0)


def test_pacer_holds_items_to_their_media_time_and_stops() -> None:
    stop = threading.Event()
    p = Pacer(stop)
    t0 = time.monotonic_ns()
    assert p.wait(5_000_000_000)  # anchors: released at once
    assert p.wait(5_050_000_000)
    assert time.monotonic_ns() - t0 >= 50_000_000 - 1_000_000
    threading.Timer(0.1, stop.set).start()
    assert not p.wait(5_000_000_000 + 4_000_000_000)  # 4 s ahead: ended by stop, not by the clock
    assert time.monotonic_ns() - t0 < 3_000_000_000
    p2 = Pacer(threading.Event(), max_lead_ns=1_000_000_000)
    assert p2.wait(0) and p2.wait(10_000_000_000)  # a jump ahead re-anchors instead of sleeping 10 s
    assert p2.reanchors == 1


@pytest.mark.parametrize(("fmt", "layout", "planar", "dtype", "scale"), [
    ("s16", "stereo", False, np.int16, 32768.0),
    ("s32p", "5.1", True, np.int32, 2.0**31),
    ("flt", "mono", False, np.float32, 1.0),
    ("dblp", "stereo", True, np.float64, 1.0),
    ("fltp", "stereo", True, np.float32, 1.0),
])
def test_audio_any_format_to_planar_float(fmt: str, layout: str, planar: bool, dtype: type, scale: float) -> None:
    channels = av.AudioLayout(layout).nb_channels
    n = 480
    ref = (np.arange(channels * n).reshape(channels, n) % 97 - 48) / 100.0  # [C, N] in [-0.48, 0.48]
    raw: np.ndarray = (ref * scale).astype(dtype)
    data = raw if planar else raw.T.reshape(1, -1)  # packed: interleaved in one plane
    frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
    frame.sample_rate = 44100
    conv = AudioToFloat()
    out = conv.convert(frame)
    assert out.shape == (channels, n) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, raw.astype(np.float64) / scale, atol=1e-6)
    assert np.shares_memory(out, conv.convert(frame)) is False


def test_interrupt_clock_jumps_only_for_a_stopped_registered_thread() -> None:
    assert interrupt.install()
    clock = av.container.core.time  # type: ignore[attr-defined]
    stop = threading.Event()
    seen: list[float] = []

    def worker() -> None:
        interrupt.register(stop)
        try:
            seen.append(clock.monotonic() - time.monotonic())
            stop.set()
            seen.append(clock.monotonic() - time.monotonic())
            # ... and leaps again at every read: a timeout armed after the stop expires at its first check
            seen.append(clock.monotonic() - time.monotonic())
        finally:
            interrupt.unregister()
        seen.append(clock.monotonic() - time.monotonic())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert abs(seen[0]) < 1.0 and seen[1] > 3600.0 and seen[2] - seen[1] > 30 * 86_400.0 and abs(seen[3]) < 1.0
    assert abs(clock.monotonic() - time.monotonic()) < 1.0  # this thread: the real clock
    assert clock.sleep is time.sleep  # anything else is the real time module's


class _EagainContainer:
    """Stands in for a non-blocking input: nothing (EAGAIN) twice, then packets, then silence."""

    name = "/dev/video9"

    def __init__(self, rounds: list[list[str] | None]) -> None:
        self.rounds = rounds

    def demux(self, *streams: object) -> Iterator[str]:
        while self.rounds:
            r = self.rounds.pop(0)
            if r is None:
                raise av.error.BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
            yield from r
        while True:
            raise av.error.BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")


def test_demux_resumes_after_eagain_then_stalls_or_stops() -> None:
    c = _EagainContainer([None, None, ["a", "b"], None, ["c"]])
    got: list[object] = []
    with pytest.raises(Stall):
        for p in demux_resuming(c, [], 0.2, threading.Event()):  # type: ignore[arg-type]
            got.append(p)
    assert got == ["a", "b", "c"]
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    assert list(demux_resuming(_EagainContainer([]), [], 60.0, stop)) == []  # type: ignore[arg-type]


BLOCK_NS = 20_000_000  # 320 samples at 16 kHz


def feed(timeline: SampleTimeline, starts: list[int], arrivals: list[int],
         overflow_at: int = -1) -> list[tuple[int, bool]]:
    """Stamp 320-sample blocks whose first samples were captured at ``starts`` and arrived at ``arrivals``."""
    return [timeline.stamp(320, 16000, None, a, overflow=(i == overflow_at)) for i, a in enumerate(arrivals)]


def test_timeline_is_contiguous_through_jitter_and_bursts() -> None:
    rng = random.Random(3)
    starts = [10**12 + k * BLOCK_NS for k in range(400)]
    arrivals = [s + BLOCK_NS + rng.randrange(0, 15_000_000) for s in starts]
    # Blocks 100..199 are held for 2 s and then all delivered at once (a frozen process, no loss).
    resume = starts[199] + BLOCK_NS + 2_000_000_000
    arrivals[100:200] = [resume + k * 1000 for k in range(100)]
    arrivals[200:] = [max(a, resume + 100_000) for a in arrivals[200:]]
    out = feed(SampleTimeline(jump_ns=100_000_000), starts, arrivals)
    media = [m for m, _ in out]
    assert [d for _, d in out] == [True] + [False] * 399
    assert all(b - a == BLOCK_NS for a, b in itertools.pairwise(media))
    assert all(m <= a - BLOCK_NS for m, a in zip(media, arrivals, strict=True))  # never after the bound


def test_timeline_restarts_after_lost_samples_and_on_overflow() -> None:
    starts = [10**12 + k * BLOCK_NS + (500_000_000 if k >= 100 else 0) for k in range(300)]  # 0.5 s lost
    arrivals = [s + BLOCK_NS + 1_000_000 for s in starts]
    t = SampleTimeline(jump_ns=100_000_000)
    out = feed(t, starts, arrivals, overflow_at=250)
    flagged = [i for i, (_, d) in enumerate(out) if d]
    assert flagged[0] == 0 and flagged[2] == 250 and len(flagged) == 3
    assert 100 <= flagged[1] <= 100 + 250_000_000 // BLOCK_NS + 2  # within one detection window
    media = [m for m, _ in out]
    assert all(b > a for a, b in itertools.pairwise(media))  # time never runs back over a loss
    assert media[flagged[1]] == arrivals[flagged[1]] - BLOCK_NS - 50_000_000  # its arrival bound, less the margin
    assert t.restarts == 2


@pytest.mark.parametrize("ppm", [-300, 300])
def test_timeline_follows_clock_drift_without_gaps(ppm: int) -> None:
    # The device's sample clock runs fast or slow against the monotonic clock: 60 s of blocks.
    starts = [10**12 + k * BLOCK_NS * (10**6 + ppm) // 10**6 for k in range(3000)]
    arrivals = [s + BLOCK_NS * (10**6 + ppm) // 10**6 + 2_000_000 for s in starts]
    out = feed(SampleTimeline(jump_ns=100_000_000), starts, arrivals)
    assert [d for _, d in out].count(True) == 1
    assert all(m <= a - BLOCK_NS for (m, _), a in zip(out, arrivals, strict=True))
    steps = [b - a for (a, _), (b, _) in itertools.pairwise(out)]
    assert max(abs(s - BLOCK_NS) for s in steps) <= 10_000  # pull-backs are microseconds


def test_timeline_uses_the_device_time_capped_by_arrival() -> None:
    t = SampleTimeline(jump_ns=100_000_000)
    assert t.stamp(320, 16000, 5_000_000_000, 6_000_000_000) == (5_000_000_000, True)  # the ADC time
    t.reset()
    assert t.stamp(320, 16000, 5_990_000_000, 6_000_000_000) == (5_930_000_000, True)  # impossible: bound - margin
