"""Video encoders over a user's model: a batch of frames from any sources -> per frame a grid of
embeddings (quantized by livetok) or of codes.

Three phases as for audio: ``stream.take(image) -> [job]`` converts one ``[H, W, 3]`` uint8 RGB
image (already at the model's size: :func:`model_image`) to the model's normalised ``[3, H, W]``
input; ``encoder.run(jobs)`` stacks any number of frames into model calls of the calibrated batch
sizes (``batching.py``: a frame's result never depends on the other frames of its call);
``stream.emit(job, output)`` quantizes the cells row by row (``encode_rows``) and numbers frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from livetok.errors import CodebookError, MediaError
from livetok.tokenizers.models.batching import BatchCaller, Calibration, Feed, OutputRule, Row
from livetok.tokenizers.models.contract import ModelConfig, VideoModelIO
from livetok.tokenizers.models.load import Feeds, check_static, open_model, probe, static_batch
from livetok.tokenizers.models.runner import Format, ModelRunner
from livetok.tokenizers.plugin_config import QuantizerConfig
from livetok.tokenizers.protocol import StepCodes
from livetok.tokenizers.quantizer_file import QuantizerSet
from livetok.tokenizers.spec import StreamSpec

if TYPE_CHECKING:
    from livetok.tokenizers.rvq import ScaleQuantizer

PAD_LEVEL = 128


def model_image(frame: Any, height: int, width: int, aspect: str = "crop") -> np.ndarray:
    """A PyAV video frame or ``[h, w, 3]`` uint8 RGB array -> ``[height, width, 3]`` uint8 RGB: ``crop``
    scales to cover and keeps the centre, ``pad`` scales to fit and letterboxes in grey, ``stretch``
    scales each axis (swscale, area interpolation)."""
    import av

    if isinstance(frame, np.ndarray):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, dtype=np.uint8), format="rgb24")
    w, h = frame.width, frame.height
    if w <= 0 or h <= 0:
        raise MediaError(f"video frame has no pixels ({w}x{h})")

    def rgb(sw: int, sh: int) -> np.ndarray:
        return frame.reformat(width=sw, height=sh, format="rgb24", interpolation="AREA").to_ndarray()

    try:
        if aspect == "stretch":
            return rgb(width, height)
        if aspect == "crop":
            scale = max(width / w, height / h)
            sw, sh = max(width, round(w * scale)), max(height, round(h * scale))
            y, x = (sh - height) // 2, (sw - width) // 2
            return np.ascontiguousarray(rgb(sw, sh)[y : y + height, x : x + width])
        scale = min(width / w, height / h)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        out = np.full((height, width, 3), PAD_LEVEL, np.uint8)
        y, x = (height - sh) // 2, (width - sw) // 2
        out[y : y + sh, x : x + sw] = rgb(sw, sh)
        return out
    except (av.FFmpegError, ValueError) as err:
        raise MediaError(f"cannot convert a {w}x{h} {frame.format.name} frame: {err}") from err


@dataclass
class VideoOutput:
    """One frame's result: ``cells [rows * cols, D]`` as the model gave them (float64 embeddings or
    integer codes), and their ``codes [cells, L] uint16`` and ``vectors [cells, d] float32`` (None: not
    asked for, or no codebooks yet, as when fitting)."""

    cells: np.ndarray
    codes: np.ndarray | None = None
    vectors: np.ndarray | None = None


@dataclass(eq=False)
class VideoJob:
    """Frame ``frame`` of ``stream`` as the model takes it: ``pixels [3, H, W]``."""

    stream: VideoModelStream
    frame: int
    pixels: np.ndarray


class VideoModelEncoder:
    """A user's video model as a tokenizer kind: ``run(jobs) -> [cells, D] per frame``."""

    def __init__(self, name: str, runner: ModelRunner, io: VideoModelIO, batch: int, *,
                 stream_name: str = "tokens", vectors: bool = False) -> None:
        self.name, self.runner, self.io = name, runner, io
        self.stream_name, self.vectors = stream_name, vectors
        self.quantizer: ScaleQuantizer | None = None
        gh, gw = io.grid
        f, d = ("dim", io.dim), (("rows", gh), ("cols", gw))
        dims = {"BDHW": (f, *d), "BHWD": (*d, f), "BND": (("cells", gh * gw), f), "BHW": d}[io.output_layout]
        rule = OutputRule(0, dims, "float" if io.output == "embeddings" else "int", io.codebook_size)
        consts: dict[str, Feed] = {c.name: np.asarray(c.value, dtype=c.dtype) for c in io.constants}
        self.caller = BatchCaller(runner, {io.input_name: 0}, {io.output_name: rule}, consts, batch)
        self.calibration: Calibration | None = None
        scale = np.float32(1 / 255)
        if io.normalize == "unit":
            self._mul, self._add = np.full((3, 1, 1), scale, np.float32), np.zeros((3, 1, 1), np.float32)
        else:  # (x / 255 - mean) / std as one multiply and one add per value
            std, mean = np.asarray(io.std, np.float64), np.asarray(io.mean, np.float64)
            self._mul = (1 / (255 * std)).astype(np.float32).reshape(3, 1, 1)
            self._add = (-mean / std).astype(np.float32).reshape(3, 1, 1)

    @classmethod
    def load(cls, name: str, cfg: ModelConfig, fmt: Format, *, stream_name: str = "tokens",
             vectors: bool = False) -> VideoModelEncoder:
        runner, io = open_model(cfg, fmt, name, "video")
        assert isinstance(io, VideoModelIO)
        enc = cls(name, runner, io, cfg.batch, stream_name=stream_name, vectors=vectors)
        enc.check()
        return enc

    def check(self) -> Calibration:
        io = self.io
        shapes: dict[str, tuple[int | None, ...]] = {io.input_name: (None, 3, io.height, io.width)}
        dtypes: dict[str, str] = {io.input_name: io.input_dtype}
        keys = {io.input_name: "model.io.input_name", io.output_name: "model.io.output_name"}
        for i, c in enumerate(io.constants):
            shapes[c.name], dtypes[c.name], keys[c.name] = (), c.dtype, f"model.io.constants[{i}]"
        check_static(self.runner, Feeds(shapes, dtypes, keys, [io.output_name]))
        fixed = static_batch(self.runner, io.input_name, 0)
        if fixed is not None:
            self.caller.batch = fixed
        self.calibration = probe(self.caller, self._probe_row)
        return self.calibration

    def _probe_row(self, rng: np.random.Generator) -> Row:
        image = rng.integers(0, 256, (self.io.height, self.io.width, 3), dtype=np.uint8)
        return {self.io.input_name: self.preprocess(image)}

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """``[H, W, 3]`` uint8 RGB -> ``[3, H, W]`` normalised, elementwise (so the same per frame)."""
        x = image.transpose(2, 0, 1).astype(np.float32) * self._mul + self._add
        return x.astype(self.io.input_dtype, copy=False)

    def fitted_for(self) -> dict[str, Any]:
        io = self.io
        return {"model_sha256": self.runner.sha256, "modality": "video", "embedding_dim": io.dim,
                "grid": list(io.grid), "height": io.height, "width": io.width}

    def use_codebooks(self, qs: QuantizerSet, cfg: QuantizerConfig) -> None:
        """Quantize with fitted codebooks, refused in one line when fitted for something else."""
        from livetok.tokenizers.quantizers import fitted_quantizer  # torch: only with codebooks

        self.quantizer = fitted_quantizer(qs, cfg, tokenizer=self.name, stream=self.stream_name, fmt=self.runner.fmt,
                                          fitted_for=self.fitted_for(), gives_codes=self.io.output == "codes")

    @property
    def specs(self) -> list[StreamSpec]:
        io = self.io
        if io.output == "codes":
            assert io.codebook_size is not None
            return [StreamSpec("video", self.stream_name, None, io.grid, io.dim, io.codebook_size,
                               io.dim if self.vectors else None)]
        q = self.quantizer
        if q is None:
            raise CodebookError(f"tokenizer {self.name!r}: the model gives embeddings: it needs fitted codebooks "
                                f"(livetok fit --tokenizer {self.name})")
        return [StreamSpec("video", self.stream_name, None, io.grid, q.levels, q.codebook_size,
                           q.dim if self.vectors else None)]

    def stream(self, source: str) -> VideoModelStream:
        return VideoModelStream(self, source)

    def run(self, jobs: list[VideoJob]) -> list[VideoOutput]:
        """Pure: frames from any streams -> per frame its cells, and their codes: one model call per
        batch, then one quantizer kernel call (row by row: a cell's codes never depend on the others)."""
        if not jobs:
            return []
        outs = [VideoOutput(self._cells(r[self.io.output_name]))
                for r in self.caller([{self.io.input_name: j.pixels} for j in jobs])]
        if self.io.output == "codes":
            for o in outs:
                o.codes = o.cells.astype(np.uint16)
                o.vectors = o.cells.astype(np.float32) if self.vectors else None
        elif self.quantizer is not None:
            n = outs[0].cells.shape[0]
            enc = self.quantizer.encode_rows(np.concatenate([o.cells for o in outs]))
            for i, o in enumerate(outs):
                o.codes = enc.codes[i * n : (i + 1) * n]
                o.vectors = enc.z[i * n : (i + 1) * n].astype(np.float32) if self.vectors else None
        return outs

    def _cells(self, y: np.ndarray) -> np.ndarray:
        layout, d = self.io.output_layout, self.io.dim
        if layout == "BDHW":
            y = y.reshape(d, -1).T
        elif layout in ("BHWD", "BND"):
            y = y.reshape(-1, d)
        else:
            y = y.reshape(-1, 1)
        return y.astype(np.float64) if self.io.output == "embeddings" else y


