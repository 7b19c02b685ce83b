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
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
from _common import print_header, speech_signal, table

from livetok.tokenizers import TokenizerConfig, Tokenizers
from livetok.tokenizers.audio import AudioStream

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
            wrapped = SimpleNamespace(encode_np=Timed(q.encode_np, acc, f"{scale} RVQ"))
            toks.audio.quantizers[scale] = wrapped  # type: ignore[assignment]
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
    print_header("bench_audio: streaming audio tokenizer, CPU ms per second of audio (fine + coarse)")
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


if __name__ == "__main__":
    main()
