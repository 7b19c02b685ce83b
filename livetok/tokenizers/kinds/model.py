"""The user's-model kinds, ``torchscript`` and ``onnx`` (:mod:`livetok.tokenizers.models`): options
:class:`ModelOptions`; the tokenizer's ``device`` is the model's unless ``model.device`` says."""

from __future__ import annotations

import dataclasses

from pydantic import Field

from livetok.config.tokenizers import PluginTokenizer
from livetok.errors import ConfigError
from livetok.tokenizers.kinds.base import Plugin
from livetok.tokenizers.models.contract import ModelConfig
from livetok.tokenizers.models.runner import Format
from livetok.tokenizers.plugin_config import QuantizerConfig, Strict


class ModelOptions(Strict):
    model: ModelConfig = Field(description="the model file, how to run it, and its input/output contract")
    step_ms: float | None = Field(
        None, gt=0, le=10_000, description="audio: one token step (ms), a whole number of model frames; "
        "null = one frame")
    vectors: bool = Field(False, description="also send each cell's vector (the quantizer's projection, or the codes)")
    quantizer: QuantizerConfig = Field(QuantizerConfig(), description="embeddings: how they become codes")


def load(entry: PluginTokenizer, opts: ModelOptions, index: int, fmt: Format) -> Plugin:
    from livetok.tokenizers.models.audio import AudioModelEncoder
    from livetok.tokenizers.models.video import VideoModelEncoder

    mcfg = opts.model
    if "device" not in mcfg.model_fields_set:
        mcfg = mcfg.model_copy(update={"device": entry.device})
    name = entry.name
    enc: AudioModelEncoder | VideoModelEncoder
    if entry.modality == "audio":
        enc = AudioModelEncoder.load(name, mcfg, fmt, step_ms=opts.step_ms, vectors=opts.vectors)
    else:
        if opts.step_ms is not None:
            raise ConfigError(f"tokenizer {name!r}: step_ms: a video tokenizer makes one step per frame")
        enc = VideoModelEncoder.load(name, mcfg, fmt, vectors=opts.vectors)
    codebook_id = _codebooks(entry, enc, opts)
    spec = dataclasses.replace(enc.specs[0], name=entry.stream_name)
    if isinstance(enc, AudioModelEncoder):
        return Plugin(name, fmt, index, enc, spec, codebook_id, sample_rate=enc.io.sample_rate)
    return Plugin(name, fmt, index, enc, spec, codebook_id, image=(enc.io.height, enc.io.width))


def _codebooks(entry: PluginTokenizer, enc: object, opts: ModelOptions) -> str:
    """Attach the fitted codebooks (a model giving embeddings); the packets' codebook id."""
    from livetok.tokenizers.quantizer_file import load_quantizers

    io, name = enc.io, entry.name  # type: ignore[attr-defined]
    if io.output == "codes":
        if entry.codebooks is not None:
            raise ConfigError(f"tokenizer {name!r}: codebooks: the model gives codes itself; it needs no codebooks")
        return str(enc.runner.sha256)[:16]  # type: ignore[attr-defined]
    if entry.codebooks is None:
        raise ConfigError(f"tokenizer {name!r}: codebooks: the model gives embeddings, which need fitted "
                          f"codebooks: livetok fit --tokenizer {name} -o FILE, then name FILE here")
    qs = load_quantizers(entry.codebooks)
    enc.use_codebooks(qs, opts.quantizer)  # type: ignore[attr-defined]
    return qs.codebook_id
