"""Audio tokenizer CPU cost: ms of CPU time (time.process_time) per second of audio, both scales.

    .venv/bin/python bench/bench_audio.py [--seconds 60] [--repeat 3]

One ``AudioStream`` per run tokenizes a speech signal (espeak-ng, or a tone + noise mix when
espeak-ng is missing) pushed in chunks of 10 ms, 20 ms, 100 ms, 1 s and the whole signal, then
flushed; every run emits fine (50 Hz, 4 x 1024) and coarse (12.5 Hz, 2 x 1024) packets. Inputs:

* 16 kHz mono ``float64`` through ``push_samples`` (the model rate: no resampler);
* 48 kHz stereo ``float32`` through ``push_array(samples [2, N], 48000)`` (libswresample path).

process_time counts every thread of this process, so BLAS threads are included. The table shows
the least CPU time of ``--repeat`` runs and splits it into resampler, log-mel front end, fine RVQ,
coarse RVQ and the rest (step bookkeeping and TokenPacket construction), timed by wrapping those
calls (the wrappers add about a microsecond per call). Target: <= 5 ms CPU per second of audio.

At 16 kHz it also compares the packaged numba row kernel (``ScaleQuantizer.encode_rows``: float32
codebooks, 4 dimensions per pass, one instruction sequence per row so the codes never depend on
chunking) with the NumPy/BLAS float64 formulation ``ScaleQuantizer.encode_np``: µs per token step
by rows per call, and the whole stream at 10, 20 and 100 ms chunks with either one (interleaved).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import print_header, speech_signal, table

from livetok.tokenizers import TokenizerConfig, Tokenizers
from livetok.tokenizers.audio import AudioStream
from livetok.tokenizers.rvq import Encoded, ScaleQuantizer
from livetok.wire import TokenPacket

CHUNKS_MS = (10, 20, 100, 1000, None)  # None: the whole signal in one push
PARTS = ("resampler", "log-mel", "fine RVQ", "coarse RVQ")


class Timed:
    """Wraps a callable, adding its CPU time to ``acc[name]``."""

    def __init__(self, fn: Callable[..., Any], acc: dict[str, float], name: str) -> None:
        self.fn, self.acc, self.name = fn, acc, name

    def __call__(self, *a: Any, **k: Any) -> Any:
        t = time.process_time()
        try:
            return self.fn(*a, **k)
        finally:
            self.acc[self.name] += time.process_time() - t


class TimedQuantizer:
    """Stands in for a ScaleQuantizer: its ``encode_*`` methods are timed, the rest passed through."""

    def __init__(self, q: ScaleQuantizer, acc: dict[str, float], name: str) -> None:
        self._q, self._acc, self._name = q, acc, name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._q, attr)
        return Timed(value, self._acc, self._name) if attr.startswith("encode") else value


def rvq_paths(toks: Tokenizers, x16: np.ndarray, repeat: int) -> None:
    """The audio RVQ formulations side by side: µs per step (row) at the batch sizes streaming sees."""
    st = toks.audio.stream("mic")
    mel = st.logmel.push(x16[0].astype(np.float64))
    rows = []
    for scale, q in toks.audio.quantizers.items():
        per = toks.audio.frames_per_step[scale]
        n_all = mel.shape[0] // per
        x_all = mel[: n_all * per].reshape(n_all, per * mel.shape[1])
        ref = q.encode_np(x_all).codes
        methods = [m for m in ("encode_np", "encode_rows") if hasattr(q, m)]
        for n in (1, 5, 50, n_all):
            cells: list[object] = [scale, n]
            for m in methods:
                fn = getattr(q, m)
                fn(x_all[:n])  # jit / warm
                batches = [x_all[i : i + n] for i in range(0, min(n_all, max(n, 200)) - n + 1, n)]
                best = float("inf")
                for _ in range(repeat):
                    t = time.process_time()
                    for b in batches:
                        fn(b)
                    best = min(best, (time.process_time() - t) / (len(batches) * n))
                cells.append(best * 1e6)
            if len(methods) == 2:
                cells.append(cells[-2] / cells[-1])  # type: ignore[operator]
            rows.append(cells)
        if "encode_rows" in methods:
            chunked = np.concatenate([q.encode_rows(x_all[i : i + 7]).codes for i in range(0, n_all, 7)])
            whole = q.encode_rows(x_all).codes
            same = 100 * float(np.mean(whole == ref))
            print(f"{scale}: encode_rows vs encode_np codes equal {same:.3f} %; encode_rows chunked by 7 "
                  f"== whole: {bool(np.array_equal(chunked, whole))}")
    heads = ["scale", "rows per call", *(f"{m} µs/row" for m in methods)]
    if len(methods) == 2:
        heads.append("np / rows")
    print("\naudio RVQ (projection + all levels), CPU µs per token step, by rows per call")
    print(table(heads, rows))


class NumpyRows:
    """Stands in for a ScaleQuantizer whose stream encode goes through ``encode_np`` (BLAS) instead
    of the numba row kernel: the formulation the kernel is compared with."""

    def __init__(self, q: ScaleQuantizer) -> None:
        self._q = q

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._q, attr)

    def encode_rows(self, x: np.ndarray) -> Encoded:
        return self._q.encode_np(np.ascontiguousarray(x, dtype=np.float64))


def in_stream(toks: Tokenizers, x16: np.ndarray, secs: float, repeat: int) -> None:
    """The numba row kernel vs ``encode_np`` inside the full stream at small chunks (16 kHz mono)."""
    originals = dict(toks.audio.quantizers)
    variants: dict[str, dict[str, Any]] = {
        "encode_np (NumPy/BLAS float64)": {s: NumpyRows(q) for s, q in originals.items()},
        "encode_rows (numba, packaged)": originals,
    }
    s64 = x16[0].astype(np.float64)

    def run(chunk: int, quantizers: dict[str, Any]) -> tuple[float, list[TokenPacket]]:
        toks.audio.quantizers.update(quantizers)
        try:
            st = toks.audio.stream("mic")
            t = time.process_time()
            out: list[TokenPacket] = []
            for i in range(0, s64.size, chunk):
                out += st.push_samples(s64[i : i + chunk])
            out += st.flush()
            return time.process_time() - t, out
        finally:
            toks.audio.quantizers.update(originals)

    for qs in variants.values():
        run(16000, qs)  # warm
    rows = []
    for ms in (10, 20, 100):
        chunk = 16000 * ms // 1000
        best = dict.fromkeys(variants, float("inf"))
        for _ in range(repeat):
            for name, qs in variants.items():
                best[name] = min(best[name], run(chunk, qs)[0])
        base = best["encode_np (NumPy/BLAS float64)"]
        rows += [[f"{ms} ms", name, cpu * 1e3 / secs, base / cpu] for name, cpu in best.items()]
    ref = run(320, variants["encode_np (NumPy/BLAS float64)"])[1]
    new = run(320, originals)[1]
    same = np.mean([np.array_equal(a.codes, b.codes) for a, b in zip(ref, new, strict=True)])
    print("\nRVQ formulation in the stream, 16 kHz mono (interleaved; CPU ms per s of audio, all stages)")
    print(table(["chunk", "RVQ", "CPU ms/s", "speed-up"], rows))
    print(f"packets with identical codes, encode_rows vs encode_np (20 ms chunks): {100 * same:.2f} % of {len(ref)}")


def run_once(
    toks: Tokenizers, x: np.ndarray, rate: int, chunk: int, split: bool
) -> tuple[float, dict[str, float], dict[str, int]]:
    """CPU seconds for one stream over ``x [C, N]`` pushed ``chunk`` samples at a time."""
    acc = dict.fromkeys(PARTS, 0.0)
    st: AudioStream = toks.audio.stream("mic")
    originals = dict(toks.audio.quantizers)
    if split:
        st.logmel.push = Timed(st.logmel.push, acc, "log-mel")  # type: ignore[method-assign]
        st.resampler.push_array = Timed(st.resampler.push_array, acc, "resampler")  # type: ignore[method-assign]
        st.resampler.flush = Timed(st.resampler.flush, acc, "resampler")  # type: ignore[method-assign]
        for scale, q in originals.items():
            toks.audio.quantizers[scale] = TimedQuantizer(q, acc, f"{scale} RVQ")  # type: ignore[assignment]
    counts = {"fine": 0, "coarse": 0}
    mono = rate == toks.cfg.audio.sample_rate and x.shape[0] == 1
    x64 = x[0].astype(np.float64) if mono else x
    try:
        t0 = time.process_time()
        packets = []
        for i in range(0, x.shape[1], chunk):
            packets += st.push_samples(x64[i : i + chunk]) if mono else st.push_array(x[:, i : i + chunk], rate)
        packets += st.flush()
        cpu = time.process_time() - t0
    finally:
        toks.audio.quantizers.update(originals)
    for p in packets:
        counts[p.scale.name.lower()] += 1
    return cpu, acc, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per row; the least CPU time is shown")
    args = ap.parse_args()
    cont = print_header("bench_audio: streaming audio tokenizer, CPU ms per second of audio (fine + coarse)")
    toks = Tokenizers.from_config(TokenizerConfig(device="cpu"))
    secs = args.seconds

    for rate, channels, label in ((16000, 1, "16 kHz mono, push_samples"), (48000, 2, "48 kHz stereo, push_array")):
        x, kind = speech_signal(rate, secs, channels)
        rows = []
        for ms in CHUNKS_MS:
            chunk = x.shape[1] if ms is None else rate * ms // 1000
            best = best_split = float("inf")
            acc: dict[str, float] = {}
            for _ in range(args.repeat):
                cpu, _, counts = run_once(toks, x, rate, chunk, split=False)
                best = min(best, cpu)
                cpu_split, acc_i, _ = run_once(toks, x, rate, chunk, split=True)
                if cpu_split < best_split:
                    best_split, acc = cpu_split, acc_i
            parts = [acc[p] * 1e3 / secs for p in PARTS]
            rest = best_split * 1e3 / secs - sum(parts)  # the split comes from its own (wrapped) best run
            name = f"whole {secs:g} s" if ms is None else f"{ms} ms"
            verdict = "pass" if best * 1e3 / secs <= 5.0 else "miss"
            rows.append([name, best * 1e3 / secs, verdict, *parts, max(rest, 0.0), counts["fine"], counts["coarse"]])
        print(f"\n{label}: {secs:g} s of {kind}; CPU ms per second of audio (target <= 5)")
        print(table(["chunk", "total", "target", *PARTS, "packets+rest", "fine pkts", "coarse pkts"], rows))
        if rate == toks.cfg.audio.sample_rate:
            rvq_paths(toks, x, args.repeat)
            in_stream(toks, x, secs, args.repeat)
    print(cont.report())


if __name__ == "__main__":
    main()
