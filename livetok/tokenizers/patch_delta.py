"""Per-patch change detection for delta mode: mean absolute pixel difference of each patch.

numba beats the NumPy formulation here (no int16 temporaries of the whole frame; one pass), see
``bench/bench_delta.py``; the NumPy version is kept as the reference the tests compare against.
"""

from __future__ import annotations

import numba
import numpy as np


def patch_change_numpy(image: np.ndarray, ref: np.ndarray, patch: int) -> np.ndarray:
    """``image, ref [S, S, 3] uint8 -> [g, g] float64`` mean |image - ref| per patch (0-255 levels)."""
    g = image.shape[0] // patch
    diff = np.abs(image.astype(np.int16) - ref.astype(np.int16))
    return diff.reshape(g, patch, g, patch, 3).mean(axis=(1, 3, 4))


@numba.njit(cache=True, nogil=True)
def _patch_change(image: np.ndarray, ref: np.ndarray, patch: int) -> np.ndarray:  # pragma: no cover - jitted
    g = image.shape[0] // patch
    out = np.zeros((g, g))
    for y in range(g * patch):
        gy = y // patch
        for x in range(g * patch):
            gx = x // patch
            acc = np.int32(0)
            for c in range(3):
                d = np.int32(image[y, x, c]) - np.int32(ref[y, x, c])
                acc += d if d >= 0 else -d
            out[gy, gx] += acc
    return out / (patch * patch * 3)


def patch_change(image: np.ndarray, ref: np.ndarray, patch: int) -> np.ndarray:
    """Same as :func:`patch_change_numpy`, jitted (releases the GIL)."""
    return _patch_change(np.ascontiguousarray(image), np.ascontiguousarray(ref), patch)
