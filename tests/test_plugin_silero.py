"""A real pretrained model through the stateful streaming encoder: silero-vad, whose wheel ships its
TorchScript and ONNX files (found with importlib.resources; nothing is downloaded). 512-sample chunks
at 16 kHz with 64 samples of context and its [2, B, 128] state; the speech probability per 32 ms.
The plug-in path gives what silero's own code gives, for any chunking and any batch."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from plugin_models import SILERO_JIT_IO, SILERO_ONNX_IO, silero_file

from livetok.tokenizers.models.audio import AudioModelEncoder
from livetok.tokenizers.models.contract import ModelConfig
from livetok.tokenizers.models.runner import InputInfo
from livetok.tokenizers.plugin_fit import audio_blocks

CHUNK = 512


@pytest.fixture(scope="module")
def speech(speech_wav: Path) -> np.ndarray:
    """espeak-ng speech at 16 kHz, with 0.5 s of silence before and after."""
    x = np.concatenate(list(audio_blocks(speech_wav, 16000)))
    gap = np.zeros(8000, np.float32)
    return np.concatenate([gap, x, gap]).astype(np.float32)


def load(fmt: str, batch: int = 8) -> AudioModelEncoder:
    if fmt == "onnx":
        cfg = ModelConfig(path=silero_file("silero_vad.onnx"), io=SILERO_ONNX_IO, batch=batch, device="cpu")
    else:
        cfg = ModelConfig(path=silero_file("silero_vad.jit"), io=SILERO_JIT_IO, submodule="_model", batch=batch,
                          device="cpu")
    return AudioModelEncoder.load("vad", cfg, fmt)  # type: ignore[arg-type]


def probabilities(enc: AudioModelEncoder, x: np.ndarray, cuts: list[int]) -> np.ndarray:
    s = enc.stream("mic")
    out: list[np.ndarray] = []
    bounds = [0, *sorted({c for c in cuts if 0 < c < x.size}), x.size]
    for lo, hi in itertools.pairwise(bounds):
        jobs = s.take(x[lo:hi])
        for job, o in zip(jobs, enc.run(jobs), strict=True):
            s.settle(job, o)
            out.append(o.frames[:, 0])
    return np.concatenate(out).astype(np.float32)


def test_the_real_io_names_and_shapes() -> None:
    onnx = load("onnx").runner
    assert onnx.inputs == {"input": InputInfo("input", (None, None), "float32"),
                           "state": InputInfo("state", (2, None, 128), "float32"),
                           "sr": InputInfo("sr", (), "int64")}
    assert onnx.outputs == ["output", "stateN"]
    jit = load("torchscript").runner
    assert list(jit.inputs) == ["x", "state"] and jit.inputs["state"].optional
    io = load("onnx").io
    assert (io.window, io.advance, io.history, io.frames) == (576, 512, 64, 1)


def test_onnx_equals_silero_own_wrapper(speech: np.ndarray) -> None:
    from silero_vad.utils_vad import OnnxWrapper

    path = silero_file("silero_vad.onnx")
    ours = probabilities(load("onnx"), speech, [])
    wrapper = OnnxWrapper(str(path), force_onnx_cpu=True)
    ref = np.array([wrapper(torch.from_numpy(speech[i : i + CHUNK]), 16000).item()
                    for i in range(0, speech.size - CHUNK + 1, CHUNK)], np.float32)
    assert ours.size == ref.size == speech.size // CHUNK
    assert ours.tobytes() == ref.tobytes()
    assert ours[: 8000 // CHUNK].max() < 0.2 and ours.max() > 0.8  # silence, then speech


def test_torchscript_equals_the_model_called_directly(speech: np.ndarray) -> None:
    """batch 1: every call is [1, 576], as the packaged module's own forward makes it."""
    ours = probabilities(load("torchscript", batch=1), speech, [])
    model = torch.jit.load(str(silero_file("silero_vad.jit")))
    model.reset_states()
    with torch.inference_mode():
        ref = np.array([model(torch.from_numpy(speech[i : i + CHUNK]), 16000).item()
                        for i in range(0, speech.size - CHUNK + 1, CHUNK)], np.float32)
    assert ours.tobytes() == ref.tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_chunking_changes_nothing(speech: np.ndarray, fmt: str) -> None:
    enc = load(fmt)
    ref = probabilities(enc, speech, [])
    rng = np.random.default_rng(0)
    for _ in range(12):
        cuts = rng.integers(1, speech.size, int(rng.integers(1, 200))).tolist()
        assert probabilities(enc, speech, cuts).tobytes() == ref.tobytes()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_eight_sources_in_one_call_equal_a_direct_batched_call(speech: np.ndarray, fmt: str) -> None:
    """Eight microphones, one model call per 32 ms tick: what the model gives when called directly with
    the same eight rows and states."""
    enc = load(fmt)
    signals = [np.roll(speech, 1000 * i) * (1 - 0.1 * i) for i in range(8)]
    streams = [enc.stream(f"mic{i}") for i in range(8)]
    ticks = speech.size // CHUNK
    ours = np.zeros((ticks, 8), np.float32)
    before = enc.caller.calls
    for t in range(ticks):
        jobs = [j for s, x in zip(streams, signals, strict=True) for j in s.take(x[t * CHUNK : (t + 1) * CHUNK])]
        for job, o in zip(jobs, enc.run(jobs), strict=True):
            job.stream.settle(job, o)
            ours[job.call, streams.index(job.stream)] = o.frames[0, 0]
    assert enc.caller.calls - before == ticks
    direct = direct_batched(fmt, signals, ticks)
    assert ours.tobytes() == direct.tobytes()


def direct_batched(fmt: str, signals: list[np.ndarray], ticks: int) -> np.ndarray:
    """The model called by hand: context + chunk per row, the state carried from call to call."""
    x = np.stack(signals).astype(np.float32)
    context = np.zeros((8, 64), np.float32)
    state = np.zeros((2, 8, 128), np.float32)
    out = np.zeros((ticks, 8), np.float32)
    call: Any
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(silero_file("silero_vad.onnx")), providers=["CPUExecutionProvider"])

        def call(inp: np.ndarray, st: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            p, s2 = session.run(None, {"input": inp, "state": st, "sr": np.array(16000, np.int64)})
            return p, s2
    else:
        model = torch.jit.load(str(silero_file("silero_vad.jit")))._model

        def call(inp: np.ndarray, st: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.inference_mode():
                p, s2 = model(torch.from_numpy(inp), torch.from_numpy(st))
            return p.numpy(), s2.numpy()
    for t in range(ticks):
        inp = np.concatenate([context, x[:, t * CHUNK : (t + 1) * CHUNK]], axis=1)
        p, state = call(inp, state)
        out[t] = p[:, 0]
        context = inp[:, -64:]
    return out
