"""Sync markers: flash and beep onsets generated here with numpy, and the A/V skew recovered
from them (audio minus video), for any audio block sizes."""

from __future__ import annotations

import numpy as np
import pytest

from livetok.sync import BeepDetector, FlashDetector, SkewEstimator

MS = 1_000_000
S = 1_000_000_000
FPS = 30
PERIOD = 2 * S  # marker instants: every 2 s
BEEP_LEN = 50 * MS


def frame_ns(k: int, v0: int) -> int:
    return v0 + round(k * S / FPS)


def scene(rng: np.random.Generator, k: int, size: int = 64) -> np.ndarray:
    """An ordinary frame (mean luma ~100) with a bar moving across it."""
    img = rng.integers(40, 160, (size, size, 3), dtype=np.uint8)
    x = (3 * k) % size
    img[:, x : x + 4] = 230
    return img


def marker_video(rng: np.random.Generator, seconds: float, v0: int) -> tuple[list[tuple[int, np.ndarray]], list[int]]:
    """(capture_ns, frame) at 30 fps; a full white frame at each marker instant. Returns the flashes' true times."""
    frames, flashes = [], []
    for k in range(int(seconds * FPS)):
        t = frame_ns(k, v0)
        if k % (FPS * PERIOD // S) == 0 and k > 0:  # markers at 2 s, 4 s, ... (not on the very first frame)
            frames.append((t, np.full((64, 64, 3), 255, np.uint8)))
            flashes.append(t)
        else:
            frames.append((t, scene(rng, k)))
    return frames, flashes


def marker_audio(
    rng: np.random.Generator, seconds: float, rate: int, a0: int, beeps_ns: list[int],
    noise: float = 0.01, background: float = 0.05,
) -> tuple[np.ndarray, list[int]]:
    """Mono audio starting at host time ``a0``: noise, a steady 300 Hz tone, and a 1 kHz, 50 ms
    beep (amplitude 0.5, random phase) starting at each time in ``beeps_ns``. Returns the samples
    and each beep's first-sample time (the onset, quantised to the sample grid)."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = noise * rng.standard_normal(n) + background * np.sin(2 * np.pi * 300 * t)
    onsets = []
    for b in beeps_ns:
        s0 = -(-(b - a0) * rate // S)  # first sample at or after the beep's instant
        m = BEEP_LEN * rate // S
        x[s0 : s0 + m] += 0.5 * np.sin(2 * np.pi * 1000 * np.arange(m) / rate + rng.uniform(0, 2 * np.pi))
        onsets.append(a0 + s0 * S // rate)
    return x.astype(np.float32), onsets


def feed_blocks(det: BeepDetector, x: np.ndarray, rate: int, a0: int, rng: np.random.Generator,
                max_block: int) -> list[tuple[int, int]]:
    """Feed ``x`` in random block sizes; returns (onset_ns, time the block ended) pairs."""
    out, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, max_block + 1))
        onset = det.feed(x[i : i + n], a0 + i * S // rate, rate)
        i += n
        if onset is not None:
            out.append((onset, a0 + i * S // rate))
    return out


def test_flash_onsets_are_the_flash_frames() -> None:
    rng = np.random.default_rng(0)
    frames, flashes = marker_video(rng, 9.0, v0=77 * S)
    det = FlashDetector()
    found = [t for t, img in frames if det.feed(img, t) is not None]
    assert found == flashes and len(found) == 4


def test_a_long_flash_counts_once_and_a_slow_brightening_never() -> None:
    det = FlashDetector()
    dark, white = np.full((32, 32, 3), 90, np.uint8), np.full((32, 32, 3), 255, np.uint8)
    seq = [dark, white, white, white, dark, white]
    assert [det.feed(img, k) for k, img in enumerate(seq)] == [None, 1, None, None, None, 5]
    det = FlashDetector()
    ramp = [np.full((32, 32, 3), v, np.uint8) for v in np.linspace(90, 255, 60).astype(np.uint8)]
    assert all(det.feed(img, k) is None for k, img in enumerate(ramp))  # +2.8 levels per frame
    assert det.luma(ramp[-1]) == pytest.approx(255.0)


@pytest.mark.parametrize("rate", [16_000, 44_100, 48_000])
def test_beep_onsets_are_sample_accurate_for_any_blocks(rate: int) -> None:
    rng = np.random.default_rng(rate)
    a0 = 1_234 * S + 567_891
    beeps = [a0 + k * PERIOD + int(rng.integers(0, 20 * MS)) for k in range(1, 6)]
    x, onsets = marker_audio(rng, 11.5, rate, a0, beeps)
    det = BeepDetector()
    found = feed_blocks(det, x, rate, a0, rng, max_block=rate // 20)  # blocks of up to 50 ms
    errors = [f - o for (f, _), o in zip(found, onsets, strict=True)]
    print(f"{rate} Hz: onset errors {[round(e / 1e3, 1) for e in errors]} µs")
    assert len(found) == len(onsets) and det.rejected == 0
    assert all(abs(e) <= 100_000 for e in errors)  # 0.1 ms: 1-4 samples
    for onset, reported in found:
        # reported by the block that brings 2 windows (10 ms) of the beep
        assert 10 * MS <= reported - onset < 11 * MS + 50 * MS


@pytest.mark.slow
def test_chunking_does_not_change_the_onsets() -> None:
    rng = np.random.default_rng(1)
    rate, a0 = 16_000, 50 * S
    x, _ = marker_audio(rng, 2.5, rate, a0, [a0 + S // 2, a0 + 2 * S + 7 * MS])
    whole = BeepDetector().feed_all(x, a0, rate)
    for max_block in (1, 37, 4096):  # 1: sample by sample
        got = [t for t, _ in feed_blocks(BeepDetector(), x, rate, a0, rng, max_block)]
        assert got == whole
    assert len(whole) == 2


def test_other_sounds_are_not_beeps() -> None:
    rng = np.random.default_rng(2)
    rate = 16_000
    t = np.arange(rate) / rate
    x = 0.01 * rng.standard_normal(3 * rate)
    x[rate // 2 : rate // 2 + 800] += 0.5 * np.sin(2 * np.pi * 1500 * t[:800])  # another pitch
    x[rate + rate // 2 : rate + rate // 2 + 800] += 0.5 * rng.standard_normal(800)  # a noise burst
    x[2 * rate + rate // 2 : 2 * rate + rate // 2 + 800] += 0.5 * np.cos(2 * np.pi * 1000 * t[:800])  # a beep
    det = BeepDetector()
    found = det.feed_all(x, 0, rate)
    assert found == [(2 * rate + rate // 2) * S // rate]
    assert det.rejected >= 1  # the noise burst leaked into the envelope and was refused


def test_a_timestamp_gap_restarts_the_detector() -> None:
    rng = np.random.default_rng(3)
    rate = 16_000
    x, onsets = marker_audio(rng, 2.0, rate, 0, [1 * S])
    det = BeepDetector()
    assert det.feed_all(x[: rate // 2], 0, rate) == []
    # the next block claims to start 10 s later (samples were lost): history is dropped, and
    # the beep is timed on the new timeline
    found = det.feed_all(x[rate // 2 :], 10 * S + rate // 2 * S // rate, rate)
    assert found == [onsets[0] + 10 * S]


@pytest.mark.parametrize(("offset_ms", "rate"), [(37, 16_000), (-23, 48_000), (0, 44_100)])
def test_skew_is_recovered(offset_ms: int, rate: int) -> None:
    """Flashes on video frames, beeps `offset_ms` later on the audio's timestamps (audio
    stamped late: positive skew), random block sizes, interleaved as a daemon sees them."""
    rng = np.random.default_rng(offset_ms + rate)
    seconds, v0, a0 = 21.0, 500 * S, 500 * S - 3 * MS
    frames, flashes = marker_video(rng, seconds, v0)
    x, _ = marker_audio(rng, seconds + 0.1, rate, a0, [f + offset_ms * MS for f in flashes])
    flash_det, beep_det, est = FlashDetector(), BeepDetector(), SkewEstimator()
    events: list[tuple[int, str, int]] = [(t, "flash", t) for t, img in frames if flash_det.feed(img, t) is not None]
    events += [(ready, "beep", onset) for onset, ready in feed_blocks(beep_det, x, rate, a0, rng, rate // 25)]
    events.sort()  # by the time each detection becomes available
    pairs = []
    for _, kind, onset in events:
        r = est.add_flash(onset) if kind == "flash" else est.add_beep(onset)
        if r is not None:
            pairs.append(est.last_pair_ns)
    print(f"skew {offset_ms:+d} ms at {rate} Hz: estimate {est.skew_ns} ns over {est.pairs} pairs")
    assert est.pairs == len(flashes) == 10
    assert est.skew_ns is not None and abs(est.skew_ns - offset_ms * MS) <= 2 * MS
    assert all(p is not None and abs(p - offset_ms * MS) <= 2 * MS for p in pairs)


def test_skew_estimator_pairs_nearest_and_takes_the_median() -> None:
    est = SkewEstimator(history=5, max_pair_ns=300 * MS)
    assert est.add_beep(2 * S + 40 * MS) is None  # the beep is detected before its flash
    assert est.add_flash(2 * S) == 40 * MS  # audio stamped 40 ms late: +40 ms
    assert est.add_flash(4 * S) is None
    assert est.add_beep(4 * S + 400 * MS) is None  # too far from any flash: not a pair
    assert est.pairs == 1
    for k, skew in enumerate([38, 41, 250, 39], start=3):  # one bad pair (250 ms) among good ones
        est.add_flash(2 * k * S)
        est.add_beep(2 * k * S + skew * MS)
    assert est.skew_ns == 40 * MS  # median of 40, 38, 41, 250, 39
    assert est.last_pair_ns == 39 * MS
    est.add_flash(100 * S)
    assert est.add_beep(100 * S - 10 * MS) is not None and est.last_pair_ns == -10 * MS  # audio early
