"""Video model encoders: frames from several sources in one model call, each frame's grid exactly what
it gets alone; normalisation; embeddings (quantized by livetok) or codes; fitting from a clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from plugin_models import video_io, video_model

from livetok.errors import CodebookError
from livetok.tokenizers.fit import FitOptions
from livetok.tokenizers.models.contract import ModelConfig, VideoModelIO
from livetok.tokenizers.models.video import VideoModelEncoder, model_image
from livetok.tokenizers.plugin_config import QuantizerConfig
from livetok.tokenizers.plugin_fit import fit_tokenizer
from livetok.tokenizers.protocol import process
from livetok.tokenizers.quantizer_file import load_quantizers, save_quantizers

FORMATS = ["torchscript", "onnx"]
RNG = np.random.default_rng(2)
FRAMES = [RNG.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(11)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plugin-video")


def load(model_dir: Path, fmt: str, output: str = "embeddings", batch: int = 8) -> VideoModelEncoder:
    path = video_model(model_dir, fmt, output)
    return VideoModelEncoder.load("cam", ModelConfig(path=path, batch=batch), fmt)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", FORMATS)
def test_frames_of_many_sources_in_one_call_equal_each_alone(model_dir: Path, fmt: str) -> None:
    enc = load(model_dir, fmt)
    streams = [enc.stream(f"cam{i}") for i in range(3)]
    jobs = [j for i, f in enumerate(FRAMES[:8]) for j in streams[i % 3].take(f)]
    before = enc.caller.calls
    together = enc.run(jobs)
    assert enc.caller.calls - before == 1  # eight frames, three sources: one model call
    for job, out in zip(jobs, together, strict=True):
        alone = enc.run([enc.stream("x").take(FRAMES[jobs.index(job)])[0]])[0]
        assert out.cells.shape == (24, 10) and out.cells.dtype == np.float64
        assert out.cells.tobytes() == alone.cells.tobytes()
    more = enc.run([j for f in FRAMES for j in streams[0].take(f)])  # 11 frames: 8 + 3 padded
    assert len(more) == 11 and enc.caller.calls - before == 1 + 8 + 2


def test_normalisation_is_what_the_contract_says(model_dir: Path) -> None:
    enc = load(model_dir, "onnx")
    x = enc.preprocess(FRAMES[0])
    want = (FRAMES[0].transpose(2, 0, 1) / 255.0 - np.array(enc.io.mean)[:, None, None]) / np.array(enc.io.std)[
        :, None, None]
    assert x.shape == (3, 32, 48) and x.dtype == np.float32
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-5)
    unit = VideoModelEncoder("u", enc.runner, VideoModelIO.model_validate(dict(video_io(), normalize="unit")), 8)
    np.testing.assert_allclose(unit.preprocess(FRAMES[0]), FRAMES[0].transpose(2, 0, 1) / 255.0, rtol=1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_model_that_gives_codes(model_dir: Path, fmt: str) -> None:
    enc = load(model_dir, fmt, "codes")
    spec = enc.specs[0]
    assert (spec.modality, spec.step_ns, spec.grid, spec.levels, spec.codebook_size) == ("video", None, (4, 6), 1, 10)
    s = enc.stream("cam")
    steps = process(enc, s.take(FRAMES[0]) + s.take(FRAMES[1]))
    assert [x.step for x in steps] == [0, 1]
    assert steps[0].codes.shape == (24, 1) and steps[0].codes.dtype == np.uint16 and steps[0].codes.max() < 10
    with pytest.raises(CodebookError, match="gives codes itself"):
        enc.use_codebooks(None, QuantizerConfig())  # type: ignore[arg-type]


def test_model_image_sizes() -> None:
    wide = RNG.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    for aspect in ("crop", "pad", "stretch"):
        assert model_image(wide, 32, 48, aspect).shape == (32, 48, 3)
    padded = model_image(np.zeros((100, 20, 3), np.uint8), 32, 48, "pad")
    assert padded[:, 0].max() == 128 and padded[16, 24].max() == 0


def test_wrong_image_size_is_refused(model_dir: Path) -> None:
    enc = load(model_dir, "onnx")
    with pytest.raises(ValueError, match=r"expected a \[32, 48, 3\] uint8 image"):
        enc.stream("cam").take(np.zeros((48, 32, 3), np.uint8))


def test_fit_from_a_clip_then_tokenize(model_dir: Path, av_clip: Path, tmp_path: Path) -> None:
    """``fit --tokenizer``: the model's cell embeddings over a clip's frames -> k-means units; the file
    records the model, and the encoder then emits codes with them."""
    enc = load(model_dir, "onnx")
    with pytest.raises(CodebookError, match="needs fitted codebooks"):
        _ = enc.specs
    cfg = QuantizerConfig(kind="kmeans", codebook_size=16, dim=None, iters=5)
    qs = fit_tokenizer([av_clip], enc, cfg, FitOptions(video_frames_per_file=10))
    assert qs.fitted_for["model_sha256"] == enc.runner.sha256 and qs.fitted_for["embedding_dim"] == 10
    save_quantizers(qs, tmp_path / "cam.safetensors")
    enc.use_codebooks(load_quantizers(tmp_path / "cam.safetensors"), cfg)
    assert enc.specs[0].levels == 1 and enc.specs[0].codebook_size == 16
    s = enc.stream("cam")
    steps = process(enc, s.take(FRAMES[0]))
    assert steps[0].codes.shape == (24, 1) and steps[0].codes.max() < 16
