"""ClockModel (media -> host monotonic, lower-envelope fit) and WallClock (monotonic -> UNIX).

Observations are simulated from the model itself: a source clock with an offset and a drift
stamps media time; arrival = capture + a known latency floor + random delay (exponential jitter,
outliers, stalls). Every check compares the model's ``to_host`` with the true capture time.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from livetok.sync import ClockModel, WallClock

MS = 1_000_000
S = 1_000_000_000


def simulate(
    rng: np.random.Generator,
    *,
    rate_hz: float,
    seconds: float,
    offset_ns: int,
    drift: float,
    jitter_ms: float,
    outlier_frac: float = 0.0,
    outlier_ns: int = 500 * MS,
    floor_ns: int = 0,
    media0_ns: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(media, capture, arrival) int64 ns for a source stamping ``rate_hz`` items per media second.

    capture = offset + (1 + drift) * media; arrival = capture + floor + Exp(jitter) (+ outlier).
    """
    n = int(rate_hz * seconds)
    media = media0_ns + np.round(np.arange(n) * (S / rate_hz)).astype(np.int64)
    capture = offset_ns + media + np.round(media * drift).astype(np.int64)
    delay = np.round(rng.exponential(jitter_ms * MS, n)).astype(np.int64) + floor_ns
    delay[rng.random(n) < outlier_frac] += outlier_ns
    return media, capture, capture + delay


def true_host(t_media: int, offset_ns: int, drift: float) -> int:
    return offset_ns + t_media + round(t_media * drift)


def test_recovers_offset_and_drift_despite_jitter_and_outliers() -> None:
    rng = np.random.default_rng(1)
    offset, drift = 7_123_456_789_012, 37e-6
    media, capture, arrival = simulate(
        rng, rate_hz=50, seconds=600, offset_ns=offset, drift=drift, jitter_ms=2.0, outlier_frac=0.01
    )
    model = ClockModel()
    worst = 0
    for i, (m, a) in enumerate(zip(media.tolist(), arrival.tolist(), strict=True)):
        model.observe(m, a)
        if i % 97 == 0 and model.ready:  # the item just received, as a capture thread maps it
            worst = max(worst, abs(model.to_host(m) - int(capture[i])))
    print(f"max |to_host - capture| over 10 min: {worst / 1e3:.1f} µs, drift {model.drift_ppm:.3f} ppm")
    assert model.ready and model.observations == media.size
    assert worst < 1 * MS
    assert model.drift_ppm == pytest.approx(37.0, abs=0.5)
    assert abs(model.offset_ns - offset) < 1 * MS
    # the whole last window maps within 1 ms, not just the newest items
    for m in range(int(media[-1]) - 100 * S, int(media[-1]), 7 * S):
        assert abs(model.to_host(m) - true_host(m, offset, drift)) < 1 * MS


def test_a_stall_of_late_items_does_not_move_the_model() -> None:
    """Three seconds of items all delivered 0.8 s late (a network stall) are outlier buckets."""
    rng = np.random.default_rng(2)
    offset, drift = 10 * S, -80e-6
    media, capture, arrival = simulate(rng, rate_hz=30, seconds=300, offset_ns=offset, drift=drift, jitter_ms=4.0)
    stall = (media >= 150 * S) & (media < 153 * S)
    arrival[stall] += 800 * MS
    model = ClockModel()
    worst, fewest_points = 0, 1 << 30
    for i, (m, a) in enumerate(zip(media.tolist(), arrival.tolist(), strict=True)):
        model.observe(m, a)
        if m >= 10 * S:
            worst = max(worst, abs(model.to_host(m) - int(capture[i])))
        if 200 * S <= m < 260 * S:  # the stall is well inside the 120 s window
            fewest_points = min(fewest_points, model.fit_points)
    assert worst < 1 * MS
    assert fewest_points <= 120 - 3  # the stalled buckets were rejected from the fit


def test_latency_is_subtracted() -> None:
    rng = np.random.default_rng(3)
    offset, floor = 5 * S, 40 * MS  # e.g. a camera whose pipeline always takes 40 ms
    media, capture, arrival = simulate(
        rng, rate_hz=30, seconds=20, offset_ns=offset, drift=0.0, jitter_ms=1.0, floor_ns=floor
    )
    plain, compensated = ClockModel(), ClockModel(latency_ns=floor)
    for m, a in zip(media.tolist(), arrival.tolist(), strict=True):
        plain.observe(m, a)
        compensated.observe(m, a)
    m = int(media[-1])
    assert plain.to_host(m) - compensated.to_host(m) == floor
    assert abs(compensated.to_host(m) - int(capture[-1])) < 1 * MS
    assert abs(plain.to_host(m) - int(capture[-1]) - floor) < 1 * MS


