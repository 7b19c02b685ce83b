"""Loading a user's model file and calling it: one small interface over TorchScript and ONNX.

``load_runner(config, fmt, tokenizer) -> ModelRunner``; ``runner.run(feeds) -> outputs`` takes and
gives NumPy arrays by name, on whatever device the model runs on. Names:

* ONNX: the graph's own input and output names;
* TorchScript: inputs are ``forward``'s argument names (of the model, or of ``model.submodule``);
  outputs are ``"0"``, ``"1"``, ... for a tuple or list of tensors, the keys of a dict of tensors, or
  ``"0"`` (also ``"output"``) for a single tensor.

Every failure to load is one :class:`ModelError` line naming the tokenizer and ``model.path``
(missing, unreadable, not a model of its kind); every failure of a call is a :class:`ModelRunError`
naming the tokenizer. torch and onnxruntime are imported here only, on first use.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from livetok.errors import ConfigError, ModelError, ModelRunError
from livetok.outputs import describe_oserror
from livetok.tokenizers.models.contract import ModelConfig

Format = Literal["torchscript", "onnx"]
EMBEDDED_KEY = "livetok.json"  # ONNX metadata_props key / TorchScript extra file holding the contract
_ONNX_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool",
               "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


@dataclass(frozen=True)
class InputInfo:
    """What the file says about one input: ``shape`` (None per unknown or symbolic axis, or None when
    the format does not say), ``dtype`` (a NumPy name, or None when unknown), and whether it may be left
    out (a TorchScript argument with a default)."""

    name: str
    shape: tuple[int | None, ...] | None
    dtype: str | None
    optional: bool = False


def first_line(err: BaseException, limit: int = 240) -> str:
    """A third-party error as one short line (ONNX Runtime's code prefix dropped)."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    # TorchScript puts its traceback first and the error itself last
    text = (lines[-1] if "TorchScript interpreter" in lines[0] else lines[0]) if lines else type(err).__name__
    if text.startswith("[ONNXRuntimeError]"):
        text = text.split(" : ", 3)[-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class ModelRunner(Protocol):
    """A loaded model: ``run(feeds) -> outputs``, NumPy arrays by name, safe to call from any thread."""

    tokenizer: str
    fmt: Format
    path: Path
    sha256: str
    device: str
    inputs: dict[str, InputInfo]
    outputs: list[str] | None  # None: known only once called (TorchScript)
    embedded: str | None  # the file's livetok.json contract, if it carries one

    def run(self, feeds: dict[str, np.ndarray | int | float | bool]) -> dict[str, np.ndarray]: ...


def _check_file(path: Path, tokenizer: str) -> str:
    where = f"tokenizer {tokenizer!r}: model.path: {path}"
    try:
        if path.is_dir():
            raise ModelError(f"{where}: is a directory, not a model file")
        return file_sha256(path)
    except FileNotFoundError:
        raise ModelError(f"{where}: no such file") from None
    except OSError as err:
        raise ModelError(f"{where}: cannot read it: {describe_oserror(err)}") from err


class OnnxRunner:
    """An ONNX model in an onnxruntime session: the CUDA provider when there is one and ``device``
    allows it, else the CPU."""

    fmt: Format = "onnx"

    def __init__(self, cfg: ModelConfig, tokenizer: str) -> None:
        import onnxruntime as ort

        self.tokenizer, self.path = tokenizer, Path(cfg.path)
        if cfg.submodule is not None:
            raise ConfigError(f"tokenizer {tokenizer!r}: model.submodule is for TorchScript models only")
        self.sha256 = _check_file(self.path, tokenizer)
        available = ort.get_available_providers()
        if cfg.device == "cuda" and "CUDAExecutionProvider" not in available:
            raise ConfigError(f"tokenizer {tokenizer!r}: model.device: cuda, but onnxruntime has no CUDA provider "
                              f"(it has: {', '.join(available)})")
        cuda = cfg.device != "cpu" and "CUDAExecutionProvider" in available
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # warnings about unused initializers are not the user's business
        if cfg.threads is not None:
            opts.intra_op_num_threads = cfg.threads
            opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as err:  # onnxruntime's errors derive from Exception only
            raise ModelError(f"tokenizer {tokenizer!r}: model.path: {self.path}: not a loadable ONNX model "
                             f"({first_line(err)})") from err
        self.device = "cuda" if "CUDAExecutionProvider" in self._session.get_providers() else "cpu"
        self.inputs = {
            i.name: InputInfo(i.name, tuple(d if isinstance(d, int) else None for d in i.shape),
                              _ONNX_TYPES.get(i.type))
            for i in self._session.get_inputs()
        }
        self.outputs: list[str] | None = [o.name for o in self._session.get_outputs()]
        self.embedded: str | None = self._session.get_modelmeta().custom_metadata_map.get(EMBEDDED_KEY)

    def run(self, feeds: dict[str, np.ndarray | int | float | bool]) -> dict[str, np.ndarray]:
        arrays = {k: v if isinstance(v, np.ndarray) else np.asarray(v) for k, v in feeds.items()}
        try:
            values = self._session.run(None, arrays)
        except Exception as err:
            raise ModelRunError(f"tokenizer {self.tokenizer!r}: the model raised: {first_line(err)}",
                                tokenizer=self.tokenizer) from err
        assert self.outputs is not None
        return {name: np.asarray(v) for name, v in zip(self.outputs, values, strict=True)}


class TorchScriptRunner:
    """A TorchScript module on CUDA when torch sees one and ``device`` allows it, else the CPU.

    Calls run in inference mode with the graph executor's optimisations off (thread-local): the
    interpreter then runs one fixed plan, so that a call's result never depends on how often or with
    which shapes the module was called before (profiling and fusion could otherwise change the
    rounding). On the CPU this costs nothing measurable (silero-vad: 1073 vs 1087 µs per call).
    """

    fmt: Format = "torchscript"

    def __init__(self, cfg: ModelConfig, tokenizer: str) -> None:
        import torch

        self.tokenizer, self.path = tokenizer, Path(cfg.path)
        self.sha256 = _check_file(self.path, tokenizer)
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"tokenizer {tokenizer!r}: model.device: cuda, but torch sees no CUDA device")
        self._device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
        self.device = self._device.type
        extra = {EMBEDDED_KEY: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.11 deprecates TorchScript itself
                module = torch.jit.load(str(self.path), map_location=self._device, _extra_files=extra)
        except Exception as err:  # torch raises RuntimeError, ValueError, pickle errors... for foreign files
            raise ModelError(f"tokenizer {tokenizer!r}: model.path: {self.path}: not a loadable TorchScript model "
                             f"({first_line(err)})") from err
        module.eval()
        self._module = self._submodule(module, cfg.submodule)
        self.embedded = extra[EMBEDDED_KEY] or None
        if isinstance(self.embedded, bytes):
            self.embedded = self.embedded.decode("utf-8", "replace")
        self.inputs = self._read_inputs()
        self.outputs: list[str] | None = None
        self._scalar = {n for n, i in self.inputs.items() if i.dtype == "scalar"}

    def _submodule(self, module: Any, dotted: str | None) -> Any:
        for part in (dotted or "").split(".") if dotted else []:
            child = getattr(module, part, None)
            if child is None or not hasattr(child, "forward"):
                raise ModelError(f"tokenizer {self.tokenizer!r}: model.submodule: the model has no submodule "
                                 f"{dotted!r} with a forward method")
            module = child
        return module

    def _read_inputs(self) -> dict[str, InputInfo]:
        try:
            args = self._module.forward.schema.arguments[1:]  # [0] is self
        except (AttributeError, RuntimeError) as err:
            raise ModelError(f"tokenizer {self.tokenizer!r}: model.path: {self.path}: its forward has no readable "
                             f"signature ({first_line(err)})") from err
        out = {}
        for a in args:
            kind = str(a.type)
            dtype = None if "Tensor" in kind else "scalar"
            out[a.name] = InputInfo(a.name, None, dtype, optional=a.default_value is not None)
        return out

    def run(self, feeds: dict[str, np.ndarray | int | float | bool]) -> dict[str, np.ndarray]:
        import torch

        try:
            with torch.inference_mode(), torch.jit.optimized_execution(False):
                kwargs = {
                    k: (v.item() if isinstance(v, np.ndarray) else v) if k in self._scalar
                    else torch.from_numpy(np.ascontiguousarray(v)).to(self._device)
                    for k, v in feeds.items()
                }
                result = self._module(**kwargs)
                return _named_outputs(result)
        except _BadOutput as err:
            raise ModelRunError(f"tokenizer {self.tokenizer!r}: {err}", tokenizer=self.tokenizer) from None
        except Exception as err:
            raise ModelRunError(f"tokenizer {self.tokenizer!r}: the model raised: {first_line(err)}",
                                tokenizer=self.tokenizer) from err


class _BadOutput(ValueError):
    pass


def _named_outputs(result: Any) -> dict[str, np.ndarray]:
    import torch

    def arr(t: Any, name: str) -> np.ndarray:
        if not isinstance(t, torch.Tensor):
            raise _BadOutput(f"the model's output {name!r} is a {type(t).__name__}, not a tensor")
        return t.detach().cpu().numpy()

    if isinstance(result, torch.Tensor):
        a = arr(result, "0")
        return {"0": a, "output": a}
    if isinstance(result, (tuple, list)):
        return {str(i): arr(t, str(i)) for i, t in enumerate(result)}
    if isinstance(result, dict):
        return {str(k): arr(t, str(k)) for k, t in result.items()}
    raise _BadOutput(f"the model returned a {type(result).__name__}, not tensors")


def load_runner(cfg: ModelConfig, fmt: Format, tokenizer: str) -> ModelRunner:
    """Open ``cfg.path`` as ``fmt`` (one ModelError line when it cannot be used)."""
    if fmt == "onnx":
        return OnnxRunner(cfg, tokenizer)
    return TorchScriptRunner(cfg, tokenizer)
