"""Per-patch change detection for delta mode: mean absolute pixel difference of each patch.

The numba kernel walks each image row as one contiguous run of bytes (a loop LLVM vectorizes),
adding |a - b| into an int32 accumulator per (patch row, byte column), then sums each patch's
columns once: about 10x faster than the NumPy formulation (``bench/bench_delta.py``), which is kept
as the reference the tests compare against. Integer sums: the result is exact.
"""

from __future__ import annotations

import numba
import numpy as np

from livetok.tokenizers.jitcache import ensure_cache_dir


def patch_change_numpy(image: np.ndarray, ref: np.ndarray, patch: int) -> np.ndarray:
    """``image, ref [S, S, 3] uint8 -> [g, g] float64`` mean |image - ref| per patch (0-255 levels)."""
    g = image.shape[0] // patch
    diff = np.abs(image.astype(np.int16) - ref.astype(np.int16))
    return diff.reshape(g, patch, g, patch, 3).mean(axis=(1, 3, 4))


ensure_cache_dir()  # before numba picks where the cache=True kernels below are kept


@numba.njit(cache=True, nogil=True)
def _patch_change(image: np.ndarray, ref: np.ndarray, patch: int) -> np.ndarray:  # pragma: no cover - jitted
    s = image.shape[0]
    g = s // patch
    width = g * patch * 3
    img = image.reshape(s, s * 3)
    rf = ref.reshape(s, s * 3)
    acc = np.zeros((g, width), np.int32)
    for y in range(g * patch):
        a = img[y]
        b = rf[y]
        row = acc[y // patch]
        for x in range(width):
            d = np.int32(a[x]) - np.int32(b[x])
            row[x] += d if d >= 0 else -d
    out = np.empty((g, g))
    pw = patch * 3
    for gy in range(g):
        for gx in range(g):
            t = 0
            for x in range(gx * pw, gx * pw + pw):
                t += acc[gy, x]
            out[gy, gx] = t / (patch * patch * 3)
    return out


def patch_change(image: np.ndarray, ref: np.ndarray, patch: int) -> np.ndarray:
    """Same as :func:`patch_change_numpy`, jitted (releases the GIL)."""
    return _patch_change(np.ascontiguousarray(image), np.ascontiguousarray(ref), patch)
