"""Small random-weight models the plug-in tests export themselves (TorchScript and ONNX; no download).

* ``StatelessConv``: waveform -> embeddings ``[B, D, T]``; a valid 1-D convolution, so frame t of
  a window depends on samples ``[t hop, t hop + RF)`` only;
* ``StatefulGRU``: a streaming model: ``context + chunk`` samples and a GRU state ``[1, B, H]`` ->
  embeddings ``[B, T, D]``, codes ``[B, T, 2]`` (argmax of two heads) and the next state;
* ``LogMelConv``: log-mel ``[B, n_mels, T]`` -> embeddings ``[B, T, D]``;
* ``VideoPatches`` / ``VideoCodes``: frames ``[B, 3, H, W]`` -> ``[B, D, gh, gw]`` / codes ``[B, gh, gw]``;
* faulty ones: NaN outputs, NaN only on loud input, raising on loud input, a wrong frame count.

``export(module, path, fmt, example, names, contract)`` writes TorchScript (``torch.jit.script``) or
ONNX (``torch.onnx.export(..., dynamo=False)``, dynamic batch and time axes), embedding ``contract``
as ``livetok.json`` when given.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

RATE = 16000


class StatelessConv(nn.Module):
    def __init__(self, rf: int = 400, hop: int = 160, dim: int = 12) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 16, rf, stride=hop)
        self.out = nn.Conv1d(16, dim, 1)

    def encode(self, input: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.conv(input.unsqueeze(1))))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.encode(input)


class RaisesOnCall(StatelessConv):
    """Raises on ``count`` calls from call ``first`` on (counting every call, the load probe's too);
    ``codes``: gives codes ``[B, T]`` int64 (``0/1``) instead of embeddings."""

    def __init__(self, first: int, count: int = 10**9, codes: bool = False) -> None:
        super().__init__()
        self.first, self.count, self.codes = first, count, codes
        self.calls = 0

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls >= self.first and self.calls < self.first + self.count:
            raise ValueError("model failure on purpose")
        out = self.encode(input)
        return out[:, 0, :].gt(0).to(torch.int64) if self.codes else out


class StatefulGRU(nn.Module):
    def __init__(self, hop: int = 160, context: int = 80, hidden: int = 24, dim: int = 8, k: int = 16) -> None:
        super().__init__()
        self.hop, self.context = hop, context
        self.inp = nn.Linear(hop + context, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.emb = nn.Linear(hidden, dim)
        self.head_a = nn.Linear(hidden, k)
        self.head_b = nn.Linear(hidden, k)

    def forward(self, input: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = input.shape[0]
        frames = (input.shape[1] - self.context) // self.hop
        # frame t sees its hop and the `context` samples before it
        idx = torch.arange(frames).unsqueeze(1) * self.hop + torch.arange(self.hop + self.context).unsqueeze(0)
        x = input[:, idx.reshape(-1)].reshape(b, frames, self.hop + self.context)
        y, h2 = self.gru(torch.tanh(self.inp(x)), h)
        codes = torch.stack([self.head_a(y).argmax(-1), self.head_b(y).argmax(-1)], -1)
        return self.emb(y), codes, h2


class LogMelConv(nn.Module):
    def __init__(self, n_mels: int = 40, rf: int = 5, hop: int = 2, dim: int = 6) -> None:
        super().__init__()
        self.conv = nn.Conv1d(n_mels, dim, rf, stride=hop)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.conv(mel / 10.0).transpose(1, 2)


class VideoPatches(nn.Module):
    def __init__(self, patch: int = 8, dim: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(pixels))


class VideoCodes(nn.Module):
    def __init__(self, patch: int = 8, k: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, k, patch, stride=patch)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.conv(pixels).argmax(1)


class NaNOut(StatelessConv):
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.encode(input) * float("nan")


class NaNWhenLoud(StatelessConv):
    """NaN only when a sample's magnitude exceeds 5 (the log of a negative number)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        y = self.encode(input)
        return y + 0.0 * torch.log(5.0 - input.abs().amax(dim=1)).reshape(-1, 1, 1)


class RaisesWhenLoud(StatelessConv):
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if bool(input.abs().max() > 5.0):
            raise ValueError("input too loud for this model")
        return self.encode(input)


class ExtraFrame(StatelessConv):
    """Gives one frame more than a valid convolution would (a model whose rate is not what it says)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        y = self.encode(input)
        return torch.cat([y, y[:, :, -1:]], 2)


def export(module: nn.Module, path: Path, fmt: str, example: tuple[torch.Tensor, ...], inputs: list[str],
           outputs: list[str], contract: dict[str, Any] | None = None,
           dynamic: dict[str, dict[int, str]] | None = None) -> Path:
    """Write ``module`` (eval mode, fixed seed weights) as TorchScript or ONNX; ``dynamic``: ONNX axes
    that may vary (default: axis 0 of every input and output)."""
    module.eval()
    extra = {"livetok.json": json.dumps(contract)} if contract is not None else {}
    if fmt == "torchscript":
        torch.jit.save(torch.jit.script(module), str(path), _extra_files=extra)
        return path
    import onnx

    axes = dynamic if dynamic is not None else {n: {0: "B"} for n in inputs + outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, dynamo=False, opset_version=17)
    if contract is not None:
        model = onnx.load(str(path))
        entry = model.metadata_props.add()
        entry.key, entry.value = "livetok.json", json.dumps(contract)
        onnx.save(model, str(path))
    return path


def seeded(cls: type[nn.Module], seed: int = 0, **kw: Any) -> nn.Module:
    torch.manual_seed(seed)
    return cls(**kw)


STATELESS_IO = {"modality": "audio", "sample_rate": RATE, "input_name": "input", "output_name": "output",
                "output_layout": "BDT", "dim": 12, "hop": 160, "receptive_field": 400, "lookahead": 80,
                "frames_per_call": 4}


def stateless_model(tmp: Path, fmt: str, cls: type[nn.Module] = StatelessConv, embed: bool = True,
                    seed: int = 0) -> Path:
    path = tmp / f"{cls.__name__.lower()}-{seed}.{'onnx' if fmt == 'onnx' else 'pt'}"
    dyn = {"input": {0: "B", 1: "T"}, "output": {0: "B", 2: "F"}}
    return export(seeded(cls, seed), path, fmt, (torch.randn(2, 880),), ["input"], ["output"],
                  STATELESS_IO if embed else None, dyn)


def stateful_io(fmt: str, output: str = "embeddings") -> dict[str, Any]:
    """The GRU model's contract; TorchScript names outputs by position ("0" emb, "1" codes, "2" state)."""
    names = {"emb": "emb", "codes": "codes", "h2": "h2"} if fmt == "onnx" else {"emb": "0", "codes": "1", "h2": "2"}
    io: dict[str, Any] = {"modality": "audio", "sample_rate": RATE, "input_name": "input", "hop": 160, "chunk": 320,
                          "context": 80, "state": [{"input": "h", "output": names["h2"], "shape": [1, "B", 24]}]}
    if output == "codes":
        io |= {"output": "codes", "output_name": names["codes"], "output_layout": "BTD", "dim": 2,
               "codebook_size": 16}
    else:
        io |= {"output_name": names["emb"], "output_layout": "BTD", "dim": 8}
    return io


def stateful_model(tmp: Path, fmt: str, seed: int = 0) -> Path:
    path = tmp / f"gru-{seed}.{'onnx' if fmt == 'onnx' else 'pt'}"
    axes = {"input": {0: "B"}, "h": {1: "B"}, "emb": {0: "B"}, "codes": {0: "B"}, "h2": {1: "B"}}
    return export(seeded(StatefulGRU, seed), path, fmt, (torch.randn(2, 400), torch.zeros(1, 2, 24)),
                  ["input", "h"], ["emb", "codes", "h2"], None, axes)


LOGMEL_IO = {"modality": "audio", "sample_rate": RATE, "input": "logmel", "input_name": "mel",
             "logmel": {"n_mels": 40, "n_fft": 512}, "input_layout": "BCT", "output_name": "output",
             "output_layout": "BTD", "dim": 6, "hop": 2, "receptive_field": 5, "frames_per_call": 3}


def logmel_model(tmp: Path, fmt: str) -> Path:
    path = tmp / f"logmel.{'onnx' if fmt == 'onnx' else 'pt'}"
    dyn = {"mel": {0: "B", 2: "T"}, "output": {0: "B", 1: "F"}}
    return export(seeded(LogMelConv), path, fmt, (torch.randn(2, 40, 9),), ["mel"], ["output"], LOGMEL_IO, dyn)


def video_io(output: str = "embeddings") -> dict[str, Any]:
    io: dict[str, Any] = {"modality": "video", "height": 32, "width": 48, "input_name": "pixels",
                          "output_name": "output", "grid": [4, 6], "normalize": "meanstd"}
    if output == "codes":
        return io | {"output": "codes", "output_layout": "BHW", "dim": 1, "codebook_size": 10}
    return io | {"output_layout": "BDHW", "dim": 10}


def video_model(tmp: Path, fmt: str, output: str = "embeddings") -> Path:
    cls = VideoCodes if output == "codes" else VideoPatches
    path = tmp / f"video-{output}.{'onnx' if fmt == 'onnx' else 'pt'}"
    return export(seeded(cls), path, fmt, (torch.randn(2, 3, 32, 48),), ["pixels"], ["output"], video_io(output))


# --- shared by the plug-in tests ------------------------------------------------------------------------

def run_chunks(kind: Any, stream: Any, x: Any, cuts: list[int]) -> list[Any]:
    """Push ``x`` cut at ``cuts`` through the three phases, then flush: every StepCodes."""
    import itertools

    from livetok.tokenizers.protocol import process

    out: list[Any] = []
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(x)}), len(x)]
    for lo, hi in itertools.pairwise(bounds):
        out += process(kind, stream.take(x[lo:hi]))
    return out + process(kind, stream.flush())


