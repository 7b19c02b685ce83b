"""The start-up hold of a source clock (Settling), and a source clock that starts with a late burst.

The arrivals are simulated as a UDP camera's start looks (bench/bench_late.py measured it): FFmpeg
probes the stream for ~0.75 s, then hands over that backlog at once (each item a little less late
than the one before), then items arrive in real time on a delay floor with jitter.
"""

from __future__ import annotations

import numpy as np
import pytest

from livetok.sync import ClockModel, SourceClock
from livetok.sync.settle import MAX_HOLD_NS, QUIET_NS, Settling

MS = 1_000_000
S = 1_000_000_000
FRAME = S // 30


def late_start(seconds: float = 10.0, backlog_ns: int = 750 * MS, floor_ns: int = 5 * MS, jitter_ms: float = 1.0,
               capture0: int = 100 * S, seed: int = 0) -> tuple[list[int], list[int], int]:
    """(media, arrival, capture0) of 30 fps frames: the first ``backlog_ns`` of media come in one burst
    (1 ms apart) ``backlog_ns + floor`` after the first capture, the rest in real time."""
    rng = np.random.default_rng(seed)
    media, arrival = [], []
    burst_at = capture0 + backlog_ns + floor_ns
    for i in range(int(seconds * 30)):
        m = i * FRAME
        on_time = capture0 + m + floor_ns + int(rng.exponential(jitter_ms * MS))
        media.append(m)
        arrival.append(max(on_time, burst_at + i * MS))
    return media, arrival, capture0


def settle_time(s: Settling, media: list[int], arrival: list[int]) -> int | None:
    for m, a in zip(media, arrival, strict=True):
        if s.observe(m, a):
            return a
    return None


def test_a_burst_then_real_time_settles_a_quiet_spell_after_the_backlog() -> None:
    media, arrival, c0 = late_start()
    s = Settling()
    t = settle_time(s, media, arrival)
    backlog_drained = c0 + 750 * MS + 5 * MS + 30 * MS  # the burst's last items: around here
    assert t is not None and backlog_drained + QUIET_NS - 20 * MS <= t <= backlog_drained + QUIET_NS + 100 * MS
    assert s.settled and s.holds == 1 and s.timeouts == 0
    assert s.held_ns == t - arrival[0]


def test_a_punctual_start_is_held_for_the_quiet_spell_only() -> None:
    media, arrival, _ = late_start(backlog_ns=0)
    s = Settling()
    t = settle_time(s, media, arrival)
    assert t is not None and 0 <= t - arrival[0] - QUIET_NS < 2 * FRAME


def test_a_floor_that_keeps_falling_is_held_at_most_max_hold() -> None:
    """A decoder catching up 5 ms per frame for 10 s: the hold gives up after MAX_HOLD_NS."""
    media = [i * FRAME for i in range(300)]
    arrival = [S + m + 1_500 * MS - 5 * MS * i for i, m in enumerate(media)]
    s = Settling()
    t = settle_time(s, media, arrival)
    assert t is not None and 0 <= t - arrival[0] - MAX_HOLD_NS < FRAME
    assert s.timeouts == 1


def test_time_passing_ends_a_hold_and_reset_starts_one() -> None:
    s = Settling()
    assert not s.poll(5 * S)  # nothing observed: nothing to hold, not settled either
    assert not s.observe(0, 5 * S)
    assert not s.poll(5 * S + QUIET_NS - 1)
    assert s.poll(5 * S + QUIET_NS)  # a source that went silent after one item: its hold ends by time
    s.reset()
    assert not s.settled and not s.observe(0, 9 * S)
    s.end()
    assert s.settled and s.holds == 2
    with pytest.raises(ValueError):
        Settling(quiet_ns=2 * S, max_hold_ns=S)


def mapped_errors(clock: SourceClock, media: list[int], arrival: list[int], c0: int) -> list[int]:
    """Each item's mapped time minus its capture time, items mapped in arrival order as soon as the
    clock has settled (those before: at that moment, in order), as the engine does."""
    errors: list[int] = []
    waiting: list[int] = []
    for m, a in zip(media, arrival, strict=True):
        clock.observe(m, a)
        waiting.append(m)
        if clock.settled:
            errors += [clock.to_host(w) - (c0 + w) for w in waiting]
            waiting.clear()
    return errors


def test_a_settling_clock_stamps_a_late_start_true_from_the_first_item() -> None:
    """The issue-12 start: with the hold, every item from the first is within 2 ms of its capture
    (plus the floor, which latency_ns is for); without it, the first ones were 750 ms late and the
    clock slewed at 5 % for the whole 10 s: every host duration 5 % short."""
    media, arrival, c0 = late_start()
    held = mapped_errors(SourceClock(ClockModel(latency_ns=5 * MS), settling=Settling()), media, arrival, c0)
    assert len(held) == len(media)
    assert max(abs(e) for e in held) <= 2 * MS
    rate = (len(media) - 1) * S / (held[-1] - held[0] + media[-1] - media[0])
    assert abs(rate / 30 - 1) < 0.0005

    old = mapped_errors(SourceClock(ClockModel(latency_ns=5 * MS)), media, arrival, c0)
    assert old[0] > 700 * MS and old[-1] > 200 * MS  # the old start: late, and still slewing at the end
    old_rate = (len(media) - 1) * S / (old[-1] - old[0] + media[-1] - media[0])
    assert old_rate / 30 - 1 > 0.04


def test_the_flat_start_of_a_model_follows_the_lowest_arrival_yet() -> None:
    """Before ten buckets have closed the model is flat at the earliest arrival seen: the open bucket's
    included (it used to wait for the bucket to close, so a burst's floor showed a second late)."""
    model = ClockModel()
    model.observe(0, 10 * S + 700 * MS)  # bucket 0: a late item
    model.observe(1_000 * MS, 11 * S + 600 * MS)  # closes bucket 0 (ready), opens bucket 1
    assert model.ready and model.to_host(0) == 10 * S + 600 * MS
    model.observe(1_100 * MS, 11 * S + 105 * MS)  # bucket 1, still open: the floor shows up
    assert model.to_host(0) == 10 * S + 5 * MS
