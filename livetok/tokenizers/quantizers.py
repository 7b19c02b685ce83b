"""Quantizers for the plug-in kinds: RVQ and single-level k-means, both a :class:`ScaleQuantizer`.

Single-level k-means (HuBERT-style units) is an RVQ of one level; without a projection (``dim:
null``) its "projection" is the identity after centring, which leaves the clustering unchanged
(k-means does not care where the origin is). Fitting reuses the package's PCA and RVQ fitting
(:mod:`livetok.tokenizers.kmeans`); encoding reuses :meth:`ScaleQuantizer.encode_rows`, the row-by-row
kernel whose codes never depend on how many rows a call has.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from livetok.errors import CodebookError, MediaError
from livetok.tokenizers.codebooks import ScaleArrays
from livetok.tokenizers.kmeans import Progress, fit_rvq, pca
from livetok.tokenizers.plugin_config import QuantizerConfig
from livetok.tokenizers.quantizer_file import QuantizerSet, check_fitted_for, stream_arrays
from livetok.tokenizers.rvq import ScaleQuantizer


def fit_quantizer(x: np.ndarray, cfg: QuantizerConfig, seed: int = 0, device: str = "cpu",
                  progress: Progress | None = None, what: str = "vectors") -> ScaleArrays:
    """``x [N, D]`` training vectors -> fitted ``mean [D]``, ``proj [D, d]``, ``codebooks [L, K, d]``.
    One level of scalars (``d`` = 1, k-means) comes sorted: code order is value order.

    Too few vectors for the codebook is one MediaError line saying how many are needed."""
    n, size = x.shape
    d = size if cfg.dim is None else cfg.dim
    if d > size:
        raise CodebookError(f"quantizer.dim ({d}) is more than the {size} values of the {what}")
    need = max(cfg.codebook_size, d + 1 if cfg.dim is not None else 1)
    if n < need:
        raise MediaError(f"{n} training {what} for {cfg.codebook_size} codes of {d} values: give more media "
                         f"(at least {need} {what})")
    if cfg.dim is None:
        mean = np.asarray(x, dtype=np.float64).mean(0)
        proj = np.eye(size)
    else:
        mean, proj = pca(x, d)
    z = (np.asarray(x, dtype=np.float64) - mean) @ proj
    books = fit_rvq(z, cfg.depth, cfg.codebook_size, cfg.iters, seed, torch.device(device), progress=progress)
    if books.shape[0] == 1 and books.shape[2] == 1:
        # One level of scalars (a probability, a loudness): codes in the order of their values, so that a
        # larger code means a larger value (a consumer can compare codes without the codebook).
        books = np.sort(books, axis=1)
    return ScaleArrays(mean.astype(np.float32), proj.astype(np.float32), books.astype(np.float32))


def build_quantizer(arrays: ScaleArrays, cfg: QuantizerConfig, where: str) -> ScaleQuantizer:
    """The run-time quantizer, after checking the fitted arrays against ``cfg`` (one CodebookError line
    naming the key, ``where`` telling whose codebooks)."""
    levels, k, d = arrays.codebooks.shape
    if k != cfg.codebook_size:
        raise CodebookError(f"{where} have {k} codes per level, but quantizer.codebook_size is {cfg.codebook_size}")
    if cfg.depth > levels:
        raise CodebookError(f"{where} have {levels} level(s), but the quantizer uses {cfg.depth} (quantizer.levels)")
    want_d = arrays.mean.shape[0] if cfg.dim is None else cfg.dim
    if d != want_d:
        raise CodebookError(f"{where} project to {d} values, but quantizer.dim is {cfg.dim}")
    return ScaleQuantizer(arrays.mean, arrays.proj, arrays.codebooks, cfg.depth)


def fitted_quantizer(qs: QuantizerSet, cfg: QuantizerConfig, *, tokenizer: str, stream: str, fmt: str,
                     fitted_for: dict[str, Any], gives_codes: bool) -> ScaleQuantizer:
    """A plug-in model's quantizer from its codebook file: refused in one CodebookError line when the
    model gives codes itself, or the file was fitted for another model or stream."""
    if gives_codes:
        raise CodebookError(f"tokenizer {tokenizer!r}: the model gives codes itself; it needs no codebooks")
    check_fitted_for(qs, fmt, fitted_for, tokenizer)
    arrays = stream_arrays(qs, stream, tokenizer)
    return build_quantizer(arrays, cfg, f"tokenizer {tokenizer!r}: codebooks {qs.source}")