class VideoModelStream:
    """One source's frames: numbering, gap flags, and quantizing its cells."""

    def __init__(self, enc: VideoModelEncoder, source: str) -> None:
        self.enc, self.source = enc, source
        self.next_frame = 0
        self.gap = False

    def reset(self) -> None:
        self.next_frame, self.gap = 0, True

    def mark_gap(self) -> None:
        self.gap = True

    def take(self, image: np.ndarray) -> list[VideoJob]:
        """One ``[H, W, 3]`` uint8 RGB image at the model's size -> its job."""
        io = self.enc.io
        if image.shape != (io.height, io.width, 3) or image.dtype != np.uint8:
            raise ValueError(f"expected a [{io.height}, {io.width}, 3] uint8 image, got {image.shape} {image.dtype}")
        job = VideoJob(self, self.next_frame, self.enc.preprocess(image))
        self.next_frame += 1
        return [job]

    def flush(self) -> list[VideoJob]:
        return []

    def abandon(self, job: VideoJob) -> None:
        self.gap = True

    def emit(self, job: VideoJob, out: VideoOutput) -> list[StepCodes]:
        if out.codes is None:
            raise CodebookError(f"tokenizer {self.enc.name!r}: the model gives embeddings: it needs fitted codebooks")
        gap, self.gap = self.gap, False
        return [StepCodes(self.enc.stream_name, job.frame, out.codes, out.vectors, gap)]
