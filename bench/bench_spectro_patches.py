"""``spectrogram-patches`` CPU cost: ms of CPU time (time.process_time) per second of 16 kHz audio.

    .venv/bin/python bench/bench_spectro_patches.py [--seconds 60] [--repeat 5]

One stream per run takes a speech signal (espeak-ng, or a tone + noise mix when it is missing) at
16 kHz mono in chunks of 10 ms, 20 ms, 100 ms, 1 s and the whole signal, then flushes; every run
goes through the three phases (take -> run -> emit) and makes one step of 8 patches every 80 ms.
Configuration: the defaults (128 mels, 25 ms window, 10 ms hop, patches of 16 bands x 16 frames,
stride 8 frames, RVQ 4 x 1024 on a 64-value PCA projection). The projection is fitted on the
signal's own patches; the RVQ codebooks are random values of the fitted shape, which costs exactly
what fitted ones do (the kernel's work does not depend on the values) and saves fitting 4 x 1024
codes here. The table shows the least CPU time of ``--repeat`` runs, the median next to it, and
splits it into the log-mel front end, patch cutting with the rest of take() (buffering), the RVQ
kernel (run) and emit. Target: <= 10 ms CPU per second of audio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import print_header, speech_signal, table

from livetok.tokenizers.codebooks import ScaleArrays
from livetok.tokenizers.kmeans import pca
from livetok.tokenizers.plugin_config import SpectroPatchConfig
from livetok.tokenizers.protocol import StepCodes
from livetok.tokenizers.quantizer_file import make_quantizer_set
from livetok.tokenizers.spectro_patches import KIND, STREAM, SpectroPatchTokenizer

RATE = 16000
CHUNKS_MS = (10, 20, 100, 1000, None)


class Timed:
    def __init__(self, fn: Callable[..., Any], acc: dict[str, float], name: str) -> None:
        self.fn, self.acc, self.name = fn, acc, name

    def __call__(self, *a: Any, **k: Any) -> Any:
        t = time.process_time()
        try:
            return self.fn(*a, **k)
        finally:
            self.acc[self.name] += time.process_time() - t


def tokenizer(x: np.ndarray) -> SpectroPatchTokenizer:
    cfg = SpectroPatchConfig()
    tok = SpectroPatchTokenizer("bench", cfg)
    patches = np.concatenate([j.patches for j in tok.stream("fit").take(x[: 20 * RATE])])
    q = cfg.quantizer
    assert q.dim is not None
    mean, proj = pca(patches, q.dim)
    rng = np.random.default_rng(0)
    books = rng.normal(0, 1.0, (q.depth, q.codebook_size, q.dim)) * np.linspace(8, 1, q.depth)[:, None, None]
    tok.use_codebooks(make_quantizer_set(KIND, tok.fitted_for(), {STREAM: ScaleArrays(mean, proj, books)}))
    return tok


def run_once(tok: SpectroPatchTokenizer, x: np.ndarray, chunk: int, split: bool) -> tuple[float, dict[str, float], int]:
    acc = {"log-mel": 0.0, "take (cut, buffer)": 0.0, "run (RVQ)": 0.0, "emit": 0.0}
    s = tok.stream("mic")
    run, emit = tok.run, s.emit
    if split:
        s.logmel.push = Timed(s.logmel.push, acc, "log-mel")  # type: ignore[method-assign]
    steps: list[StepCodes] = []
    t0 = time.process_time()
    for i in range(0, x.size, chunk):
        ta = time.process_time() if split else 0.0
        jobs = s.take(x[i : i + chunk])
        if split:
            acc["take (cut, buffer)"] += time.process_time() - ta
            tb = time.process_time()
        outs = run(jobs)
        if split:
            acc["run (RVQ)"] += time.process_time() - tb
            tb = time.process_time()
        for job, o in zip(jobs, outs, strict=True):
            steps += emit(job, o)
        if split:
            acc["emit"] += time.process_time() - tb
    jobs = s.flush()
    for job, o in zip(jobs, run(jobs), strict=True):
        steps += emit(job, o)
    cpu = time.process_time() - t0
    acc["take (cut, buffer)"] -= acc["log-mel"]
    return cpu, acc, len(steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=5, help="runs per row; the least CPU time is shown")
    args = ap.parse_args()
    cont = print_header("bench_spectro_patches: spectrogram patches, CPU ms per second of 16 kHz audio")
    x2, kind = speech_signal(RATE, args.seconds)
    x = x2[0]
    tok = tokenizer(x)
    print(f"input: {args.seconds:g} s of {kind}; {tok.cfg.rows} patches of {tok.cfg.patch_size} values per "
          f"{tok.step_samples / RATE * 1000:g} ms step; RVQ {tok.cfg.quantizer.depth} x "
          f"{tok.cfg.quantizer.codebook_size} on {tok.cfg.quantizer.dim} values")
    run_once(tok, x[: 2 * RATE], 320, False)  # jit, caches
    rows = []
    for ms in CHUNKS_MS:
        chunk = x.size if ms is None else RATE * ms // 1000
        cpus = [run_once(tok, x, chunk, False)[0] for _ in range(args.repeat)]
        _, parts, n = run_once(tok, x, chunk, True)
        best, median = min(cpus), statistics.median(cpus)
        rows.append([f"{ms} ms" if ms else "whole", best * 1e3 / args.seconds, median * 1e3 / args.seconds,
                     *(v * 1e3 / args.seconds for v in parts.values()), n])
    heads = ["chunk", "CPU ms/s (best)", "median", *(f"{k} ms/s" for k in
                                                     ("log-mel", "take (cut, buffer)", "run (RVQ)", "emit")), "steps"]
    print(table(heads, rows))
    print("(the split is one separate run with timers around each part, which add a little)")
    print(cont.report())


if __name__ == "__main__":
    main()