def test_audio_blocks_observed_by_their_end_map_every_sample() -> None:
    """A 20 ms block can only be handed over after its last sample: observed by its end, the
    model maps its first sample (and every other) to its true capture time."""
    rng = np.random.default_rng(8)
    block = 20 * MS
    starts, capture, arrival = simulate(rng, rate_hz=50, seconds=60, offset_ns=4 * S, drift=30e-6, jitter_ms=1.0)
    end_capture = capture + round(block * (1 + 30e-6))
    arrival = arrival + (end_capture - capture)  # delivered after the block's end
    by_end, by_start = ClockModel(), ClockModel()
    for m, a in zip(starts.tolist(), arrival.tolist(), strict=True):
        by_end.observe(m + block, a)
        by_start.observe(m, a)
    m = int(starts[-1])
    assert abs(by_end.to_host(m) - int(capture[-1])) < 1 * MS
    assert by_start.to_host(m) - int(capture[-1]) > block - 1 * MS  # the block's length, as latency


def test_before_one_bucket_the_minimum_offset_is_used() -> None:
    model = ClockModel(latency_ns=2 * MS)
    with pytest.raises(RuntimeError):
        model.to_host(0)
    obs = [(0, 1_000 * MS + 9 * MS), (100 * MS, 1_100 * MS + 3 * MS), (200 * MS, 1_200 * MS + 5 * MS)]
    for m, a in obs:
        model.observe(m, a)
    assert not model.ready
    assert model.drift_ppm == 0.0
    # min(arrival - media) = 1003 ms, minus the 2 ms latency
    assert model.to_host(500 * MS) == 500 * MS + 1_003 * MS - 2 * MS
    model.observe(1_000 * MS, 2_000 * MS + 4 * MS)  # closes the first 1 s bucket
    assert model.ready


def test_reset_forgets_the_old_timeline() -> None:
    rng = np.random.default_rng(4)
    model = ClockModel()
    media, _, arrival = simulate(rng, rate_hz=50, seconds=30, offset_ns=3 * S, drift=50e-6, jitter_ms=1.0)
    for m, a in zip(media.tolist(), arrival.tolist(), strict=True):
        model.observe(m, a)
    assert model.ready
    model.reset()  # the source restarted: media time starts at 0 again, with a new offset
    assert model.observations == 0 and not model.ready
    model.observe(0, 900 * S)
    assert model.to_host(0) == 900 * S
    assert model.drift_ppm == 0.0


def test_media_leap_beyond_the_window_restarts_the_fit() -> None:
    """An unflagged jump of media time far past the window: old buckets cannot describe it."""
    rng = np.random.default_rng(5)
    model = ClockModel(window_s=30.0)
    media, _, arrival = simulate(rng, rate_hz=50, seconds=40, offset_ns=2 * S, drift=0.0, jitter_ms=1.0)
    for m, a in zip(media.tolist(), arrival.tolist(), strict=True):
        model.observe(m, a)
    # media leaps 1000 s ahead while host time moved on by only 41 s: a different mapping
    model.observe(1_040 * S, int(arrival[-1]) + 1 * S)
    assert model.to_host(1_040 * S) == int(arrival[-1]) + 1 * S
    assert not model.ready


def test_follows_a_drift_change_within_a_window() -> None:
    rng = np.random.default_rng(6)
    model = ClockModel(window_s=60.0)
    part1 = simulate(rng, rate_hz=50, seconds=200, offset_ns=S, drift=50e-6, jitter_ms=1.0)
    # at media 200 s the oscillator warms up: drift -50 ppm from there, continuous in time
    m2, _, _ = simulate(rng, rate_hz=50, seconds=200, offset_ns=0, drift=0.0, jitter_ms=1.0, media0_ns=200 * S)
    cap2 = true_host(200 * S, S, 50e-6) + (m2 - 200 * S) + np.round((m2 - 200 * S) * -50e-6).astype(np.int64)
    arr2 = cap2 + np.round(rng.exponential(1.0 * MS, m2.size)).astype(np.int64)
    for m, a in zip(part1[0].tolist() + m2.tolist(), part1[2].tolist() + arr2.tolist(), strict=True):
        model.observe(m, a)
    assert model.drift_ppm == pytest.approx(-50.0, abs=1.0)
    assert abs(model.to_host(int(m2[-1])) - int(cap2[-1])) < 1 * MS


