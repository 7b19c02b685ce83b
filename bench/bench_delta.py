"""Delta mode: cost of the change detector, and the tokens it saves vs. the picture quality it costs.

    .venv/bin/python bench/bench_delta.py [--seconds 5] [--repeat 300]

1. ``patch_delta.patch_change`` (the row-wise numba kernel) vs ``patch_change_numpy`` on 224 x 224
   frames, fine (16 px) and coarse (32 px) patches: µs per frame (best and median of ``--repeat``,
   interleaved) and whether they agree bit for bit.
2. A mostly static scene (``skimage.data.coffee`` centre-cropped to 224, a 24 px square moving
   across it, 30 fps), with and without camera-like noise (Gaussian, sigma 2 levels, new every
   frame). Each frame is tokenized by a ``VideoStream`` with delta mode on at thresholds 1, 3, 6
   (keyframe every 2 s, the default). The consumer rebuilds the full grid from keyframes and delta
   packets (keeping the last codes per position) and reconstructs every frame with
   ``VideoTokenizer.reconstruct``; the table gives the share of patch tokens not sent and the PSNR
   (over the clip, against the source frames) next to that of the full, non-delta tokenization.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import best_median, interleaved, print_header, table

from livetok.config.tokenizer import DeltaConfig
from livetok.media.frames import to_model_image
from livetok.tokenizers import TokenizerConfig, Tokenizers, VideoConfig
from livetok.tokenizers.patch_delta import patch_change, patch_change_numpy
from livetok.tokenizers.video import SCALES

FPS = 30
FRAME_NS = 1_000_000_000 // FPS
THRESHOLDS = (1.0, 3.0, 6.0)


def background(size: int) -> np.ndarray:
    try:
        from skimage import data

        img = data.coffee()
    except ImportError:  # a smooth synthetic picture instead
        yy, xx = np.mgrid[0:400, 0:600]
        img = np.stack([xx * 255 // 600, yy * 255 // 400, (xx + yy) * 255 // 1000], -1).astype(np.uint8)
    return to_model_image(img, size, "crop")


def scene(size: int, frames: int, noise: float, seed: int = 0) -> np.ndarray:
    """``[frames, size, size, 3] uint8``: still background, a 24 px square moving 3 px per frame."""
    rng = np.random.default_rng(seed)
    bg = background(size).astype(np.float32)
    out = np.empty((frames, size, size, 3), np.uint8)
    side, span = 24, size - 24
    for i in range(frames):
        f = bg.copy()
        pos = (3 * i) % (2 * span)
        x = pos if pos < span else 2 * span - pos  # bounce
        y = size // 3 + int(20 * np.sin(i / 15))
        f[y : y + side, x : x + side] = (230, 40, 40)
        if noise:
            f += rng.normal(0, noise, f.shape)
        out[i] = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    return out


def psnr(mse: float) -> float:
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def detector_timing(repeat: int) -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    b = np.clip(a.astype(np.int16) + rng.integers(-4, 5, a.shape), 0, 255).astype(np.uint8)
    rows = []
    for p in (16, 32):
        fns = {
            "numpy (patch_change_numpy)": lambda p=p: patch_change_numpy(a, b, p),
            "numba row-wise (patch_change, packaged)": lambda p=p: patch_change(a, b, p),
        }
        ref = patch_change_numpy(a, b, p)
        res = interleaved(fns, repeat)  # first call of each compiles (cached on disk afterwards)
        base = best_median(res["numpy (patch_change_numpy)"])[0]
        for name, fn in fns.items():
            b_, m_ = best_median(res[name])
            rows.append([f"{p} px ({(224 // p) ** 2} patches)", name, b_ * 1e6, m_ * 1e6,
                         np.array_equal(fn(), ref), base / b_])
    print("\npatch_change on one 224 x 224 frame, µs (interleaved)")
    print(table(["patch", "implementation", "best µs", "median µs", "== numpy bit for bit", "speed-up vs numpy"],
                rows))


def delta_run(
    toks: Tokenizers, frames: np.ndarray, batch: int
) -> tuple[dict[str, int], dict[str, float], float, int]:
    """Tokenize with a stream; returns tokens sent, clip MSE per scale, packet ms/frame, keyframes."""
    vt = toks.video
    stream = vt.stream("cam")
    grid: dict[str, np.ndarray] = {}
    sent = dict.fromkeys(SCALES, 0)
    sq_err = dict.fromkeys(SCALES, 0.0)
    keyframes = 0
    packet_s = 0.0
    for i0 in range(0, len(frames), batch):
        imgs = frames[i0 : i0 + batch]
        codes = vt.encode(imgs)
        for j, img in enumerate(imgs):
            t = time.perf_counter()
            packets = stream.packets(img, codes, j, (i0 + j) * FRAME_NS, (i0 + j + 1) * FRAME_NS)
            packet_s += time.perf_counter() - t
            for p in packets:
                s = p.scale.name.lower()
                if p.positions is None:
                    grid[s] = p.codes.copy()
                    keyframes += s == "fine"
                else:
                    grid[s][p.positions.astype(np.int64)] = p.codes
                sent[s] += p.codes.shape[0]
                rec = vt.reconstruct(grid[s], s).astype(np.float64)
                sq_err[s] += float(np.mean((rec - img) ** 2))
    n = len(frames)
    return sent, {s: v / n for s, v in sq_err.items()}, 1e3 * packet_s / n, keyframes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=300, help="timed calls per detector measurement")
    args = ap.parse_args()
    cont = print_header("bench_delta: delta-mode change detection, token saving and PSNR cost")
    detector_timing(args.repeat)

    n = round(args.seconds * FPS)
    base = Tokenizers.from_config(TokenizerConfig(device="cpu"))
    size, batch = base.cfg.video.size, base.cfg.video.batch_size
    grid_p = {s: base.video.grid[s] ** 2 for s in SCALES}
    for noise in (0.0, 2.0):
        frames = scene(size, n, noise)
        # full tokenization: every patch of every frame
        full_err = dict.fromkeys(SCALES, 0.0)
        for i0 in range(0, n, batch):
            c = base.video.encode(frames[i0 : i0 + batch])
            for j, img in enumerate(frames[i0 : i0 + batch]):
                for s in SCALES:
                    rec = base.video.reconstruct(c.codes[s][j], s).astype(np.float64)
                    full_err[s] += float(np.mean((rec - img) ** 2))
        full_psnr = {s: psnr(full_err[s] / n) for s in SCALES}
        _, _, full_ms, _ = delta_run(base, frames, batch)  # packet building without delta, for reference
        rows = []
        for thr in THRESHOLDS:
            cfg = TokenizerConfig(device="cpu", video=VideoConfig(delta=DeltaConfig(enabled=True, threshold=thr)))
            sent, mse, ms, keys = delta_run(Tokenizers.from_config(cfg), frames, batch)
            for s in SCALES:
                d_psnr = psnr(mse[s])
                rows.append([thr, s, f"{sent[s]} / {n * grid_p[s]}", 100 * (1 - sent[s] / (n * grid_p[s])),
                             full_psnr[s], d_psnr, d_psnr - full_psnr[s], keys, ms])
        label = "no noise" if not noise else f"Gaussian noise sigma {noise:g} levels per frame"
        print(f"\nmostly static scene, {n} frames at {FPS} fps ({args.seconds:g} s), {label}; "
              f"packets() without delta: {full_ms:.3f} ms/frame")
        print(table(["threshold", "scale", "patch tokens sent", "saved %", "PSNR full dB", "PSNR delta dB",
                     "ΔPSNR dB", "keyframes", "packets() ms/frame"], rows))
    print(cont.report())


if __name__ == "__main__":
    main()
