"""livetok.sync: cost of the clock model, the aligner and the marker detectors; the simulated-hour
A/V skew; the beep onset precision.

    .venv/bin/python bench/bench_sync.py [--hours 1.0] [--beeps 100]

1. ``ClockModel.observe`` (amortised: bucket closes and refits included) and ``to_host``, µs per
   call, over an hour of 50 observations/s.
2. ``Aligner.add`` (µs per packet) and ``Aligner.poll`` (µs per call and per step emitted; the
   conversion of every packet to the wire clock included) for one group of 20 ms + 80 ms audio
   packets and 30 fps video, polled every 10 ms.
3. ``FlashDetector.feed`` per 224 x 224 frame and ``BeepDetector.feed`` per 10 ms block.
4. Start-up: a network camera and a USB microphone with their own clocks, mapped item by item as the
   engine does (SourceClock), quiet and with a busy first second: error in the first 10 s and after;
   without and with the engine's start-up hold (each source held until its clock settles).
5. A simulated hour: an audio clock at +100 ppm (50 blocks/s, exponential 0.5 ms jitter, 0.1 %
   30 ms hiccups) and a camera at -100 ppm (30 frames/s, 40 ms pipeline latency configured,
   exponential 4 ms jitter, 1 % of frames 0.5 s late, two 2 s stalls); every 30 s the same true
   instant is mapped through both models: max |A/V skew| and max |error|.
6. Beep onset error over ``--beeps`` beeps of random phase and sub-sample position, per rate and
   noise condition: max |error| and the share within one sample.

Figures only; nothing is asserted (tests/test_sync_*.py assert).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import print_header, table

from livetok.sync import Aligner, BeepDetector, ClockModel, FlashDetector, SourceClock
from livetok.sync.settle import Settling
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
    al = Aligner[TokenPacket]("g")
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
             f"{steps} steps, ~{(len(stream) / max(1, steps)):.1f} packets each"]]


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


def busy_start(seconds: float, busy_ms: float, hold: bool = True) -> list[list[object]]:
    """A camera and a microphone with their own clocks (no shared media clock), each mapped by its
    SourceClock item by item in arrival order as the engine does, after a busy start: items of the
    first second arrive up to ``busy_ms`` late (decaying to 0). Errors against the true capture time,
    per stretch of the run: the camera's, the microphone's, and A/V (audio minus video at the same
    true instant). And one source whose audio and video share a media clock (a stream), audio 0.7 s
    behind video in arrival: its A/V relation error. ``hold``: every source is held until its clock
    settles, its held items mapped then, in order (the engine does this for streams, cameras and
    microphones)."""
    rng = np.random.default_rng(11)
    v_off, a_off = 1_000 * S + 123 * MS, 1_000 * S + 456 * MS
    vm, va = simulate(rng, 30, seconds, v_off, 50e-6, 4.0, 0.01, 500 * MS, 40 * MS)  # network camera
    am, aa = simulate(rng, 50, seconds, a_off, -30e-6, 1.0, 0.001, 30 * MS)  # USB microphone
    busy = lambda m: np.round(busy_ms * MS * np.clip(1 - m / S, 0, 1)).astype(np.int64)  # noqa: E731
    va, aa = va + busy(vm), aa + busy(am)
    cam = SourceClock(ClockModel(latency_ns=40 * MS), settling=Settling() if hold else None)
    mic = SourceClock(ClockModel(), settling=Settling() if hold else None)
    events = sorted([(int(x), 0, int(m)) for x, m in zip(va, vm, strict=True)]
                    + [(int(x), 1, int(m)) for x, m in zip(aa, am, strict=True)])
    err: dict[int, list[tuple[int, int]]] = {0: [], 1: []}  # per source: (true time, error)
    held: dict[int, list[int]] = {0: [], 1: []}
    for arrival, src, m in events:
        clock, off, drift = (cam, v_off, 50e-6) if src == 0 else (mic, a_off, -30e-6)
        clock.observe(m, arrival)
        held[src].append(m)
        if clock.settled:
            for mm in held[src]:
                true = off + mm + round(mm * drift)
                err[src].append((true, clock.to_host(mm) - true))
            held[src] = []
    v = np.array(sorted(err[0]))
    rows: list[list[object]] = []
    for lo, hi in ((0, 1), (1, 10), (10, 60), (60, seconds)):
        def worst(src: int, lo: float = lo, hi: float = hi) -> float:
            e = [abs(x) for t, x in err[src] if lo * S <= t - v_off < hi * S]
            return max(e) / MS if e else float("nan")
        av = []
        for t, x in err[1]:
            if lo * S <= t - v_off < hi * S:
                i = int(np.argmin(np.abs(v[:, 0] - t)))
                av.append(abs(x - v[i, 1]))
        rows.append([f"{lo:g}-{hi:g} s", f"{worst(0):.2f}", f"{worst(1):.2f}", f"{max(av) / MS:.2f}" if av else "nan"])
    # one media clock for both tracks: a stream with audio arriving 0.7 s behind its video
    one = SourceClock(ClockModel(), settling=Settling() if hold else None)
    sm, sa = simulate(rng, 30, min(seconds, 60), v_off, 20e-6, 4.0, 0.01, 500 * MS)
    tm, ta = simulate(rng, 50, min(seconds, 60), v_off, 20e-6, 4.0, 0.0)
    sa, ta = sa + busy(sm), ta + busy(tm) + 700 * MS
    ev = sorted([(int(x), 0, int(m)) for x, m in zip(sa, sm, strict=True)]
                + [(int(x), 1, int(m)) for x, m in zip(ta, tm, strict=True)])
    host: dict[int, dict[int, int]] = {0: {}, 1: {}}
    waiting: list[tuple[int, int]] = []
    for arrival, trk, m in ev:
        one.observe(m, arrival)
        waiting.append((trk, m))
        if one.settled:
            for t, mm in waiting:
                host[t][mm] = one.to_host(mm)
            waiting = []
    vmedia = np.array(sorted(host[0]))
    rel = 0
    for m, h in host[1].items():
        mv = int(vmedia[np.argmin(np.abs(vmedia - m))])
        rel = max(rel, abs((h - host[0][mv]) - (m - mv)))
    rows.append(["one media clock", "", "", f"{rel / MS:.3f} (A/V relation)"])
    return rows


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
    for hold in (False, True):
        for busy_ms in (0, 290):
            print(f"busy start ({busy_ms} ms late in the first second), 10 min, camera "
                  f"{'and microphone held until their clocks settle (as the engine does)' if hold else 'not held'}: "
                  "max |error| (ms) of SourceClock mappings")
            print(table(["stretch", "camera", "microphone", "A/V (own clocks)"], busy_start(600, busy_ms, hold)))
            print()
    print("beep onset error (detected minus first sample of the beep; 1 kHz, 50 ms, amplitude 0.5):")
    print(table(["rate (Hz)", "condition", "max |error| (µs)", "within 1 sample", "1 sample (µs)"],
                beep_precision(args.beeps)))
    print(contention.report())


if __name__ == "__main__":
    main()
