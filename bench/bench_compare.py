"""Audio tokenizers side by side: CPU ms per second of audio, encode only, 2 torch threads.

    .venv/bin/pip install --no-deps -r bench/requirements-bench.txt   # never lets pip touch torch
    .venv/bin/python bench/bench_compare.py [--seconds 10] [--repeat 2]

The same 10 s speech signal (espeak-ng, or a tone + noise mix) at each model's native rate:

* livetok: the streaming ``AudioStream`` at 16 kHz (80 ms pushes, and the whole signal at once),
  both scales (fine 50 Hz x 4 codes, coarse 12.5 Hz x 2 codes); and its fine RVQ alone;
* vector-quantize-pytorch ``ResidualVQ`` (dim 64, 1024 codes, 4 quantizers) holding livetok's own
  audio fine codebooks, encoding the same projected vectors (whole signal, and 4 steps = 80 ms per
  call); the share of codes equal to livetok's is printed;
* EnCodec 24 kHz (``encodec`` package, ``pretrained=False``: random weights, the same arithmetic)
  at 1.5 and 6 kbps, whole signal in one call (EnCodec has no streaming encoder);
* Mimi (``moshi`` package, ``get_mimi(None)``: random weights, 8 codebooks as Moshi uses) encoding
  80 ms frames one at a time inside ``mimi.streaming(1)``.

CPU time is ``time.process_time`` (every thread of the process), best of ``--repeat``; wall time
of the same run beside it. Random-weight networks are run with ``torch.set_flush_denormal(True)``
so denormal arithmetic does not inflate them. A package that is missing or fails is reported as
such and the rest still runs.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from _common import print_header, speech_signal, table

from livetok.tokenizers import TokenizerConfig, Tokenizers

Row = list[object]


def cpu_wall(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(CPU s, wall s) of the run with the least CPU time, after one warm-up call."""
    fn()
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        fn()
        best = min(best, (time.process_time() - c, time.perf_counter() - w))
    return best


def row(name: str, rate: int, codes: str, how: str, cw: tuple[float, float], secs: float, note: str = "") -> Row:
    cpu, wall = cw
    return [name, rate, codes, how, cpu * 1e3 / secs, wall * 1e3 / secs, secs / wall, note]


def bench_livetok(
    toks: Tokenizers, x16: np.ndarray, secs: float, repeat: int
) -> tuple[list[Row], np.ndarray, np.ndarray]:
    rows = []
    s = x16[0].astype(np.float64)
    for label, chunk in (("80 ms pushes", 1280), ("whole signal", s.size)):
        def run(chunk: int = chunk) -> None:
            st = toks.audio.stream("mic")
            for i in range(0, s.size, chunk):
                st.push_samples(s[i : i + chunk])
            st.flush()
        rows.append(row("livetok (both scales)", 16000, "50 Hz x 4 + 12.5 Hz x 2", label, cpu_wall(run, repeat), secs))
    # the fine RVQ alone, on the same step vectors the stream builds
    mel = toks.audio.stream("mic").logmel.push(s)
    q = toks.audio.quantizers["fine"]
    per = toks.audio.frames_per_step["fine"]
    n = mel.shape[0] // per
    x = np.ascontiguousarray(mel[: n * per].reshape(n, per * mel.shape[1]))
    enc = q.encode_rows if hasattr(q, "encode_rows") else q.encode_np
    codes = enc(x).codes
    rows.append(row("livetok fine RVQ only", 16000, "50 Hz x 4", f"{enc.__name__}, whole",
                    cpu_wall(lambda: enc(x), repeat), secs))
    rows.append(row("livetok fine RVQ only", 16000, "50 Hz x 4", f"{enc.__name__}, 4 steps/call",
                    cpu_wall(lambda: [enc(x[i : i + 4]) for i in range(0, n, 4)], repeat), secs))
    z = (x - q.mean) @ q.proj
    return rows, z, codes


