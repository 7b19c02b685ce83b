"""``livetok fit``: learn projections and RVQ codebooks from media files and write a codebook file.

Training vectors are drawn the way the tokenizers will see them, with cheap augmentation so that a
few hours of media is not needed: video frames at several random square crops and mirror images,
patches at every patch offset; audio vectors at every log-mel frame offset (not only at step
boundaries).

Memory is bounded by design, whatever the length of the inputs: media is streamed (one decoded
frame, one block of log-mel frames at a time) into one reservoir per (modality, scale) that keeps a
uniform sample of at most :func:`vector_cap` vectors (docs/tokenizers.md states the figures).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from livetok.config.tokenizer import TokenizerConfig
from livetok.errors import MediaError
from livetok.media.decode import decode, open_media
from livetok.media.frames import to_model_image
from livetok.tokenizers.audio_frontend import StreamingLogMel, StreamingResampler
from livetok.tokenizers.codebooks import CodebookSet, ScaleArrays, audio_frontend, make_set, video_frontend
from livetok.tokenizers.kmeans import fit_rvq, pca, project, refine_rvq
from livetok.tokenizers.video import VideoTokenizer, deblock, patchify, resolve_device, unpatchify

SCALES = ("fine", "coarse")
MEDIA_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".mkv", ".mov",
                  ".webm", ".avi", ".ts", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}


@dataclass(frozen=True)
class FitOptions:
    iters: int = 20  # Lloyd iterations per level
    seed: int = 0
    crops_per_frame: int = 24  # augmented square crops per still image / sampled video frame
    video_frames_per_file: int = 60  # frames sampled from each video file
    max_vectors: int = 200_000  # training vectors kept per (modality, scale), sampled uniformly beyond this
    max_values: int = 100_000_000  # ... and at most this many values (vectors x their length) per scale
    refine_rounds: int = 4  # joint refinement rounds of each scale's RVQ codebooks (kmeans.refine_rvq)
    deblock_pictures: int = 64  # frames (as the tokenizer sees them) kept to fit the deblocking; 0: none


def vector_cap(opts: FitOptions, size: int) -> int:
    """Training vectors kept for a scale whose vectors have ``size`` values: with the defaults,
    audio fine 200 000 (160 values), audio coarse 156 250 (640), video fine 130 208 (768), video
    coarse 32 552 (3072). This, not the length of the input, bounds fitting's memory."""
    return max(1, min(opts.max_vectors, opts.max_values // size))


class Reservoir:
    """A uniform random sample of at most ``cap`` rows of a stream of row blocks (Algorithm R,
    vectorised), given back in the order of each row's ``key`` (the order the rows would have had
    all together, so that a stream under the cap gives exactly the rows it was given)."""

    def __init__(self, cap: int, rng: np.random.Generator) -> None:
        self.cap = cap
        self.rng = rng
        self.seen = 0
        self._blocks: list[tuple[np.ndarray, np.ndarray]] = []  # under the cap: (keys, rows) as given
        self._rows: np.ndarray | None = None  # at the cap: [cap, D]
        self._keys: np.ndarray | None = None

    def add(self, rows: np.ndarray, keys: np.ndarray) -> None:
        n = rows.shape[0]
        if n == 0:
            return
        if self._rows is None:
            if self.seen + n <= self.cap:
                self._blocks.append((keys, rows))
                self.seen += n
                return
            take = self.cap - self.seen
            self._blocks.append((keys[:take], rows[:take]))
            self.seen += take
            self._keys = np.concatenate([k for k, _ in self._blocks])
            self._rows = np.concatenate([r for _, r in self._blocks])
            self._blocks = []
            rows, keys, n = rows[take:], keys[take:], n - take
        assert self._rows is not None and self._keys is not None
        # Row i of the stream replaces a random kept row with probability cap / (i + 1).
        index = np.arange(self.seen, self.seen + n)
        slot = self.rng.integers(0, index + 1)
        hit = slot < self.cap
        self._rows[slot[hit]] = rows[hit]  # repeated slots: the later row wins, as one by one
        self._keys[slot[hit]] = keys[hit]
        self.seen += n

    @property
    def kept(self) -> int:
        return self.seen if self._rows is None else self.cap

    def result(self) -> np.ndarray:
        if self._rows is None:
            if not self._blocks:
                return np.zeros((0, 0))
            keys = np.concatenate([k for k, _ in self._blocks])
            rows = np.concatenate([r for _, r in self._blocks])
        else:
            assert self._keys is not None
            keys, rows = self._keys, self._rows
        order = np.argsort(keys, kind="stable")
        return rows if np.array_equal(order, np.arange(order.size)) else rows[order]


@dataclass
class TrainingData:
    """Training vectors per ``"modality.scale"`` (bounded reservoirs), and what went into them."""

    vectors: dict[str, Reservoir]
    audio_seconds: float = 0.0  # audio read, at the model rate
    audio_files: int = 0
    video_frames: int = 0  # frames (images, sampled video frames) turned into vectors
    too_small: list[str] = field(default_factory=list)  # "file: WxH" of frames too small to use
    pictures: Reservoir | None = None  # flattened [S * S * 3] uint8 frames for fit_deblocking


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


AUDIO_BLOCK_FRAMES = 4096  # log-mel frames turned into training vectors at a time


def count_video_frames(path: Path) -> int:
    """Video frames in a file, counted from its packets without decoding (one frame per packet)."""
    with open_media(path) as container:
        if not container.streams.video:
            return 0
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


def gather(files: list[Path], cfg: TokenizerConfig, opts: FitOptions) -> TrainingData:
    """Training vectors from every file, streamed into one bounded reservoir per scale: memory does
    not grow with the length of the inputs (vector_cap). Video: ``video_frames_per_file`` evenly
    spaced frames of each file (counted first, then decoded one at a time), each with its crops;
    audio: every log-mel frame offset, in blocks."""
    rng = np.random.default_rng(opts.seed)  # the crops
    pick_rng = np.random.default_rng([opts.seed, 1])  # the reservoirs, beyond their caps
    sizes = {f"audio.{s}": cfg.audio.n_mels * getattr(cfg.audio, f"{s}_frames") for s in SCALES}
    sizes |= {f"video.{s}": 3 * getattr(cfg.video, f"{s}_patch") ** 2 for s in SCALES}
    data = TrainingData({k: Reservoir(vector_cap(opts, n), pick_rng) for k, n in sizes.items()})
    # its own generator, so that keeping pictures does not change which vectors are kept
    data.pictures = Reservoir(opts.deblock_pictures, np.random.default_rng([opts.seed, 2]))
    counters = dict.fromkeys(sizes, 0)  # rows offered per reservoir (and per lattice), for their keys
    min_side = max(cfg.video.fine_patch, cfg.video.coarse_patch)
    for f in tqdm(files, desc="reading media", unit="file", leave=False):
        res = StreamingResampler(cfg.audio.sample_rate)
        logmel = StreamingLogMel(cfg.audio)
        mel = _MelWindows(data, cfg, counters)
        n_video = count_video_frames(f)
        wanted: set[int] = set(np.unique(
            np.linspace(0, n_video - 1, min(n_video, opts.video_frames_per_file)).astype(int)).tolist()
        ) if n_video else set()
        i_video = 0
        small = ""
        had_audio = False
        for mf in decode(f):
            if mf.kind == "audio":
                had_audio = True
                samples = res.push(mf.audio)
                data.audio_seconds += samples.size / cfg.audio.sample_rate
                mel.push(logmel.push(samples))
                continue
            if i_video in wanted:
                rgb = mf.video.to_ndarray(format="rgb24")
                h, w = rgb.shape[:2]
                if min(h, w) < min_side:
                    small = f"{f.name}: {w}x{h} px"
                else:
                    data.video_frames += 1
                    views = _augment(rgb, cfg.video.size, opts.crops_per_frame, rng)
                    if opts.deblock_pictures:
                        data.pictures.add(views[0].reshape(1, -1), np.array([data.video_frames]))
                    _add_images(data, views, cfg, counters)
            i_video += 1
        if small:
            data.too_small.append(small)
        if had_audio:
            tail = res.flush()
            data.audio_seconds += tail.size / cfg.audio.sample_rate
            mel.push(logmel.push(tail))
            mel.close()
            data.audio_files += 1
    return data


class _MelWindows:
    """One file's log-mel frames -> training vectors at every frame offset, in blocks (the last
    frames of a block start the next one's windows)."""

    def __init__(self, data: TrainingData, cfg: TokenizerConfig, counters: dict[str, int]) -> None:
        self.data, self.cfg, self.counters = data, cfg, counters
        self.pending: list[np.ndarray] = []
        self.rows = 0
        self.carry = np.zeros((0, cfg.audio.n_mels))

    def push(self, frames: np.ndarray) -> None:
        if frames.size:
            self.pending.append(frames)
            self.rows += frames.shape[0]
        if self.rows >= AUDIO_BLOCK_FRAMES:
            self._flush()

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        m = np.concatenate([self.carry, *self.pending])
        self.pending, self.rows = [], 0
        longest = max(self.cfg.audio.fine_frames, self.cfg.audio.coarse_frames)
        for scale in SCALES:
            frames = getattr(self.cfg.audio, f"{scale}_frames")
            # windows starting in this block that were not complete in the last one
            first = max(0, self.carry.shape[0] - frames + 1)
            if m.shape[0] - first >= frames:
                windows = np.lib.stride_tricks.sliding_window_view(m[first:], (frames, m.shape[1]))[:, 0]
                rows = windows.reshape(-1, frames * m.shape[1])
                key = f"audio.{scale}"
                keys = np.arange(self.counters[key], self.counters[key] + rows.shape[0])
                self.counters[key] += rows.shape[0]
                self.data.vectors[key].add(rows, keys)
        self.carry = m[max(0, m.shape[0] - longest + 1) :].copy()


LATTICE_KEY = 1 << 48  # keys of the half-patch lattice's vectors come after every key of the first


def _add_images(data: TrainingData, images: list[np.ndarray], cfg: TokenizerConfig, counters: dict[str, int]) -> None:
    """Patch vectors of one frame's images, on two lattices (offset 0 and half a patch), keyed so
    that the result lists all first-lattice vectors, then all second-lattice ones."""
    batch = torch.from_numpy(np.stack(images))
    for scale in SCALES:
        patch = getattr(cfg.video, f"{scale}_patch")
        key = f"video.{scale}"
        for lattice, off in enumerate((0, patch // 2)):
            s = (batch.shape[1] - off) // patch * patch
            rows = patchify(batch[:, off : off + s, off : off + s].contiguous(), patch).numpy()
            counter = f"{key}.{lattice}"
            start = counters.get(counter, 0)
            counters[counter] = start + rows.shape[0]
            data.vectors[key].add(rows, lattice * LATTICE_KEY + np.arange(start, start + rows.shape[0]))


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


def needed(modality: str, cfg: TokenizerConfig, opts: FitOptions, data: TrainingData) -> str:
    """How much media a modality needs for the codebooks of both its scales, in words."""
    want = {s: max(getattr(getattr(cfg, modality), s).codebook_size, getattr(getattr(cfg, modality), s).dim + 1)
            for s in SCALES}
    if modality == "audio":
        a = cfg.audio
        # one vector per log-mel frame offset, one frame per hop once the first window is full
        seconds = max((want[s] + getattr(a, f"{s}_frames") - 2) * a.hop_length + a.win_length
                      for s in SCALES) / a.sample_rate
        files = f"{data.audio_files} file" + ("s" if data.audio_files != 1 else "")
        return f"at least {seconds:.1f} s of audio (given: {data.audio_seconds:.2f} s in {files})"
    v = cfg.video
    side = max(v.fine_patch, v.coarse_patch)
    frames = 0
    for s in SCALES:
        patch = getattr(v, f"{s}_patch")
        per_image = (v.size // patch) ** 2 + ((v.size - patch // 2) // patch) ** 2  # both lattices
        frames = max(frames, -(-want[s] // (per_image * (1 + opts.crops_per_frame))))
    small = ""
    if data.too_small:
        small = f"; too small to use, a short side under {side} px: " + ", ".join(data.too_small[:3])
        small += f" and {len(data.too_small) - 3} more" if len(data.too_small) > 3 else ""
    what = "image or video frame" if frames == 1 else "images or video frames"
    return f"at least {frames} {what} of {side} px or more (given: {data.video_frames}{small})"


def fit(files: list[Path], cfg: TokenizerConfig, opts: FitOptions, base: CodebookSet | None) -> CodebookSet:
    """Fit every scale that the inputs have data for; take the others from ``base``. The fitted
    video scales get decoder metadata: the deblocking fitted on up to ``opts.deblock_pictures``
    of the frames, as the tokenizer sees them (:func:`fit_deblocking`).

    Too little data for a scale is one MediaError line saying how much is needed."""
    data = gather(files, cfg, opts)
    device = resolve_device(cfg.device)
    scales: dict[str, ScaleArrays] = {}
    present = {"audio": data.audio_files > 0, "video": data.video_frames > 0 or bool(data.too_small)}
    if not any(present.values()):
        raise MediaError("no audio or video found in the inputs")
    jobs = [(m, s) for m in ("audio", "video") if present[m] for s in SCALES]
    for modality, scale in jobs:
        rvq = getattr(getattr(cfg, modality), scale)
        kept = data.vectors[f"{modality}.{scale}"].kept
        if kept < max(rvq.codebook_size, rvq.dim + 1):
            raise MediaError(
                f"{modality}.{scale}: {kept} training vectors for {rvq.codebook_size} codes of {rvq.dim} values; "
                f"give more media: {needed(modality, cfg, opts, data)}"
            )
    if data.too_small:
        tqdm.write(f"livetok: warning: skipped frames too small to fit from (a short side under "
                   f"{max(cfg.video.fine_patch, cfg.video.coarse_patch)} px): {', '.join(data.too_small)}",
                   file=sys.stderr)
    total = sum(getattr(getattr(cfg, m), s).levels * opts.iters + opts.refine_rounds for m, s in jobs)
    with tqdm(total=total, desc="fitting codebooks", unit="iter") as bar:
        for modality, scale in jobs:
            key = f"{modality}.{scale}"
            x = data.vectors.pop(key).result()  # the reservoir's memory goes once its scale is fitted
            rvq = getattr(getattr(cfg, modality), scale)
            bar.set_postfix_str(f"{key} ({x.shape[0]} vectors)")
            mean, proj = pca(x, rvq.dim)
            z = project(x, mean, proj)
            del x
            books = fit_rvq(z, rvq.levels, rvq.codebook_size, opts.iters, opts.seed, device, progress=bar.update)
            books = refine_rvq(z, books, opts.refine_rounds, device, progress=bar.update)
            scales[key] = ScaleArrays(mean, proj, books)
    return _complete(scales, data, cfg, base)


def _complete(scales: dict[str, ScaleArrays], data: TrainingData, cfg: TokenizerConfig,
              base: CodebookSet | None) -> CodebookSet:
    """The fitted scales, the others (and their front end and decoder metadata) from ``base``, and
    the deblocking of the fitted video scales on the pictures ``data`` kept."""
    fitted = set(scales)
    frontend = {"audio": audio_frontend(cfg.audio), "video": video_frontend(cfg.video)}
    for key in [f"{m}.{s}" for m in ("audio", "video") for s in SCALES]:
        if key not in scales:
            if base is None:
                raise MediaError(f"the inputs have no {key.split('.')[0]} to fit {key} from")
            scales[key] = base.scales[key]
            modality = key.split(".")[0]
            frontend[modality] = base.frontend[modality]
    decoder = {k: v for k, v in (base.decoder if base is not None else {}).items() if k not in fitted}
    pictures = data.pictures.result() if data.pictures is not None else np.zeros((0, 0), np.uint8)
    if fitted & {"video.fine", "video.coarse"} and pictures.size:
        size = cfg.video.size
        deblocking = fit_deblocking(make_set(frontend, scales), cfg, pictures.reshape(-1, size, size, 3))
        decoder |= {k: v for k, v in deblocking.items() if k in fitted}
    return make_set(frontend, scales, decoder)

DEBLOCK_STRENGTHS = (0.25, 0.5, 0.7, 0.85, 1.0)


def fit_deblocking(cbs: CodebookSet, cfg: TokenizerConfig, images: np.ndarray) -> dict[str, dict[str, float]]:
    """Decoder metadata for ``cbs``: per video scale, the deblocking width (0 to half the patch)
    and strength (:data:`DEBLOCK_STRENGTHS`) with the lowest squared error on ``images [N, S, S, 3]``
    uint8 (training pictures as the tokenizer sees them), reconstructed at full depth."""
    tok = VideoTokenizer(cfg.video, cbs, "cpu")
    codes = tok.encode(images).codes
    out: dict[str, dict[str, float]] = {}
    orig = images.astype(np.float64)
    for scale in SCALES:
        patch = tok.patch[scale]
        rec = np.stack([unpatchify(tok.quantizers[scale].decode(c), patch) for c in codes[scale]])
        best = (float(np.sum((orig - rec) ** 2)), 0, 0.0)
        for width in range(1, patch // 2 + 1):
            for strength in DEBLOCK_STRENGTHS:
                err = float(np.sum((orig - deblock(rec, patch, width, strength)) ** 2))
                if err < best[0]:
                    best = (err, width, strength)
        out[f"video.{scale}"] = {"deblock_width": best[1], "deblock_strength": best[2]}
    return out
