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

The torch path encodes greedily (``beam=1``: the nearest code at each level) or by beam search
(``beam=B``: the B best partial sums are kept per level): on the CPU in one jitted kernel that
holds no GIL (:mod:`livetok.tokenizers.rvq_beam`), on other devices as tensor operations
(:func:`beam_codes`); the decoder and the codebooks are the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from livetok.tokenizers.rvq_beam import beam_rows, gram_tables, pair_index
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


def greedy_codes(p: TorchParams, z: torch.Tensor, depth: int) -> torch.Tensor:
    """``z [N, d] -> codes [N, depth] int64``: the nearest code at each level, of what the earlier
    levels left."""
    r = z.clone()
    n, k = z.shape[0], p.codebooks.shape[1]
    codes = torch.empty((n, depth), dtype=torch.int64, device=z.device)
    scores = torch.empty((n, k), dtype=z.dtype, device=z.device)  # reused per level
    for level in range(depth):
        # ||c||^2/2 - r.c in one BLAS call; its argmin is the nearest code.
        torch.addmm(p.half_norms[level], r, p.codebooks_t[level], beta=1.0, alpha=-1.0, out=scores)
        idx = argmin_rows(scores)
        codes[:, level] = idx
        if level + 1 < depth:  # the last residual is never used
            r -= p.codebooks[level].index_select(0, idx)
    return codes


