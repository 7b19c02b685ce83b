"""livetok.sync: cost of the clock model, the aligner and the marker detectors; the simulated-hour
A/V skew; the beep onset precision.

    .venv/bin/python bench/bench_sync.py [--hours 1.0] [--beeps 100]

1. ``ClockModel.observe`` (amortised: bucket closes and refits included) and ``to_host``, µs per
   call, over an hour of 50 observations/s.
2. ``Aligner.add`` (µs per packet) and ``Aligner.poll`` (µs per call and per step emitted; the
   conversion of every packet to the wire clock included) for one group of 20 ms + 80 ms audio
   packets and 30 fps video, polled every 10 ms.
3. ``FlashDetector.feed`` per 224 x 224 frame and ``BeepDetector.feed`` per 10 ms block.
4. A simulated hour: an audio clock at +100 ppm (50 blocks/s, exponential 0.5 ms jitter, 0.1 %
   30 ms hiccups) and a camera at -100 ppm (30 frames/s, 40 ms pipeline latency configured,
   exponential 4 ms jitter, 1 % of frames 0.5 s late, two 2 s stalls); every 30 s the same true
   instant is mapped through both models: max |A/V skew| and max |error|.
5. Beep onset error over ``--beeps`` beeps of random phase and sub-sample position, per rate and
   noise condition: max |error| and the share within one sample.

Figures only; nothing is asserted (tests/test_sync_*.py assert).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import print_header, table

from livetok.sync import Aligner, BeepDetector, ClockModel, FlashDetector
from livetok.wire import Clock, Flag, Modality, Scale, TokenPacket

MS = 1_000_000
S = 1_000_000_000


def simulate(rng: np.random.Generator, rate_hz: float, seconds: float, offset_ns: int, drift: float,
             jitter_ms: float, outlier_frac: float = 0.0, outlier_ns: int = 500 * MS,
             floor_ns: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(media, arrival) int64 ns: capture = offset + (1 + drift) media; arrival = capture + delay."""
    n = int(rate_hz * seconds)
    media = np.round(np.arange(n) * (S / rate_hz)).astype(np.int64)
    capture = offset_ns + media + np.round(media * drift).astype(np.int64)
    delay = np.round(rng.exponential(jitter_ms * MS, n)).astype(np.int64) + floor_ns
    delay[rng.random(n) < outlier_frac] += outlier_ns
    return media, capture + delay


def bench_clock(hours: float) -> list[list[object]]:
    rng = np.random.default_rng(0)
    media, arrival = simulate(rng, 50, 3600 * hours, 10 * S, 100e-6, 1.0, 0.01)
    ml, al = media.tolist(), arrival.tolist()
    model = ClockModel()
    observe = model.observe
    t = time.perf_counter()
    for m, a in zip(ml, al, strict=True):
        observe(m, a)
    obs_us = (time.perf_counter() - t) / len(ml) * 1e6
    to_host = model.to_host
    t = time.perf_counter()
    for m in ml[:100_000]:
        to_host(m)
    host_us = (time.perf_counter() - t) / min(len(ml), 100_000) * 1e6
    return [["ClockModel.observe (amortised)", f"{obs_us:.2f}", f"{len(ml)} observations"],
            ["ClockModel.to_host", f"{host_us:.2f}", ""]]


