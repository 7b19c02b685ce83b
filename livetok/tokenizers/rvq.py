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
        self._torch: dict[tuple[str, torch.dtype], tuple[torch.Tensor, ...]] = {}

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
        encode_rows(x, self.mean, self.proj, self._books_t, self._half_norms, codes, z)
        return Encoded(codes=codes, z=z)

    def torch_params(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """``(mean [D], proj [D, d], codebooks [L, K, d], half_norms [L, K])`` on ``device``."""
        key = (str(device), dtype)
        if key not in self._torch:
            self._torch[key] = tuple(
                torch.as_tensor(a, dtype=dtype, device=device).contiguous()
                for a in (self.mean, self.proj, self.codebooks, self._half_norms)
            )
        return self._torch[key]

    def encode_torch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, D] -> (codes [N, L] int64, z [N, d])`` on x's device and dtype."""
        mean, proj, cbs, hns = self.torch_params(x.device, x.dtype)
        z = (x - mean) @ proj
        r = z.clone()
        codes = torch.empty((x.shape[0], self.levels), dtype=torch.int64, device=x.device)
        for level in range(self.levels):
            # addmm fuses ||c||^2/2 - r.c into one BLAS call.
            scores = torch.addmm(hns[level], r, cbs[level].T, beta=1.0, alpha=-1.0)
            idx = scores.argmin(dim=1)
            codes[:, level] = idx
            r -= cbs[level].index_select(0, idx)
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
