"""Row-at-a-time projection + RVQ encode for the audio path, jitted with numba.

Every row goes through the same instruction sequence whatever the batch size, so the codes of a
step cannot depend on how the input was chunked (a BLAS call may pick a different kernel, and so a
different rounding, for 1 row than for 100). The inner loops run across codes, not across the
dimension being summed, so they vectorize without reassociating any sum. The kernel is bound by
reading the codebooks (once per step), so it takes them in float32; the projection stays float64.
``bench/bench_audio.py`` compares it with the NumPy formulation (:meth:`ScaleQuantizer.encode_np`).
"""

from __future__ import annotations

import numba
import numpy as np

from livetok.tokenizers.jitcache import ensure_cache_dir

ensure_cache_dir()  # before numba picks where the cache=True kernels below are kept


@numba.njit(cache=True, nogil=True)
def encode_rows(
    x: np.ndarray, mean: np.ndarray, proj: np.ndarray, books_t: np.ndarray, half_norms: np.ndarray,
    codes: np.ndarray, z_out: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """``x [N, D]`` -> ``codes [N, L]`` and ``z_out [N, d]``; ``books_t [L, d, K]``, ``half_norms [L, K]``."""
    n_rows, n_in = x.shape
    dim = proj.shape[1]
    levels, _, k_codes = books_t.shape
    scores = np.empty(k_codes, books_t.dtype)
    r = np.empty(dim, books_t.dtype)
    for n in range(n_rows):
        z = z_out[n]
        z[:] = 0.0
        for i in range(n_in):
            v = x[n, i] - mean[i]
            for j in range(dim):
                z[j] += v * proj[i, j]
        for j in range(dim):
            r[j] = z[j]
        for level in range(levels):
            b = books_t[level]
            scores[:] = half_norms[level]
            j = 0
            # Four dimensions per pass over the scores: a quarter of the loads and stores of `scores`.
            while j + 4 <= dim:
                r0, r1, r2, r3 = r[j], r[j + 1], r[j + 2], r[j + 3]
                for k in range(k_codes):
                    acc = scores[k]
                    acc -= r0 * b[j, k]
                    acc -= r1 * b[j + 1, k]
                    acc -= r2 * b[j + 2, k]
                    acc -= r3 * b[j + 3, k]
                    scores[k] = acc
                j += 4
            while j < dim:
                rj = r[j]
                for k in range(k_codes):
                    scores[k] -= rj * b[j, k]
                j += 1
            best = 0
            for k in range(1, k_codes):
                if scores[k] < scores[best]:
                    best = k
            codes[n, level] = best
            for j in range(dim):
                r[j] -= b[j, best]