def same_steps(a: list[Any], b: list[Any]) -> bool:
    """Bit for bit: stream, step, codes, vectors and gap flags."""
    import numpy as np

    def key(s: Any) -> tuple[Any, ...]:
        v = None if s.vectors is None else (s.vectors.dtype.str, s.vectors.shape, s.vectors.tobytes())
        return (s.stream, s.step, s.codes.dtype.str, s.codes.shape, s.codes.tobytes(), v, s.gap)

    return len(a) == len(b) and all(key(x) == key(y) for x, y in zip(a, b, strict=True)) and all(
        isinstance(s.codes, np.ndarray) for s in a)


def with_codebooks(enc: Any) -> Any:
    """Fit a small RVQ on the encoder's own frames of a noise signal (the flow `fit` follows)."""
    import numpy as np

    from livetok.tokenizers.plugin_config import QuantizerConfig
    from livetok.tokenizers.quantizer_file import make_quantizer_set
    from livetok.tokenizers.quantizers import fit_quantizer

    if enc.io.output == "codes":
        return enc
    noise = (np.random.default_rng(1).standard_normal(RATE) * 0.2).astype(np.float32)
    s = enc.stream("fit")
    frames = []
    jobs = s.take(noise)
    for job, out in zip(jobs, enc.run(jobs), strict=True):
        s.settle(job, out)
        frames.append(out.frames)
    cfg = QuantizerConfig(kind="rvq", levels=2, codebook_size=8, dim=None, iters=4)
    qs = make_quantizer_set(enc.runner.fmt, enc.fitted_for(), {"tokens": fit_quantizer(np.concatenate(frames), cfg)})
    enc.use_codebooks(qs, cfg)
    return enc


