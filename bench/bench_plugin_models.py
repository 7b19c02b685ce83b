"""The plug-in path's own cost per batch next to calling the model directly, in the same run.

    .venv/bin/python bench/bench_plugin_models.py [--ticks 150] [--repeat 5]

Model: silero-vad (TorchScript and ONNX files from its wheel; nothing is downloaded), N microphones
(1, 4, 8) each giving one 512-sample chunk (32 ms at 16 kHz) per tick, so each tick is one batch.

* **direct**: the model called by hand with inputs already made: ``[N, 64 + 512]`` context and
  chunk, the ``[2, N, 128]`` state (ONNX: ``session.run``; TorchScript: ``_model(x, state)``), the
  state kept for the next call: the least a program calling the model itself must do.
* **direct, padded**: the same at the batch size the plug-in path calls with (its calibrated sizes:
  a smaller batch is padded with zero rows up to one of them, see livetok/tokenizers/models/batching.py).
* **plug-in**: ``take(chunk)`` for every stream + ``run(jobs)`` (one model call) + ``emit(job, output)``
  for every stream, which quantizes the speech probability with 4 k-means units and numbers the step.
* **daemon**: what the daemon's engine runs per engine call for its plug-in tokenizers
  (``livetok.pipeline.plugins.plugin_audio``): each microphone's block as an ``AudioCapture``
  through its ``PluginAudioTrack`` (continuity check, resampler, take), one batched call per
  tokenizer, and the emitted steps made into ``TokenPacket`` s (times, seq, flags, codebook id).

Both use one intra-op thread (``ModelConfig.threads: 1``, ``torch.set_num_threads(1)``), are timed
with perf_counter per tick, interleaved run by run, best of ``--repeat`` runs (median next to it).
Target: the plug-in path at most 5 % or 0.5 ms per batch above calling the model directly.
"""

from __future__ import annotations

import argparse
import importlib.resources
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import REPO, print_header, speech_signal, table

from livetok.pipeline.plugins import plugin_audio
from livetok.streams.types import AudioCapture
from livetok.tokenizers.kinds.base import Plugin
from livetok.tokenizers.models.audio import AudioModelEncoder
from livetok.tokenizers.models.contract import ModelConfig
from livetok.tokenizers.plugin_config import QuantizerConfig
from livetok.tokenizers.plugin_track import PluginAudioTrack
from livetok.tokenizers.quantizer_file import make_quantizer_set
from livetok.tokenizers.quantizers import fit_quantizer

CHUNK, CONTEXT = 512, 64
SOURCES = (1, 4, 8)
BASE: dict[str, Any] = {"modality": "audio", "sample_rate": 16000, "output_layout": "BD", "dim": 1, "hop": 512,
                        "chunk": 512, "context": 64}
IO = {
    "onnx": BASE | {"input_name": "input", "output_name": "output",
                    "state": [{"input": "state", "output": "stateN", "shape": [2, "B", 128]}],
                    "constants": [{"name": "sr", "value": 16000, "dtype": "int64"}]},
    "torchscript": BASE | {"input_name": "x", "output_name": "0",
                           "state": [{"input": "state", "output": "1", "shape": [2, "B", 128]}]},
}


def silero(name: str) -> Path:
    return Path(str(importlib.resources.files("silero_vad") / "data" / name))


def encoder(fmt: str, x: np.ndarray) -> AudioModelEncoder:
    path = silero("silero_vad.onnx" if fmt == "onnx" else "silero_vad.jit")
    cfg = ModelConfig(path=path, io=IO[fmt], batch=8, device="cpu", threads=1,
                      submodule=None if fmt == "onnx" else "_model")
    enc = AudioModelEncoder.load("vad", cfg, fmt)  # type: ignore[arg-type]
    s = enc.stream("fit")
    probs = []
    jobs = s.take(x[: 16000 * 20])
    for job, out in zip(jobs, enc.run(jobs), strict=True):
        s.settle(job, out)
        probs.append(out.frames)
    q = QuantizerConfig(kind="kmeans", codebook_size=4, dim=None, iters=10)
    enc.use_codebooks(make_quantizer_set(fmt, enc.fitted_for(), {"tokens": fit_quantizer(np.concatenate(probs), q)}), q)
    return enc


