"""Loading a model with its contract, and checking one against the other before anything streams.

:func:`resolve_io` takes the contract from the configuration, else from the file's ``livetok.json``;
:func:`check_static` compares the names, shapes and dtypes the contract feeds with what the file
declares; :func:`probe` calibrates the batch sizes with real calls, turning any failure into a
:class:`ModelError` line. Which error: what the configuration alone shows is a ConfigError (exit 78);
what looking at or calling the model shows is a ModelError (exit 65).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydantic import TypeAdapter, ValidationError

from livetok.errors import ConfigError, ModelError, ModelRunError
from livetok.tokenizers.models.batching import BatchCaller, Calibration, Row
from livetok.tokenizers.models.contract import AudioModelIO, ModelConfig, ModelIO, VideoModelIO
from livetok.tokenizers.models.runner import EMBEDDED_KEY, Format, ModelRunner, load_runner


def validation_line(err: ValidationError) -> str:
    """A pydantic error as ``key.path: message`` (the first problem; the others follow from fixing it)."""
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    # the contract's union tag ("audio" / "video") is not a key the user wrote
    loc = [p for i, p in enumerate(loc) if not (p in ("audio", "video") and (i == 0 or loc[i - 1] == "io"))]
    where = ".".join(p for p in loc if not p.startswith("function-"))
    return f"{where}: {first['msg']}" if where else first["msg"]


def resolve_io(cfg: ModelConfig, runner: ModelRunner, modality: str) -> AudioModelIO | VideoModelIO:
    """The contract: ``model.io`` when configured, else the file's embedded ``livetok.json``."""
    tok = runner.tokenizer
    io = cfg.io
    if io is None:
        if runner.embedded is None:
            raise ConfigError(f"tokenizer {tok!r}: model.io: not declared, and {runner.path} carries no "
                              f"{EMBEDDED_KEY} contract")
        try:
            io = TypeAdapter(ModelIO).validate_python(json.loads(runner.embedded))
        except json.JSONDecodeError as err:
            raise ModelError(f"tokenizer {tok!r}: model.path: {runner.path}: its {EMBEDDED_KEY} is not JSON "
                             f"({err.msg} at line {err.lineno})") from None
        except ValidationError as err:
            raise ModelError(f"tokenizer {tok!r}: model.path: {runner.path}: its {EMBEDDED_KEY} contract: "
                             f"{validation_line(err)}") from None
    if io.modality != modality:
        raise ConfigError(f"tokenizer {tok!r}: model.io.modality: the contract is for {io.modality}, "
                          f"but the tokenizer is a {modality} tokenizer")
    return io


@dataclass(frozen=True)
class Feeds:
    """What an encoder feeds: per input its full shape (None at the batch axis) and dtype, and the
    output names it reads, with the contract key that names each (for messages)."""

    shapes: dict[str, tuple[int | None, ...]]
    dtypes: dict[str, str]
    keys: dict[str, str]  # input or output name -> the contract key that declares it
    outputs: list[str]


def check_static(runner: ModelRunner, feeds: Feeds) -> None:
    """Names, shapes and dtypes against what the file declares (ONNX declares all three; TorchScript
    its argument names). One ModelError line naming the contract key."""
    tok = runner.tokenizer
    have = ", ".join(runner.inputs)
    for name in feeds.shapes:
        if name not in runner.inputs:
            raise ModelError(f"tokenizer {tok!r}: {feeds.keys[name]}: the model has no input named {name!r} "
                             f"(it takes: {have})")
    for name, info in runner.inputs.items():
        if name not in feeds.shapes and not info.optional:
            raise ModelError(f"tokenizer {tok!r}: model.io: the model's input {name!r} is not in the contract "
                             f"(declare it: input_name, state or constants)")
    for name, want in feeds.shapes.items():
        info = runner.inputs[name]
        if info.dtype not in (None, "scalar") and info.dtype != feeds.dtypes[name]:
            raise ModelError(f"tokenizer {tok!r}: {feeds.keys[name]}: the model's input {name!r} takes "
                             f"{info.dtype}, the contract feeds {feeds.dtypes[name]}")
        if info.shape is not None and not _fits(info.shape, want):
            raise ModelError(f"tokenizer {tok!r}: {feeds.keys[name]}: the model's input {name!r} takes shape "
                             f"{_show(info.shape)}, the contract feeds {_show(want)}")
    if runner.outputs is not None:
        for name in feeds.outputs:
            if name not in runner.outputs:
                raise ModelError(f"tokenizer {tok!r}: {feeds.keys[name]}: the model has no output named {name!r} "
                                 f"(it gives: {', '.join(runner.outputs)})")


def static_batch(runner: ModelRunner, name: str, axis: int) -> int | None:
    """The batch size the file fixes for input ``name`` (an ONNX model exported without a dynamic
    batch axis), or None."""
    shape = runner.inputs[name].shape
    return None if shape is None or len(shape) <= axis else shape[axis]


def _fits(model: tuple[int | None, ...], fed: tuple[int | None, ...]) -> bool:
    return len(model) == len(fed) and all(m is None or f is None or m == f for m, f in zip(model, fed, strict=True))


def _show(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("B" if d is None else str(d) for d in shape) + "]"


def probe(caller: BatchCaller, make_row: Callable[[np.random.Generator], Row]) -> Calibration:
    """Real calls at every candidate batch size (:meth:`BatchCaller.calibrate`): any failure, a wrong
    shape or dtype, NaN, codes out of range, is one ModelError line, before anything streams."""
    try:
        return caller.calibrate(make_row)
    except ModelRunError as err:
        raise ModelError(f"{err} (at the load probe, with test input)") from err


def open_model(cfg: ModelConfig, fmt: Format, tokenizer: str, modality: str) -> tuple[ModelRunner, AudioModelIO |
                                                                                         VideoModelIO]:
    """The model file, opened, and its contract."""
    runner = load_runner(cfg, fmt, tokenizer)
    return runner, resolve_io(cfg, runner, modality)