# --- silero-vad: a real pretrained model shipped inside its wheel (no download) ----------------------------

SILERO_BASE: dict[str, Any] = {"modality": "audio", "sample_rate": 16000, "output_layout": "BD", "dim": 1,
                               "hop": 512, "chunk": 512, "context": 64}
# silero_vad.onnx: input [B, 64 + 512] float32, state [2, B, 128], sr int64 scalar -> output [B, 1], stateN
SILERO_ONNX_IO = SILERO_BASE | {
    "input_name": "input", "output_name": "output",
    "state": [{"input": "state", "output": "stateN", "shape": [2, "B", 128]}],
    "constants": [{"name": "sr", "value": 16000, "dtype": "int64"}]}
# silero_vad.jit: the top-level module keeps its state inside; its submodule `_model` takes it explicitly:
# _model.forward(x [B, 64 + 512], state [2, B, 128]) -> (probability [B, 1], state)
SILERO_JIT_IO = SILERO_BASE | {
    "input_name": "x", "output_name": "0", "state": [{"input": "state", "output": "1", "shape": [2, "B", 128]}]}


def silero_file(name: str) -> Path:
    """``silero_vad.onnx`` or ``silero_vad.jit`` from the installed wheel (importlib.resources)."""
    import importlib.resources

    from requires import require_module

    require_module("silero_vad")
    return Path(str(importlib.resources.files("silero_vad") / "data" / name))
