"""Beam search over RVQ levels on the CPU, one jitted kernel per batch, scored without residuals.

The squared error of a partial sum after level ``l`` is, with ``a_j`` the code chosen at level ``j``::

    ||z - sum_j c_j[a_j] - c_l[c]||^2 / 2
        = ||z - sum_j c_j[a_j]||^2 / 2  +  (||c_l[c]||^2 / 2 - z . c_l[c])  +  sum_{j<l} c_j[a_j] . c_l[c]

The first term is what the kept sum already had, the second is one row of a single matrix product
of ``z`` with every level's codebook (made before the kernel, one BLAS call for all levels), and the
third is read from the codebooks' Gram tables ``c_j . c_l`` (``K x K`` per pair of levels, made once).
So the search never forms a residual and never multiplies one: a beam of B costs the greedy
encoder's matrix product plus ``B x K`` additions per level and row. The torch formulation
(:func:`livetok.tokenizers.rvq.beam_codes`, kept for other devices) ran about 150 tensor operations
per batch, each giving the GIL back and waiting for it behind the capture threads; this kernel
runs without the GIL from start to end.

Selection rules are those of the torch formulation: the ``beam`` best sums per level by (error,
kept-sum index, code), the greedy path kept in place of the last one when it falls out, and the
single best sum at the last level. A row's scores and Gram terms are added in their own precision
(float32 in the video path), each kept sum's error in float64; every row goes through the same
instructions whatever the batch, so a row's codes never depend on the others.
"""

from __future__ import annotations

import numba
import numpy as np

from livetok.tokenizers.jitcache import ensure_cache_dir

ensure_cache_dir()  # before numba picks where the cache=True kernels below are kept


@numba.njit(cache=True, nogil=True)
def pair_index(j: int, level: int) -> int:
    """Where the Gram table of levels ``j < level`` lies in :func:`gram_tables`' output (with
    ``j = 0, level = L``: how many tables ``L`` levels have)."""
    return level * (level - 1) // 2 + j


def gram_tables(codebooks: np.ndarray) -> np.ndarray:
    """``codebooks [L, K, d] -> [L(L-1)/2, K, K] float32``: ``c_j[a] . c_l[c]`` for every ``j < l``,
    at :func:`pair_index` ``(j, l)``; formed in float64."""
    levels, k, _ = codebooks.shape
    books = codebooks.astype(np.float64)
    out = np.empty((pair_index(0, levels), k, k), dtype=np.float32)
    for level in range(1, levels):
        for j in range(level):
            out[pair_index(j, level)] = books[j] @ books[level].T
    return out


@numba.njit(cache=True, nogil=True)
def _row_sums(row: np.ndarray, scores: np.ndarray, grams: np.ndarray, codes: np.ndarray, level: int) -> None:
    """``row[c] = scores[c] + sum_{j<level} grams[pair(j, level), codes[j], c]``."""
    k = row.shape[0]
    for c in range(k):
        row[c] = scores[c]
    for j in range(level):
        g = grams[pair_index(j, level), codes[j]]
        for c in range(k):
            row[c] += g[c]


CHUNK = 64  # codes per selection check: one vectorized count, then a scalar scan only where needed


@numba.njit(cache=True, nogil=True)
def _any_under(row: np.ndarray, start: int, stop: int, worst: float, base: float) -> bool:
    """Whether any ``base + row[c]``, ``c`` in ``[start, stop)``, may lie under ``worst``: ``row[c]``
    compared in its own precision with ``worst - base`` widened by 1e-5 of ``|worst| + |base|``, far
    more than the rounding of either comparison (never misses one; the caller checks exactly)."""
    b = row.dtype.type(worst - base + (abs(worst) + abs(base)) * 1e-5 + 1e-30)
    n = 0
    for c in range(start, stop):
        n += row[c] < b
    return n > 0


@numba.njit(cache=True, nogil=True)
def _first_min(row: np.ndarray) -> int:
    """The first index of ``row``'s minimum."""
    best = 0
    for c in range(1, row.shape[0]):
        if row[c] < row[best]:
            best = c
    return best