def bench_vqp(toks: Tokenizers, z: np.ndarray, ours: np.ndarray, secs: float, repeat: int) -> list[Row]:
    from vector_quantize_pytorch import ResidualVQ

    q = toks.audio.quantizers["fine"]
    rvq = ResidualVQ(dim=q.dim, codebook_size=q.codebook_size, num_quantizers=q.levels)
    with torch.no_grad():
        for level, layer in enumerate(rvq.layers):
            cb = layer._codebook
            cb.embed.copy_(torch.as_tensor(q.codebooks[level], dtype=torch.float32)[None])
            cb.embed_avg.copy_(cb.embed)
            cb.initted.fill_(True)
    rvq.eval()
    zt = torch.as_tensor(z, dtype=torch.float32)[None]  # [1, N, d]
    with torch.inference_mode():
        _, idx, _ = rvq(zt)
    agree = 100 * float(np.mean(idx[0].numpy() == ours.astype(np.int64)))
    per_level = ", ".join(f"{100 * float(np.mean(idx[0, :, i].numpy() == ours[:, i])):.2f}" for i in range(q.levels))
    note = f"codes equal to livetok: {agree:.2f} % (per level {per_level})"

    def whole() -> None:
        with torch.inference_mode():
            rvq(zt)

    def chunks() -> None:
        with torch.inference_mode():
            for i in range(0, zt.shape[1], 4):
                rvq(zt[:, i : i + 4])

    return [
        row("vector-quantize-pytorch ResidualVQ", 16000, "50 Hz x 4", "whole", cpu_wall(whole, repeat), secs, note),
        row("vector-quantize-pytorch ResidualVQ", 16000, "50 Hz x 4", "4 steps/call", cpu_wall(chunks, repeat), secs),
    ]


def bench_encodec(x24: np.ndarray, secs: float, repeat: int) -> list[Row]:
    from encodec import EncodecModel

    model = EncodecModel.encodec_model_24khz(pretrained=False)
    model.eval()
    xt = torch.as_tensor(x24)[None]  # [1, 1, N]
    rows = []
    for kbps in (1.5, 6.0):
        model.set_target_bandwidth(kbps)
        n_q = model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, kbps)

        def run() -> None:
            with torch.inference_mode():
                model.encode(xt)

        rows.append(row(f"EnCodec 24 kHz {kbps:g} kbps", 24000, f"75 Hz x {n_q}", "whole (no streaming)",
                        cpu_wall(run, repeat), secs, "random weights"))
    return rows


def bench_mimi(x24: np.ndarray, secs: float, repeat: int) -> list[Row]:
    from moshi.models.loaders import get_mimi

    mimi = get_mimi(None, device="cpu")
    frame = mimi.frame_size  # 1920 samples = 80 ms at 24 kHz
    n = x24.shape[1] // frame * frame
    xt = torch.as_tensor(x24[:, :n])[None]

    def run() -> None:
        with torch.inference_mode(), mimi.streaming(1):
            for i in range(0, n, frame):
                mimi.encode(xt[:, :, i : i + frame])

    rows = [row("Mimi (moshi)", 24000, f"12.5 Hz x {mimi.num_codebooks}", "streaming, 80 ms frames",
                cpu_wall(run, repeat), n / 24000, "random weights")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows.append(row("Mimi (moshi), 1 torch thread", 24000, f"12.5 Hz x {mimi.num_codebooks}",
                        "streaming, 80 ms frames", cpu_wall(run, repeat), n / 24000, "random weights"))
    finally:
        torch.set_num_threads(threads)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_flush_denormal(True)  # before the thread pool starts: its threads inherit the FP mode
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    cont = print_header("bench_compare: audio tokenizers, CPU ms per second of audio (encode only)")
    secs, r = args.seconds, args.repeat
    x16, kind = speech_signal(16000, secs)
    x24, _ = speech_signal(24000, secs)
    print(f"signal: {secs:g} s of {kind}")
    toks = Tokenizers.from_config(TokenizerConfig(device="cpu"))
    rows, z, ours = bench_livetok(toks, x16, secs, r)
    problems = []
    for name, fn in (
        ("vector-quantize-pytorch", lambda: bench_vqp(toks, z, ours, secs, r)),
        ("encodec", lambda: bench_encodec(x24, secs, r)),
        ("moshi (Mimi)", lambda: bench_mimi(x24, secs, r)),
    ):
        try:
            rows += fn()
        except Exception as err:  # a missing or incompatible package: report it, keep going
            problems.append(f"{name}: not measured ({type(err).__name__}: {err})")
    print(f"\nCPU ms per second of audio, best of {r}; torch threads {torch.get_num_threads()}")
    print(table(["tokenizer", "rate Hz", "codes", "chunking", "CPU ms/s", "wall ms/s", "x real time", "note"], rows))
    for p in problems:
        print(p)
    print(cont.report())


if __name__ == "__main__":
    main()
