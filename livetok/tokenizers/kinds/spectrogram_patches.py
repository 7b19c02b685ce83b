"""``spectrogram-patches``: AST-style audio tokens (:mod:`livetok.tokenizers.spectro_patches`);
options are :class:`~livetok.tokenizers.plugin_config.SpectroPatchConfig`, plus ``codebooks``
(fitted by ``livetok fit --tokenizer NAME``)."""

from __future__ import annotations

import dataclasses

from livetok.config.tokenizers import PluginTokenizer
from livetok.errors import ConfigError
from livetok.tokenizers.kinds.base import Kind, Plugin
from livetok.tokenizers.plugin_config import SpectroPatchConfig


def load(entry: PluginTokenizer, opts: SpectroPatchConfig, index: int) -> Plugin:
    from livetok.tokenizers.quantizer_file import load_quantizers
    from livetok.tokenizers.spectro_patches import SpectroPatchTokenizer

    if entry.codebooks is None:
        raise ConfigError(f"tokenizer {entry.name!r}: codebooks: spectrogram patches need fitted codebooks: "
                          f"livetok fit --tokenizer {entry.name} -o FILE, then name FILE here")
    tok = SpectroPatchTokenizer(entry.name, opts)
    qs = load_quantizers(entry.codebooks)
    tok.use_codebooks(qs)
    spec = dataclasses.replace(tok.specs[0], name=entry.stream_name)
    return Plugin(entry.name, KIND.name, index, tok, spec, qs.codebook_id, sample_rate=opts.sample_rate)


KIND = Kind("spectrogram-patches", frozenset({"audio"}), SpectroPatchConfig, load)
