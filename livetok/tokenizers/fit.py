"""``livetok fit``: learn projections and RVQ codebooks from media files and write a codebook file.

Training vectors are drawn the way the tokenizers will see them, with cheap augmentation so that a
few hours of media is not needed: video frames at several random square crops and mirror images,
patches at every patch offset; audio vectors at every log-mel frame offset (not only at step
boundaries).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from livetok.errors import MediaError
from livetok.media import decode
from livetok.tokenizers.audio_frontend import StreamingLogMel, StreamingResampler
from livetok.tokenizers.codebooks import CodebookSet, ScaleArrays, audio_frontend, make_set, video_frontend
from livetok.tokenizers.config import TokenizerConfig
from livetok.tokenizers.frames import to_model_image
from livetok.tokenizers.kmeans import fit_rvq, pca
from livetok.tokenizers.video import patchify, resolve_device

MEDIA_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".mkv", ".mov",
                  ".webm", ".avi", ".ts", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}


@dataclass(frozen=True)
class FitOptions:
    iters: int = 20  # Lloyd iterations per level
    seed: int = 0
    crops_per_frame: int = 24  # augmented square crops per still image / sampled video frame
    video_frames_per_file: int = 60  # frames sampled from each video file
    max_vectors: int = 200_000  # training vectors per scale, subsampled beyond this


@dataclass
class TrainingData:
    audio_logmel: list[np.ndarray] = field(default_factory=list)  # [T, n_mels] per file
    video_images: list[np.ndarray] = field(default_factory=list)  # [S, S, 3] uint8


def media_files(inputs: Iterable[Path]) -> list[Path]:
    """Files and folders (searched recursively for media suffixes) -> sorted media files."""
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in MEDIA_SUFFIXES and f.is_file())
        elif p.exists():
            out.append(p)
        else:
            raise MediaError(f"{p}: no such file or directory")
    return out


def gather(files: list[Path], cfg: TokenizerConfig, opts: FitOptions) -> TrainingData:
    rng = np.random.default_rng(opts.seed)
    data = TrainingData()
    for f in tqdm(files, desc="reading media", unit="file", leave=False):
        res = StreamingResampler(cfg.audio.sample_rate)
        logmel = StreamingLogMel(cfg.audio)
        mels = []
        frames = []
        for mf in decode(f):
            if mf.kind == "audio":
                mels.append(logmel.push(res.push(mf.audio)))
            else:
                frames.append(mf.video.to_ndarray(format="rgb24"))
        if mels:
            mels.append(logmel.push(res.flush()))
            data.audio_logmel.append(np.concatenate(mels))
        if frames:
            pick = np.linspace(0, len(frames) - 1, min(len(frames), opts.video_frames_per_file)).astype(int)
            for i in np.unique(pick):
                data.video_images += _augment(frames[i], cfg.video.size, opts.crops_per_frame, rng)
    return data


def _augment(rgb: np.ndarray, size: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The frame as the tokenizer sees it, plus ``n`` random square crops (side 25-100%), mirrored
    at random, and with colours varied (channel order, saturation) half of the time: a few natural
    photographs otherwise leave strong, flat colours (signs, clothes, screens) uncovered."""
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    rgb = rgb[..., :3]
    out = [to_model_image(np.ascontiguousarray(rgb), size, "crop")]
    h, w = rgb.shape[:2]
    for _ in range(n):
        side = int(min(h, w) * rng.uniform(0.25, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = rgb[y : y + side, x : x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.5:
            crop = _vary_colour(crop, rng)
        out.append(to_model_image(np.ascontiguousarray(crop), size, "stretch"))
    return out


def _vary_colour(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = rgb[..., rng.permutation(3)].astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(1.0, 3.0)
    return np.clip(x, 0, 255).astype(np.uint8)


def _audio_vectors(mels: list[np.ndarray], frames: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    rows = []
    for m in mels:
        if m.shape[0] >= frames:
            windows = np.lib.stride_tricks.sliding_window_view(m, (frames, m.shape[1]))[:, 0]
            rows.append(windows.reshape(-1, frames * m.shape[1]))
    x = np.concatenate(rows)
    return x[rng.choice(x.shape[0], cap, replace=False)] if x.shape[0] > cap else x


def _video_vectors(images: list[np.ndarray], patch: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    batch = torch.from_numpy(np.stack(images))
    vecs = []
    # Every patch offset on a half-patch lattice, so that patch content is not tied to one grid.
    for off in (0, patch // 2):
        s = (batch.shape[1] - off) // patch * patch
        vecs.append(patchify(batch[:, off : off + s, off : off + s].contiguous(), patch).numpy())
    x = np.concatenate(vecs)
    return x[rng.choice(x.shape[0], cap, replace=False)] if x.shape[0] > cap else x


def fit(files: list[Path], cfg: TokenizerConfig, opts: FitOptions, base: CodebookSet | None) -> CodebookSet:
    """Fit every scale that the inputs have data for; take the others from ``base``."""
    data = gather(files, cfg, opts)
    rng = np.random.default_rng(opts.seed)
    device = resolve_device(cfg.device)
    scales: dict[str, ScaleArrays] = {}
    jobs = []
    if data.audio_logmel:
        for scale in ("fine", "coarse"):
            frames = getattr(cfg.audio, f"{scale}_frames")
            jobs.append(("audio", scale, _audio_vectors(data.audio_logmel, frames, opts.max_vectors, rng)))
    if data.video_images:
        for scale in ("fine", "coarse"):
            patch = getattr(cfg.video, f"{scale}_patch")
            jobs.append(("video", scale, _video_vectors(data.video_images, patch, opts.max_vectors, rng)))
    if not jobs:
        raise MediaError("no audio or video found in the inputs")
    total = sum(getattr(getattr(cfg, m), s).levels * opts.iters for m, s, _ in jobs)
    with tqdm(total=total, desc="fitting codebooks", unit="iter") as bar:
        for modality, scale, x in jobs:
            rvq = getattr(getattr(cfg, modality), scale)
            if x.shape[0] < rvq.codebook_size:
                raise MediaError(
                    f"{modality}.{scale}: {x.shape[0]} training vectors for {rvq.codebook_size} codes; give more media"
                )
            bar.set_postfix_str(f"{modality}.{scale} ({x.shape[0]} vectors)")
            mean, proj = pca(x, rvq.dim)
            z = (x - mean) @ proj
            books = fit_rvq(z, rvq.levels, rvq.codebook_size, opts.iters, opts.seed, device, progress=bar.update)
            scales[f"{modality}.{scale}"] = ScaleArrays(mean, proj, books)
    frontend = {"audio": audio_frontend(cfg.audio), "video": video_frontend(cfg.video)}
    for key in [f"{m}.{s}" for m in ("audio", "video") for s in ("fine", "coarse")]:
        if key not in scales:
            if base is None:
                raise MediaError(f"the inputs have no {key.split('.')[0]} to fit {key} from")
            scales[key] = base.scales[key]
            modality = key.split(".")[0]
            frontend[modality] = base.frontend[modality]
    return make_set(frontend, scales)