@numba.njit(cache=True, nogil=True)
def _select(row: np.ndarray, base: float, flat0: int, keep: int, count: int, val: np.ndarray,
            flat: np.ndarray) -> int:
    """Merge the sums ``base + row[c]`` (flat index ``flat0 + c``) into the ``count`` kept ones
    (``val``, ``flat``: at most ``keep``, in (error, index) order); returns the new count. Equal
    errors keep the lower index: the sums come in increasing index order and only a smaller one
    enters."""
    k = row.shape[0]
    worst = val[keep - 1] if count == keep else np.inf
    for c0 in range(0, k, CHUNK):
        c1 = min(k, c0 + CHUNK)
        if not _any_under(row, c0, c1, worst, base):
            continue
        for c in range(c0, c1):
            v = base + row[c]
            if not v < worst:
                continue
            at = count if count < keep else keep - 1
            while at > 0 and v < val[at - 1]:
                val[at] = val[at - 1]
                flat[at] = flat[at - 1]
                at -= 1
            val[at] = v
            flat[at] = flat0 + c
            if count < keep:
                count += 1
            if count == keep:
                worst = val[keep - 1]
    return count


@numba.njit(cache=True, nogil=True)
def beam_rows(
    scores: np.ndarray, z: np.ndarray, grams: np.ndarray, depth: int, beam: int, codes: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """``scores [N, depth * K]`` (``||c||^2/2 - z.c``, level-major), ``z [N, d]``, ``grams`` from
    :func:`gram_tables` -> ``codes [N, depth]`` int64 (the best sum found)."""
    n_rows = scores.shape[0]
    k = scores.shape[1] // depth
    width = max(1, beam)
    kept_val = np.empty(width)  # the kept sums: error / 2, in (error, index) order
    kept_codes = np.empty((width, depth), np.int64)
    new_val = np.empty(width)
    new_flat = np.empty(width, np.int64)  # kept-sum index * K + code
    new_codes = np.empty((width, depth), np.int64)
    row = np.empty(k, scores.dtype)
    for n in range(n_rows):
        kept = 1
        kept_val[0] = 0.0
        for i in range(z.shape[1]):
            kept_val[0] += 0.5 * np.float64(z[n, i]) * np.float64(z[n, i])
        kept_codes[0, :] = 0
        greedy = 0  # which kept sum is the greedy path
        for level in range(depth):
            keep = 1 if level + 1 == depth else min(beam, kept * k)
            count = 0
            for b in range(kept):
                _row_sums(row, scores[n, level * k : (level + 1) * k], grams, kept_codes[b], level)
                count = _select(row, kept_val[b], b * k, keep, count, new_val, new_flat)
                if keep > 1 and b == greedy:
                    greedy_val, greedy_flat = _greedy_step(row, kept_val[b], b * k, count, new_val, new_flat)
            if count == 0:  # a row of NaN (never from pixels): code 0 after the greedy path, as argmin gives
                count = 1
                new_val[0] = kept_val[greedy]
                new_flat[0] = greedy * k
            if keep > 1:
                # The greedy path's next sum is its best extension: kept if any of its extensions
                # is; else it replaces the last kept sum.
                greedy = _find(new_flat, count, greedy_flat)
                if greedy < 0:
                    greedy = count - 1
                    new_val[greedy] = greedy_val
                    new_flat[greedy] = greedy_flat
            for i in range(count):
                parent = new_flat[i] // k
                for j in range(level):
                    new_codes[i, j] = kept_codes[parent, j]
                new_codes[i, level] = new_flat[i] % k
            for i in range(count):
                kept_val[i] = new_val[i]
                for j in range(level + 1):
                    kept_codes[i, j] = new_codes[i, j]
            kept = count
        for j in range(depth):
            codes[n, j] = kept_codes[0, j]


@numba.njit(cache=True, nogil=True)
def _greedy_step(row: np.ndarray, base: float, flat0: int, count: int, val: np.ndarray,
                 flat: np.ndarray) -> tuple[float, int]:
    """The greedy path's next sum (error / 2, flat index) after :func:`_select` merged its
    extensions: the first kept one from this parent if any (the best extension is kept whenever any
    is), else the row's first minimum."""
    for i in range(count):
        if flat0 <= flat[i] < flat0 + row.shape[0]:
            return val[i], flat[i]
    c = _first_min(row)
    return base + row[c], flat0 + c


@numba.njit(cache=True, nogil=True)
def _find(flat: np.ndarray, count: int, target: int) -> int:
    for i in range(count):
        if flat[i] == target:
            return i
    return -1