@pytest.mark.slow
def test_simulated_hour_av_skew_with_opposite_100_ppm_drifts() -> None:
    """An hour of an audio clock at +100 ppm (50 blocks/s) and a video clock at -100 ppm
    (30 frames/s, 40 ms pipeline latency configured): the same true instant, mapped through
    both models, must agree within 10 ms at every checkpoint (they agree far better)."""
    rng = np.random.default_rng(7)
    hour = 3600
    a_off, a_drift = 1_000 * S, 100e-6
    v_off, v_drift, v_floor = 1_000 * S + 250 * MS, -100e-6, 40 * MS
    # audio: callback scheduling jitter (exp, 0.5 ms) and rare 30 ms hiccups
    am, _, aa = simulate(rng, rate_hz=50, seconds=hour, offset_ns=a_off, drift=a_drift, jitter_ms=0.5,
                         outlier_frac=0.001, outlier_ns=30 * MS)
    # video: network + decode jitter (exp, 4 ms), 1 % of frames 0.5 s late, two 2 s stalls
    vm, _, va = simulate(rng, rate_hz=30, seconds=hour, offset_ns=v_off, drift=v_drift, jitter_ms=4.0,
                         outlier_frac=0.01, floor_ns=v_floor)
    for t0 in (1_000, 2_500):
        va[(vm >= t0 * S) & (vm < (t0 + 2) * S)] += 1_500 * MS
    audio, video = ClockModel(), ClockModel(latency_ns=v_floor)
    # merge both streams by arrival time, as the event loop sees them
    order = np.argsort(np.concatenate([aa, va]), kind="stable")
    is_video = order >= am.size
    idx = np.where(is_video, order - am.size, order)
    media_all = np.where(is_video, vm[np.minimum(idx, vm.size - 1)], am[np.minimum(idx, am.size - 1)]).tolist()
    arrival_all = np.concatenate([aa, va])[order].tolist()
    checkpoints = iter(range(30 * S + a_off, hour * S + a_off, 30 * S))
    next_check = next(checkpoints)
    skews, errors = [], []
    for vid, m, arr in zip(is_video.tolist(), media_all, arrival_all, strict=True):
        (video if vid else audio).observe(m, arr)
        if arr >= next_check:
            event = next_check - 100 * MS  # a true instant both sources just captured
            ma = round((event - a_off) / (1 + a_drift))  # its audio media time
            mv = round((event - v_off) / (1 + v_drift))  # its video media time
            ta, tv = audio.to_host(ma), video.to_host(mv)
            skews.append(ta - tv)
            errors += [abs(ta - event), abs(tv - event)]
            next_check = next(checkpoints, 1 << 62)
    worst_skew = max(abs(s) for s in skews)
    print(f"simulated hour: {len(skews)} checkpoints, max |A/V skew| {worst_skew / 1e3:.1f} µs, "
          f"max |to_host - true| {max(errors) / 1e3:.1f} µs; drift fitted "
          f"{audio.drift_ppm:+.2f} / {video.drift_ppm:+.2f} ppm")
    assert len(skews) == hour // 30 - 1
    assert worst_skew < 10 * MS
    assert max(errors) < 2 * MS
    assert audio.drift_ppm == pytest.approx(100.0, abs=2.0)
    assert video.drift_ppm == pytest.approx(-100.0, abs=2.0)


def test_rejects_a_bucket_longer_than_the_window() -> None:
    with pytest.raises(ValueError):
        ClockModel(window_s=1.0, bucket_s=2.0)


def test_wall_clock_fixed_offset_round_trips() -> None:
    wall = WallClock(offset_ns=1_700_000_000 * S)
    assert wall.to_unix(5) == 1_700_000_000 * S + 5
    assert wall.to_mono(wall.to_unix(123_456_789)) == 123_456_789


def test_wall_clock_brackets_the_realtime_clock() -> None:
    """A realtime reading taken between two monotonic readings maps inside their UNIX images
    (up to the sampling uncertainty), however long the thread was preempted in between."""
    wall = WallClock()
    assert wall.uncertainty_ns >= 1
    m0 = time.monotonic_ns()
    real = time.clock_gettime_ns(time.CLOCK_REALTIME)
    m1 = time.monotonic_ns()
    assert wall.to_unix(m0) - wall.uncertainty_ns <= real <= wall.to_unix(m1) + wall.uncertainty_ns