def packets(seconds: float) -> list[TokenPacket]:
    def pkt(modality: Modality, scale: Scale, seq: int, start: int, end: int, cells: int) -> TokenPacket:
        side = 1 if cells == 1 else 14
        return TokenPacket("src", modality, scale, seq, start, end, Clock.UNIX, "0123456789abcdef", Flag.KEYFRAME,
                           (side, side), np.zeros((cells, 4), np.uint16))

    out: list[tuple[int, TokenPacket]] = []
    t0 = 1_000 * S
    for k in range(int(seconds * 50)):
        s, e = t0 + k * 20 * MS, t0 + (k + 1) * 20 * MS
        out.append((e, pkt(Modality.AUDIO, Scale.FINE, k, s, e, 1)))
    for k in range(int(seconds * 12.5)):
        s, e = t0 + k * 80 * MS, t0 + (k + 1) * 80 * MS
        out.append((e, pkt(Modality.AUDIO, Scale.COARSE, k, s, e, 1)))
    for k in range(int(seconds * 30)):
        s = t0 + k * S // 30
        out.append((s, pkt(Modality.VIDEO, Scale.FINE, k, s, s + S // 30, 196)))
    out.sort(key=lambda p: p[0])
    return [p for _, p in out]


def bench_aligner(seconds: float = 120.0) -> list[list[object]]:
    stream = packets(seconds)
    al = Aligner("g", to_wire=lambda ns: ns + 1_700_000_000 * S, clock=Clock.UNIX)
    add_s = poll_s = 0.0
    polls = steps = 0
    next_poll = stream[0].start_ns
    for p in stream:
        t = time.perf_counter()
        al.add(p)
        add_s += time.perf_counter() - t
        if p.modality == Modality.VIDEO:
            al.watermark(Modality.VIDEO, p.start_ns + 1)
        elif p.scale == Scale.COARSE:
            al.watermark(Modality.AUDIO, p.end_ns)
        if p.end_ns >= next_poll:  # the daemon's ticker: every 10 ms
            t = time.perf_counter()
            steps += len(al.poll(p.end_ns))
            poll_s += time.perf_counter() - t
            polls += 1
            next_poll += 10 * MS
    return [["Aligner.add", f"{add_s / len(stream) * 1e6:.2f}", f"{len(stream)} packets"],
            ["Aligner.poll (per call)", f"{poll_s / polls * 1e6:.2f}", f"{polls} calls, every 10 ms"],
            ["Aligner.poll (per step emitted)", f"{poll_s / max(1, steps) * 1e6:.2f}",
             f"{steps} steps, ~{(len(stream) / max(1, steps)):.1f} packets each, converted to UNIX"]]


def bench_detectors() -> list[list[object]]:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (50, 224, 224, 3), dtype=np.uint8)
    flash = FlashDetector()
    t = time.perf_counter()
    for i, f in enumerate(frames):
        flash.feed(f, i)
    flash_us = (time.perf_counter() - t) / len(frames) * 1e6
    rows: list[list[object]] = [["FlashDetector.feed", f"{flash_us:.1f}", "224 x 224 frame"]]
    for rate in (16_000, 48_000):
        block = rate // 100
        x = 0.1 * rng.standard_normal(rate * 20)
        beep = BeepDetector()
        n = x.size // block
        t = time.perf_counter()
        for i in range(n):
            beep.feed(x[i * block : (i + 1) * block], i * 10 * MS, rate)
        rows.append([f"BeepDetector.feed ({rate} Hz)", f"{(time.perf_counter() - t) / n * 1e6:.1f}",
                     f"{block}-sample (10 ms) block"])
    return rows


def simulated_hour(hours: float) -> str:
    rng = np.random.default_rng(7)
    seconds = 3600 * hours
    a_off, a_drift = 1_000 * S, 100e-6
    v_off, v_drift, v_floor = 1_000 * S + 250 * MS, -100e-6, 40 * MS
    am, aa = simulate(rng, 50, seconds, a_off, a_drift, 0.5, 0.001, 30 * MS)
    vm, va = simulate(rng, 30, seconds, v_off, v_drift, 4.0, 0.01, 500 * MS, v_floor)
    for t0 in (seconds * 0.28, seconds * 0.69):
        va[(vm >= t0 * S) & (vm < (t0 + 2) * S)] += 1_500 * MS
    audio, video = ClockModel(), ClockModel(latency_ns=v_floor)
    arrivals = np.concatenate([aa, va])
    order = np.argsort(arrivals, kind="stable")
    media = np.concatenate([am, vm])[order].tolist()
    is_video = (order >= am.size).tolist()
    check, skews, errors = a_off + 30 * S, [], []
    for vid, m, arr in zip(is_video, media, arrivals[order].tolist(), strict=True):
        (video if vid else audio).observe(m, arr)
        if arr >= check:
            event = check - 100 * MS
            ta = audio.to_host(round((event - a_off) / (1 + a_drift)))
            tv = video.to_host(round((event - v_off) / (1 + v_drift)))
            skews.append(abs(ta - tv))
            errors += [abs(ta - event), abs(tv - event)]
            check += 30 * S
    return (f"simulated {hours:g} h (+100 ppm audio, -100 ppm video, jitter, outliers, stalls): "
            f"{len(skews)} checkpoints, max |A/V skew| {max(skews) / 1e3:.1f} µs, "
            f"max |to_host - true| {max(errors) / 1e3:.1f} µs; drift fitted {audio.drift_ppm:+.2f} / "
            f"{video.drift_ppm:+.2f} ppm")


def beep_precision(count: int) -> list[list[object]]:
    rows: list[list[object]] = []
    # (name, white noise rms, background tone amplitude, its frequency); the beep's amplitude is 0.5
    conditions = [("clean", 0.0, 0.0, 0.0), ("noise -31 dB", 0.01, 0.0, 0.0),
                  ("noise -31 dB + 300 Hz tone -20 dB", 0.01, 0.05, 300.0),
                  ("noise -31 dB + 440 Hz tone -8 dB", 0.01, 0.2, 440.0)]
    for rate in (16_000, 44_100, 48_000):
        for name, noise, tone, hz in conditions:
            rng = np.random.default_rng(rate)
            errors = []
            for _ in range(count):
                n = rate // 2
                background = tone * np.sin(2 * np.pi * hz * np.arange(n) / rate + rng.uniform(0, 7))
                x = noise * rng.standard_normal(n) + background
                onset_s = 0.1 + rng.uniform(0, 0.1)
                s0 = int(np.ceil(onset_s * rate))
                m = rate // 20
                t = (np.arange(s0, s0 + m) / rate) - onset_s  # sub-sample onset time, random phase
                x[s0 : s0 + m] += 0.5 * np.sin(2 * np.pi * 1000 * t + rng.uniform(0, 2 * np.pi))
                found = BeepDetector().feed_all(x, 0, rate)
                errors.append(found[0] - s0 * S / rate if found else float("inf"))
            err = np.abs(np.array(errors))
            rows.append([rate, name, f"{err.max() / 1e3:.1f}", f"{100 * np.mean(err <= S / rate + 1):.0f} %",
                         f"{S / rate / 1e3:.1f}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=1.0, help="length of the simulated run (h)")
    ap.add_argument("--beeps", type=int, default=100, help="beeps per precision condition")
    args = ap.parse_args()
    contention = print_header("livetok.sync: clock model, aligner, markers")
    rows = bench_clock(args.hours) + bench_aligner() + bench_detectors()
    print(table(["operation", "µs", "per"], rows))
    print()
    print(simulated_hour(args.hours))
    print()
    print("beep onset error (detected minus first sample of the beep; 1 kHz, 50 ms, amplitude 0.5):")
    print(table(["rate (Hz)", "condition", "max |error| (µs)", "within 1 sample", "1 sample (µs)"],
                beep_precision(args.beeps)))
    print(contention.report())


if __name__ == "__main__":
    main()