def smallest(values: torch.Tensor, count: int, group: int = 64) -> torch.Tensor:
    """``values [N, M] -> indices [N, count]``: the ``count`` smallest of each row in increasing
    order, ties to the lower index, whatever the other rows (``topk`` leaves ties open, and is slow
    on the CPU).

    The row is cut into groups of ``group``; the ``count`` smallest values lie in the ``count``
    groups of smallest minimum (ties: lower group), so one ``amin`` pass over the row and argmins
    over ``count`` groups do it. ``values`` is overwritten."""
    n, m = values.shape
    if m % group or m // group <= count:
        return _smallest_by_argmin(values, count)
    groups = values.view(n, m // group, group)
    chosen = _smallest_by_argmin(groups.amin(dim=2), count).sort(dim=1).values  # [N, count], increasing
    rows = torch.arange(n, device=values.device)
    inside = _smallest_by_argmin(groups[rows[:, None], chosen].reshape(n, count * group), count)
    return chosen.gather(1, inside // group) * group + inside % group


def _smallest_by_argmin(values: torch.Tensor, count: int) -> torch.Tensor:
    """:func:`smallest` by ``count`` argmins (first index on ties); ``values`` is overwritten."""
    rows = torch.arange(values.shape[0], device=values.device)
    idx = torch.empty((values.shape[0], count), dtype=torch.int64, device=values.device)
    for j in range(count):
        idx[:, j] = i = argmin_rows(values)
        values[rows, i] = torch.inf
    return idx


def beam_codes(p: TorchParams, z: torch.Tensor, depth: int, beam: int) -> torch.Tensor:
    """``z [N, d] -> codes [N, depth] int64`` by beam search, row by row.

    Each row keeps its ``beam`` best partial sums (smallest squared error ``||z - sum c||^2``) per
    level: every kept sum is extended by every code of the next level (one ``addmm`` of ``N * beam``
    rows), and the ``beam`` best extensions are kept, ties to the lower (sum, code) index. The greedy
    path is always kept too (it replaces the last kept sum when it falls out), so the result never
    reconstructs a row worse than greedy encoding does (up to float rounding). The codes returned are
    those of the best sum after ``depth`` levels."""
    n, d = z.shape
    k = p.codebooks.shape[1]
    rows = torch.arange(n, device=z.device)
    r = z.unsqueeze(1)  # [N, W, d]: the residual of each kept sum (W = 1 before level 0)
    greedy = torch.zeros(n, dtype=torch.int64, device=z.device)  # which kept sum is the greedy path
    parents: list[torch.Tensor] = []  # per level [N, W]: the kept sum each new one extends
    chosen: list[torch.Tensor] = []  # per level [N, W]: its code
    for level in range(depth):
        w = r.shape[1]
        s = torch.addmm(p.half_norms[level], r.reshape(n * w, d), p.codebooks_t[level], beta=1.0, alpha=-1.0)
        s = s.view(n, w, k)  # ||c||^2/2 - r.c
        g_code = argmin_rows(s.view(n * w, k).index_select(0, rows * w + greedy))
        # ||r - c||^2 / 2 = ||r||^2 / 2 + (||c||^2/2 - r.c), for every (kept sum, code) pair
        half = s.add_(0.5 * (r * r).sum(dim=2, keepdim=True)).view(n, w * k)
        keep = 1 if level + 1 == depth else min(beam, w * k)  # the best one of the last level
        sel = argmin_rows(half).unsqueeze(1) if keep == 1 else smallest(half, keep)
        if keep > 1:
            g_flat = greedy * k + g_code
            missing = ~(sel == g_flat[:, None]).any(dim=1)
            sel[:, -1] = torch.where(missing, g_flat, sel[:, -1])
            greedy = (sel == g_flat[:, None]).to(torch.int8).argmax(dim=1)
        parent, code = sel // k, sel % k
        parents.append(parent)
        chosen.append(code)
        if level + 1 < depth:
            r = r[rows[:, None], parent] - p.codebooks[level][code]
    codes = torch.empty((n, depth), dtype=torch.int64, device=z.device)
    at = torch.zeros(n, dtype=torch.int64, device=z.device)  # backtrack from the best final sum
    for level in range(depth - 1, -1, -1):
        codes[:, level] = chosen[level][rows, at]
        at = parents[level][rows, at]
    return codes


# The CPU kernel's limits: float32 and float64 scores (other dtypes take the tensor formulation), and
# Gram tables of at most 64 MiB (L(L-1)/2 x K^2 float32: 4 MB for the packaged coarse codebooks, 24 MB
# for fine; a codebook of 16384 codes would need 1 GiB, so larger sets take the tensor formulation).
KERNEL_DTYPES = (torch.float32, torch.float64)
GRAM_LIMIT_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Encoded:
    """Result of an encode: ``codes [N, L] uint16`` and the projected vectors ``z [N, d]``."""

    codes: np.ndarray
    z: np.ndarray


class ScaleQuantizer:
    """Projection + RVQ for one scale; ``levels`` may be fewer than the fitted depth."""

    def __init__(self, mean: np.ndarray, proj: np.ndarray, codebooks: np.ndarray, levels: int,
                 beam: int = 1) -> None:
        if codebooks.ndim != 3 or proj.ndim != 2 or mean.shape != (proj.shape[0],):
            raise ValueError("inconsistent quantizer shapes")
        if not 1 <= levels <= codebooks.shape[0]:
            raise ValueError(f"levels={levels} but the codebooks have {codebooks.shape[0]}")
        if beam < 1:
            raise ValueError(f"beam={beam}: at least 1")
        self.beam = beam  # partial sums kept per level by encode_torch (1: greedy)
        self.mean = mean.astype(np.float64)
        self.proj = proj.astype(np.float64)
        self.codebooks = codebooks[:levels].astype(np.float64)
        self._half_norms = 0.5 * np.einsum("lkd,lkd->lk", self.codebooks, self.codebooks)
        self._books_t = np.ascontiguousarray(self.codebooks.transpose(0, 2, 1))  # [L, d, K]
        self._torch: dict[tuple[str, torch.dtype, float], TorchParams] = {}
        self._grams: np.ndarray | None = None  # the CPU beam's Gram tables, made at its first use
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

    def encode_torch(self, x: torch.Tensor, input_scale: float = 1.0, levels: int | None = None,
                     beam: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, D] -> (codes [N, L] int64, z [N, d])`` on x's device and dtype; ``x`` is multiplied
        by ``input_scale`` first (so video can pass raw 0-255 pixel values). ``levels``: only the first
        that many (an overloaded daemon sheds the last levels). ``beam``: this call's beam instead of
        the quantizer's (an overloaded daemon's catch-up batches encode greedily: ``beam=1``).

        ``beam == 1``: greedy, and a shed row's codes are the first ``levels`` of its full-depth codes.
        ``beam > 1``: :func:`beam_codes`; the search runs over the levels made, so a shed row gets the
        best reconstruction the beam finds at that depth, which need not be a prefix of its full-depth
        codes. Either way a row's codes depend on that row only, never on the others of the batch."""
        p = self.torch_params(x.device, x.dtype, input_scale)
        z = torch.addmm(p.bias, x, p.weight)
        depth = self.levels if levels is None else min(levels, self.levels)
        beam = self.beam if beam is None else beam
        if beam == 1 or depth <= 1:  # one level: the beam's best sum is the nearest code
            codes = greedy_codes(p, z, depth)
        elif z.device.type == "cpu" and z.dtype in KERNEL_DTYPES and self._gram_bytes() <= GRAM_LIMIT_BYTES:
            codes = self._beam_cpu(p, z, depth, beam)
        else:
            codes = beam_codes(p, z, depth, beam)
        return codes, z

    @property
    def searches(self) -> bool:
        """Whether :attr:`beam` changes any code: a beam over more than one level (with one level the
        beam's best sum is the nearest code, as greedy encoding finds)."""
        return self.beam > 1 and self.levels > 1

    def _gram_bytes(self) -> int:
        return pair_index(0, self.levels) * self.codebook_size**2 * 4

    def _beam_cpu(self, p: TorchParams, z: torch.Tensor, depth: int, beam: int) -> torch.Tensor:
        """:func:`beam_codes` on the CPU: every level's scores in one ``addmm``, then the search in one
        jitted kernel that holds no GIL (:mod:`livetok.tokenizers.rvq_beam`)."""
        if self._grams is None:
            self._grams = gram_tables(self.codebooks)
        k, d = p.codebooks.shape[1], p.codebooks.shape[2]
        books = p.codebooks[:depth].reshape(depth * k, d)
        scores = torch.addmm(p.half_norms[:depth].reshape(depth * k), z, books.t(), beta=1.0, alpha=-1.0)
        codes = np.empty((z.shape[0], depth), dtype=np.int64)
        beam_rows(scores.detach().numpy(), z.detach().numpy(), self._grams, depth, beam, codes)
        return torch.from_numpy(codes)

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
