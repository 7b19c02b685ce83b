"""Residual vector quantization of projected vectors, shared by the audio and video tokenizers.

A :class:`ScaleQuantizer` holds, for one (modality, scale):

* ``mean``       ``[D]``        subtracted before projecting,
* ``proj``       ``[D, d]``     the learned linear projection (orthonormal PCA basis),
* ``codebooks``  ``[L, K, d]``  L residual levels of K codes each.

Encoding is ``x [N, D] -> z = (x - mean) @ proj [N, d] -> codes [N, L]``; decoding sums the chosen
codewords of the first ``depth`` levels and maps back with ``proj.T``. Two paths share these
arrays: NumPy float64 for audio (tiny batches, where torch's per-call overhead would dominate and
float64 makes chunking-independent results safe from rounding ties) and torch for video (large
batches, CPU or CUDA, float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from livetok.tokenizers.rvq_rows import encode_rows


@dataclass(frozen=True)
class TorchParams:
    """A quantizer's arrays on one device: ``weight [D, d]``, ``bias [d]``, ``codebooks [L, K, d]``,
    ``codebooks_t [L, d, K]``, ``half_norms [L, K]``."""

    weight: torch.Tensor
    bias: torch.Tensor
    codebooks: torch.Tensor
    codebooks_t: torch.Tensor
    half_norms: torch.Tensor


def argmin_rows(scores: torch.Tensor, group: int = 64) -> torch.Tensor:
    """``scores [N, K] -> argmin over K [N]``, the same result as ``scores.argmin(1)`` (ties: first).

    torch's CPU argmin along a row is not vectorised but ``amin`` is: take the minimum of each group
    of ``group`` codes, the first group holding the row minimum, and the argmin inside it.
    ``bench/bench_video.py`` measured 2.9 -> about 1 ms for 1568 x 1024 scores.
    """
    n, k = scores.shape
    if k % group or scores.device.type != "cpu":
        return scores.argmin(dim=1)
    v = scores.view(n, k // group, group)
    grp = v.amin(dim=2).argmin(dim=1)
    within = v[torch.arange(n, device=scores.device), grp].argmin(dim=1)
    return grp * group + within


@dataclass(frozen=True)
class Encoded:
    """Result of an encode: ``codes [N, L] uint16`` and the projected vectors ``z [N, d]``."""

    codes: np.ndarray
    z: np.ndarray


class ScaleQuantizer:
    """Projection + RVQ for one scale; ``levels`` may be fewer than the fitted depth."""

    def __init__(self, mean: np.ndarray, proj: np.ndarray, codebooks: np.ndarray, levels: int) -> None:
        if codebooks.ndim != 3 or proj.ndim != 2 or mean.shape != (proj.shape[0],):
            raise ValueError("inconsistent quantizer shapes")
        if not 1 <= levels <= codebooks.shape[0]:
            raise ValueError(f"levels={levels} but the codebooks have {codebooks.shape[0]}")
        self.mean = mean.astype(np.float64)
        self.proj = proj.astype(np.float64)
        self.codebooks = codebooks[:levels].astype(np.float64)
        self._half_norms = 0.5 * np.einsum("lkd,lkd->lk", self.codebooks, self.codebooks)
        self._books_t = np.ascontiguousarray(self.codebooks.transpose(0, 2, 1))  # [L, d, K]
        self._torch: dict[tuple[str, torch.dtype, float], TorchParams] = {}
        # The audio kernel streams the codebooks once per step and is bound by memory, so it reads
        # float32 copies (its sums, and the projection, stay per-row deterministic).
        self._books_t32 = self._books_t.astype(np.float32)
        self._half_norms32 = self._half_norms.astype(np.float32)

    @property
    def levels(self) -> int:
        return int(self.codebooks.shape[0])

    @property
    def codebook_size(self) -> int:
        return int(self.codebooks.shape[1])

    @property
    def in_dim(self) -> int:
        return int(self.proj.shape[0])

    @property
    def dim(self) -> int:
        return int(self.proj.shape[1])

    def encode_np(self, x: np.ndarray) -> Encoded:
        """``x [N, D] float64 -> Encoded(codes [N, L] uint16, z [N, d] float64)``."""
        z = (x - self.mean) @ self.proj
        r = z.copy()
        codes = np.empty((x.shape[0], self.levels), dtype=np.uint16)
        for level, (cb, hn) in enumerate(zip(self.codebooks, self._half_norms, strict=True)):
            # argmin ||r - c||^2 == argmin (||c||^2 / 2 - r.c): one matmul per level.
            idx = np.argmin(hn - r @ cb.T, axis=1)
            codes[:, level] = idx
            r -= cb[idx]
        return Encoded(codes=codes, z=z)

    def encode_rows(self, x: np.ndarray) -> Encoded:
        """Like :meth:`encode_np`, but row by row (jitted): the result never depends on ``N``."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        codes = np.empty((x.shape[0], self.levels), dtype=np.uint16)
        z = np.empty((x.shape[0], self.dim))
        encode_rows(x, self.mean, self.proj, self._books_t32, self._half_norms32, codes, z)
        return Encoded(codes=codes, z=z)

    def torch_params(self, device: torch.device, dtype: torch.dtype, input_scale: float) -> TorchParams:
        """The arrays on ``device``, with ``input_scale`` and the mean folded into the projection."""
        key = (str(device), dtype, input_scale)
        if key not in self._torch:
            def t(a: np.ndarray) -> torch.Tensor:
                return torch.as_tensor(a, dtype=dtype, device=device).contiguous()

            # z = (s * x - mean) @ proj = x @ (s * proj) + (-mean @ proj): one addmm, folded in float64.
            self._torch[key] = TorchParams(
                weight=t(self.proj * input_scale), bias=t(-(self.mean @ self.proj)), codebooks=t(self.codebooks),
                codebooks_t=t(self._books_t), half_norms=t(self._half_norms),
            )
        return self._torch[key]

    def encode_torch(self, x: torch.Tensor, input_scale: float = 1.0,
                     levels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, D] -> (codes [N, L] int64, z [N, d])`` on x's device and dtype; ``x`` is multiplied
        by ``input_scale`` first (so video can pass raw 0-255 pixel values). ``levels``: only the first
        that many (an overloaded daemon sheds the last levels; the codes are those of the full depth)."""
        p = self.torch_params(x.device, x.dtype, input_scale)
        z = torch.addmm(p.bias, x, p.weight)
        r = z.clone()
        n = x.shape[0]
        depth = self.levels if levels is None else min(levels, self.levels)
        codes = torch.empty((n, depth), dtype=torch.int64, device=x.device)
        scores = torch.empty((n, self.codebook_size), dtype=x.dtype, device=x.device)  # reused per level
        for level in range(depth):
            # ||c||^2/2 - r.c in one BLAS call; its argmin is the nearest code.
            torch.addmm(p.half_norms[level], r, p.codebooks_t[level], beta=1.0, alpha=-1.0, out=scores)
            idx = argmin_rows(scores)
            codes[:, level] = idx
            if level + 1 < depth:  # the last residual is never used
                r -= p.codebooks[level].index_select(0, idx)
        return codes, z

    def decode(self, codes: np.ndarray, depth: int | None = None) -> np.ndarray:
        """``codes [N, L'] -> x_hat [N, D] float64`` using the first ``depth`` levels (default all)."""
        depth = codes.shape[1] if depth is None else depth
        z = np.zeros((codes.shape[0], self.dim))
        for level in range(depth):
            z += self.codebooks[level][codes[:, level].astype(np.int64)]
        return z @ self.proj.T + self.mean

    def decode_z(self, z: np.ndarray) -> np.ndarray:
        """Projected vectors ``z [N, d] -> x [N, D]`` (the projection's own reconstruction)."""
        return z @ self.proj.T + self.mean