def direct_call(fmt: str) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        session = ort.InferenceSession(str(silero("silero_vad.onnx")), opts, providers=["CPUExecutionProvider"])
        sr = np.array(16000, np.int64)

        def call(x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            p, s = session.run(None, {"input": x, "state": state, "sr": sr})
            return p, s

        return call
    model = torch.jit.load(str(silero("silero_vad.jit")))._model

    def call_jit(x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            p, s = model(torch.from_numpy(x), torch.from_numpy(state))
        return p.numpy(), s.numpy()

    return call_jit


def run_direct(call: Callable[..., Any], x: np.ndarray, n: int, ticks: int) -> list[float]:
    """Per-tick seconds; the inputs of each tick are made before its timer starts."""
    state = np.zeros((2, n, 128), np.float32)
    context = np.zeros((n, CONTEXT), np.float32)
    out = []
    for t in range(ticks):
        inp = np.concatenate([context, x[:n, t * CHUNK : (t + 1) * CHUNK]], axis=1)
        t0 = time.perf_counter()
        _, state = call(inp, state)
        out.append(time.perf_counter() - t0)
        context = inp[:, -CONTEXT:]
    return out


class TimedModel:
    """Stands in for the runner's onnxruntime session or TorchScript module: the same calls, timed."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.spent = inner, 0.0

    def run(self, *a: Any, **k: Any) -> Any:  # onnxruntime.InferenceSession.run
        t = time.perf_counter()
        try:
            return self.inner.run(*a, **k)
        finally:
            self.spent += time.perf_counter() - t

    def __call__(self, *a: Any, **k: Any) -> Any:  # a TorchScript module
        t = time.perf_counter()
        try:
            return self.inner(*a, **k)
        finally:
            self.spent += time.perf_counter() - t


def run_plugin(enc: AudioModelEncoder, x: np.ndarray, n: int, ticks: int,
               own: list[float] | None = None) -> list[float]:
    """Per-tick seconds of the three phases; ``own`` gets, per tick, that time less the time spent
    inside the model call itself (measured in the same tick)."""
    runner: Any = enc.runner
    attr = "_session" if hasattr(runner, "_session") else "_module"
    timed = TimedModel(getattr(runner, attr))
    setattr(runner, attr, timed)
    streams = [enc.stream(f"mic{i}") for i in range(n)]
    out = []
    try:
        for t in range(ticks):
            chunks = [x[i, t * CHUNK : (t + 1) * CHUNK] for i in range(n)]
            timed.spent = 0.0
            t0 = time.perf_counter()
            jobs = [j for s, c in zip(streams, chunks, strict=True) for j in s.take(c)]
            for job, o in zip(jobs, enc.run(jobs), strict=True):
                job.stream.emit(job, o)
            out.append(time.perf_counter() - t0)
            if own is not None:
                own.append(out[-1] - timed.spent)
    finally:
        setattr(runner, attr, timed.inner)
    return out


class Timed:
    """The model inside ``enc``'s runner, timed, while in the ``with`` block."""

    def __init__(self, enc: AudioModelEncoder) -> None:
        self.runner: Any = enc.runner
        self.attr = "_session" if hasattr(self.runner, "_session") else "_module"

    def __enter__(self) -> TimedModel:
        self.timed = TimedModel(getattr(self.runner, self.attr))
        setattr(self.runner, self.attr, self.timed)
        return self.timed

    def __exit__(self, *exc: object) -> None:
        setattr(self.runner, self.attr, self.timed.inner)


def run_daemon_path(enc: AudioModelEncoder, x: np.ndarray, n: int, ticks: int,
                    own: list[float] | None = None) -> list[float]:
    """Per-tick seconds of the engine's plug-in path (module doc), ``own`` as :func:`run_plugin`'s."""
    spec = enc.specs[0]
    plugin = Plugin("vad", "onnx", 0, enc, spec, "0123456789abcdef", sample_rate=enc.io.sample_rate)
    tracks = {f"mic{i}": [PluginAudioTrack(plugin, f"mic{i}")] for i in range(n)}
    plugins = {"vad": plugin}
    out = []
    with Timed(enc) as timed:
        for t in range(ticks):
            caps = [AudioCapture(f"mic{i}", x[i : i + 1, t * CHUNK : (t + 1) * CHUNK], 16000,
                                 t * CHUNK * 62_500, 0) for i in range(n)]
            errors: list[tuple[str, str]] = []
            timed.spent = 0.0
            t0 = time.perf_counter()
            packets = plugin_audio(plugins, caps, tracks.__getitem__, errors)
            out.append(time.perf_counter() - t0)
            if own is not None:
                own.append(out[-1] - timed.spent)
            assert not errors and (t == 0 or sum(len(v) for v in packets.values()) == n), (errors, packets)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=150, help="batches per run (32 ms of audio each)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cont = print_header("bench_plugin_models: plug-in path vs calling the model directly (silero-vad)")
    mono, kind = speech_signal(16000, args.ticks * CHUNK / 16000 + 1)
    x = np.stack([np.roll(mono[0], 4000 * i) for i in range(8)]).astype(np.float32)
    print(f"input: {kind}, {args.ticks} ticks of 32 ms per run; model files from {REPO.name}'s venv: silero_vad/data")
    rows = []
    for fmt in ("onnx", "torchscript"):
        enc = encoder(fmt, x[0])
        call = direct_call(fmt)
        print(f"{fmt}: calibrated batch sizes {enc.caller.sizes} (of candidates 1, 2, 4, 8)")
        for n in SOURCES:
            padded = next(s for s in enc.caller.sizes if s >= n)
            fns: dict[str, Callable[[], list[float]]] = {
                "direct": lambda n=n, c=call: run_direct(c, x, n, args.ticks),  # type: ignore[misc]
                "padded": lambda p=padded, c=call: run_direct(c, np.concatenate([x, x]), p, args.ticks),  # type: ignore[misc]
                "plug-in": lambda n=n, e=enc: run_plugin(e, x, n, args.ticks),  # type: ignore[misc]
                "daemon": lambda n=n, e=enc: run_daemon_path(e, x, n, args.ticks)}  # type: ignore[misc]
            for f in fns.values():
                f()  # warm
            per_run: dict[str, list[float]] = {k: [] for k in fns}
            own_runs: dict[str, list[float]] = {"plug-in": [], "daemon": []}
            for _ in range(args.repeat):
                for k, f in fns.items():
                    per_run[k].append(statistics.fmean(f()))
                for k, g in (("plug-in", run_plugin), ("daemon", run_daemon_path)):
                    own: list[float] = []
                    g(enc, x, n, args.ticks, own)
                    own_runs[k].append(statistics.fmean(own))
            best = {k: min(v) for k, v in per_run.items()}
            over = best["daemon"] - best["padded"]
            rows.append([fmt, n, padded, best["direct"] * 1e3, best["padded"] * 1e3, best["plug-in"] * 1e3,
                         min(own_runs["plug-in"]) * 1e3, best["daemon"] * 1e3,
                         statistics.median(per_run["daemon"]) * 1e3, over * 1e3, 100 * over / best["padded"],
                         min(own_runs["daemon"]) * 1e3, 100 * min(own_runs["daemon"]) / best["padded"]])
    print(table(["format", "sources", "rows/call", "direct ms", "direct padded ms", "plug-in ms (best)",
                 "plug-in own in-run ms", "daemon path ms (best)", "daemon median", "daemon - padded ms", "%",
                 "daemon own in-run ms", "%"], rows))
    print("daemon - padded: the difference of the best runs (the engine's plug-in path: tracks, take, the batched")
    print("call's stacking and checks, emit, TokenPackets); own in-run: each tick less the time inside its model")
    print("call, in the same tick (best run); %: of the padded direct call")
    print(cont.report())


if __name__ == "__main__":
    main()
