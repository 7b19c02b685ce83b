"""Fitting the plug-in kinds' codebooks from media: what ``livetok fit --tokenizer NAME`` calls.

* a user's model that gives embeddings (audio or video): the model runs over the media through its
  own encoder (the same windows, chunks and state as live), every frame's (or cell's) embedding goes
  into a bounded uniform sample (``fit.Reservoir``), and an RVQ or single-level k-means is fitted on
  them (:func:`~livetok.tokenizers.quantizers.fit_quantizer`). The file records the model's SHA-256
  and embedding size, so codebooks of another model are refused;
* ``spectrogram-patches``: patch vectors at every log-mel frame offset (eight times the patches a
  live stream makes, for the same audio), then PCA and RVQ. The file records the front end.

Memory is bounded by the reservoir (``FitOptions.max_vectors`` / ``max_values``), whatever the inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from livetok.errors import MediaError
from livetok.media.decode import decode
from livetok.tokenizers.audio_frontend import StreamingLogMel, StreamingResampler
from livetok.tokenizers.fit import FitOptions, Reservoir, count_video_frames, vector_cap
from livetok.tokenizers.models.audio import AudioModelEncoder
from livetok.tokenizers.models.video import VideoModelEncoder, model_image
from livetok.tokenizers.plugin_config import QuantizerConfig
from livetok.tokenizers.quantizer_file import QuantizerSet, make_quantizer_set
from livetok.tokenizers.quantizers import fit_quantizer
from livetok.tokenizers.spectro_patches import KIND, SILENCE, STREAM, SpectroPatchTokenizer

BLOCK = 4096  # log-mel frames made into training patches at a time


def audio_blocks(path: Path, rate: int) -> Iterator[np.ndarray]:
    """A file's first audio stream as mono float32 blocks at ``rate`` Hz."""
    res = StreamingResampler(rate)
    for mf in decode(path, video=False):
        yield res.push(mf.audio)
    yield res.flush()


class _Sample:
    """A reservoir that numbers the rows it is given."""

    def __init__(self, cap: int, seed: int) -> None:
        self.res = Reservoir(cap, np.random.default_rng([seed, 1]))
        self.n = 0

    def add(self, rows: np.ndarray) -> None:
        self.res.add(rows, np.arange(self.n, self.n + rows.shape[0]))
        self.n += rows.shape[0]


def model_embeddings(files: list[Path], enc: AudioModelEncoder | VideoModelEncoder, opts: FitOptions) -> np.ndarray:
    """``[N, D]`` embeddings of the media through the model: audio, every frame; video,
    ``opts.video_frames_per_file`` evenly spaced frames of each file (centre-cropped to the model size),
    every cell. A uniform sample of at most ``vector_cap`` rows."""
    sample = _Sample(vector_cap(opts, enc.io.dim), opts.seed)
    for f in files:
        if isinstance(enc, AudioModelEncoder):
            stream = enc.stream(str(f))
            for block in audio_blocks(f, enc.io.sample_rate):
                jobs = stream.take(block)
                for job, out in zip(jobs, enc.run(jobs), strict=True):
                    stream.settle(job, out)
                    sample.add(out.frames)
        else:
            _video_embeddings(f, enc, opts, sample)
    if sample.n == 0:
        what = "audio" if isinstance(enc, AudioModelEncoder) else "video"
        raise MediaError(f"tokenizer {enc.name!r}: no {what} long enough for one model call in the inputs")
    return sample.res.result()


def _video_embeddings(f: Path, enc: VideoModelEncoder, opts: FitOptions, sample: _Sample) -> None:
    n = count_video_frames(f)
    picks = np.linspace(0, n - 1, min(n, opts.video_frames_per_file)).astype(int) if n else np.zeros(0, int)
    wanted = set(np.unique(picks).tolist())
    stream = enc.stream(str(f))
    for i, mf in enumerate(decode(f, audio=False)):
        if i in wanted:
            jobs = stream.take(model_image(mf.video, enc.io.height, enc.io.width, "crop"))
            for out in enc.run(jobs):
                sample.add(out.cells)


def fit_model_codebooks(files: list[Path], enc: AudioModelEncoder | VideoModelEncoder, cfg: QuantizerConfig,
                        opts: FitOptions, device: str = "cpu") -> QuantizerSet:
    """Codebooks for a model that gives embeddings, recording what they were fitted for."""
    x = model_embeddings(files, enc, opts)
    arrays = fit_quantizer(x, cfg, opts.seed, device, what=f"embeddings of tokenizer {enc.name!r}")
    return make_quantizer_set(enc.runner.fmt, enc.fitted_for(), {enc.stream_name: arrays})


def patch_vectors(files: list[Path], tok: SpectroPatchTokenizer, opts: FitOptions) -> np.ndarray:
    """``[N, P]`` patch vectors at every log-mel frame offset of every file (silence before each start,
    as live), a uniform sample of at most ``vector_cap`` rows."""
    c = tok.cfg
    sample = _Sample(vector_cap(opts, c.patch_size), opts.seed)
    for f in files:
        logmel = StreamingLogMel(tok.audio)
        carry = np.full((c.patch_frames - c.stride_frames, c.logmel.n_mels), SILENCE)
        pending: list[np.ndarray] = []
        for block in audio_blocks(f, c.sample_rate):
            pending.append(logmel.push(block))
            if sum(p.shape[0] for p in pending) >= BLOCK:
                carry = _add_patches(np.concatenate([carry, *pending]), tok, sample)
                pending = []
        _add_patches(np.concatenate([carry, *pending]), tok, sample)
    if sample.n == 0:
        raise MediaError(f"tokenizer {tok.name!r}: no audio in the inputs")
    return sample.res.result()


def _add_patches(mel: np.ndarray, tok: SpectroPatchTokenizer, sample: _Sample) -> np.ndarray:
    """Patches ending at every frame of ``mel`` after its first ``patch_frames - 1``, in the layout of
    :func:`patch_rows`; returns the frames the next block's patches still need."""
    c = tok.cfg
    pf, bs, pm = c.patch_frames, c.band_stride, c.patch_mels
    if mel.shape[0] >= pf:
        t = np.lib.stride_tricks.sliding_window_view(mel, (pf, mel.shape[1]))[:, 0].transpose(0, 2, 1)
        rows = np.stack([t[:, r * bs : r * bs + pm] for r in range(c.rows)], axis=1)
        sample.add(rows.reshape(-1, c.patch_size))
    return mel[max(0, mel.shape[0] - pf + 1) :]


def fit_spectro_patches(files: list[Path], tok: SpectroPatchTokenizer, opts: FitOptions,
                        device: str = "cpu") -> QuantizerSet:
    x = patch_vectors(files, tok, opts)
    arrays = fit_quantizer(x, tok.cfg.quantizer, opts.seed, device, what="spectrogram patches")
    return make_quantizer_set(KIND, tok.fitted_for(), {STREAM: arrays})


def fit_tokenizer(files: list[Path], kind: SpectroPatchTokenizer | AudioModelEncoder | VideoModelEncoder,
                  cfg: QuantizerConfig | None, opts: FitOptions, device: str = "cpu") -> QuantizerSet:
    """``livetok fit --tokenizer NAME``: the codebooks of one plug-in tokenizer from media files."""
    if isinstance(kind, SpectroPatchTokenizer):
        return fit_spectro_patches(files, kind, opts, device)
    if kind.io.output == "codes":
        raise MediaError(f"tokenizer {kind.name!r}: the model gives codes itself; there is nothing to fit")
    assert cfg is not None
    return fit_model_codebooks(files, kind, cfg, opts, device)
