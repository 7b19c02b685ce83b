"""Quantizers of the plug-in kinds (RVQ, single-level k-means), their files, and refusing codebooks
fitted for another model, kind or size in one line; fitting on a model's embeddings of real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from plugin_models import stateful_io, stateful_model, stateless_model
from safetensors.numpy import load_file, save_file

from livetok.errors import CodebookError, MediaError, OutputError
from livetok.tokenizers.codebooks import ScaleArrays, default_codebook_path
from livetok.tokenizers.fit import FitOptions
from livetok.tokenizers.models.audio import AudioModelEncoder
from livetok.tokenizers.models.contract import ModelConfig
from livetok.tokenizers.plugin_config import QuantizerConfig
from livetok.tokenizers.plugin_fit import fit_tokenizer, model_embeddings
from livetok.tokenizers.protocol import process
from livetok.tokenizers.quantizer_file import (
    check_fitted_for,
    load_quantizers,
    make_quantizer_set,
    save_quantizers,
)
from livetok.tokenizers.quantizers import build_quantizer, fit_quantizer

RNG = np.random.default_rng(4)
# three clusters in 6 dimensions
CENTRES = RNG.normal(0, 5, (3, 6))
X = np.concatenate([c + RNG.normal(0, 0.3, (400, 6)) for c in CENTRES])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plugin-quantizers")


@pytest.mark.slow
def test_kmeans_units_are_the_nearest_centroid() -> None:
    cfg = QuantizerConfig(kind="kmeans", codebook_size=3, dim=None, iters=10)
    arrays = fit_quantizer(X, cfg)
    assert arrays.codebooks.shape == (1, 3, 6) and np.allclose(arrays.proj, np.eye(6))
    q = build_quantizer(arrays, cfg, "test")
    codes = q.encode_rows(X).codes[:, 0]
    centroids = arrays.codebooks[0].astype(np.float64) + arrays.mean
    brute = np.argmin(((X[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(codes, brute)
    assert len(set(codes[:400])) == len(set(codes[400:800])) == 1 and len(set(codes)) == 3  # one unit per cluster


def test_kmeans_of_scalars_gives_codes_in_value_order() -> None:
    """A 1-D unit model (silero-vad's speech probability, examples/silero-vad): a larger code is a larger
    value, so a consumer compares codes without the codebook."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.beta(0.3, 3.0, 3000), rng.beta(3.0, 0.3, 2000)])[:, None].astype(np.float32)
    cfg = QuantizerConfig(kind="kmeans", codebook_size=8, dim=None, iters=10)
    arrays = fit_quantizer(x, cfg)
    assert np.all(np.diff(arrays.codebooks[0, :, 0]) > 0)
    q = build_quantizer(arrays, cfg, "test")
    grid = np.linspace(0, 1, 201)[:, None]
    codes = q.encode_rows(grid).codes[:, 0]
    assert np.all(np.diff(codes) >= 0) and codes[0] == 0 and codes[-1] == 7


def test_rvq_levels_refine() -> None:
    cfg = QuantizerConfig(kind="rvq", levels=3, codebook_size=8, dim=4, iters=8)
    q = build_quantizer(fit_quantizer(X, cfg), cfg, "test")
    codes = q.encode_rows(X).codes
    errs = [np.mean((q.decode(codes, d) - X) ** 2) for d in (1, 2, 3)]
    assert codes.shape == (1200, 3) and errs[0] > errs[1] > errs[2]


def test_config_rules() -> None:
    assert QuantizerConfig().depth == 4 and QuantizerConfig(kind="kmeans").depth == 1
    with pytest.raises(ValueError, match="kind: kmeans has one level"):
        QuantizerConfig(kind="kmeans", levels=2)
    with pytest.raises(MediaError, match="5 training vectors for 16 codes"):
        fit_quantizer(X[:5], QuantizerConfig(kind="kmeans", codebook_size=16, dim=None))


def test_file_round_trip_and_refusals(tmp_path: Path) -> None:
    cfg = QuantizerConfig(kind="kmeans", codebook_size=3, dim=None, iters=5)
    fitted_for = {"model_sha256": "a" * 64, "modality": "audio", "embedding_dim": 6}
    qs = make_quantizer_set("onnx", fitted_for, {"tokens": fit_quantizer(X, cfg)})
    path = tmp_path / "units.safetensors"
    save_quantizers(qs, path)
    back = load_quantizers(path)
    assert back.codebook_id == qs.codebook_id and back.fitted_for == fitted_for and back.kind == "onnx"
    check_fitted_for(back, "onnx", fitted_for, "units")
    lines = {
        "another model": (dict(fitted_for, model_sha256="b" * 64), "onnx"),
        "another size": (dict(fitted_for, embedding_dim=8), "onnx"),
        "another kind": (fitted_for, "torchscript"),
    }
    want = {
        "another model": f"tokenizer 'units': codebooks {path} were fitted for another model (model_sha256 "
                         f"aaaaaaaaaaaaaaaa..., this model file is bbbbbbbbbbbbbbbb...); fit them again: "
                         f"livetok fit --tokenizer units",
        "another size": f"tokenizer 'units': codebooks {path} were fitted for embedding_dim=6, but this tokenizer has "
                        f"embedding_dim=8; fit them again: livetok fit --tokenizer units",
        "another kind": f"tokenizer 'units': codebooks {path} were fitted for a 'onnx' tokenizer, not 'torchscript'; "
                        f"fit them again: livetok fit --tokenizer units",
    }
    for case, (expected, kind) in lines.items():
        with pytest.raises(CodebookError) as info:
            check_fitted_for(back, kind, expected, "units")
        assert str(info.value) == want[case]
    bad_cfgs = {
        "have 3 codes per level, but quantizer.codebook_size is 4": QuantizerConfig(kind="kmeans", codebook_size=4,
                                                                                    dim=None),
        "project to 6 values, but quantizer.dim is 2": QuantizerConfig(kind="kmeans", codebook_size=3, dim=2),
        "have 1 level(s), but the quantizer uses 4": QuantizerConfig(kind="rvq", codebook_size=3, dim=None),
    }
    for words, c in bad_cfgs.items():
        with pytest.raises(CodebookError, match=words.replace("(", r"\(").replace(")", r"\)")):
            build_quantizer(back.streams["tokens"], c, "codebooks x")


def test_damaged_and_foreign_files(tmp_path: Path) -> None:
    qs = make_quantizer_set("onnx", {"x": 1}, {"tokens": fit_quantizer(X, QuantizerConfig(kind="kmeans",
                                                                                         codebook_size=3, dim=None))})
    good = tmp_path / "good.safetensors"
    save_quantizers(qs, good)
    tensors = load_file(str(good))
    from safetensors import safe_open

    with safe_open(str(good), "numpy") as f:
        meta = f.metadata()
    cases: dict[str, tuple[dict[str, np.ndarray], dict[str, str]]] = {
        "content hash": ({**tensors, "tokens.mean": tensors["tokens.mean"] + 1}, meta),
        "non-finite": ({**tensors, "tokens.codebooks": tensors["tokens.codebooks"] * np.nan}, meta),
        "tensor tokens.proj is missing": ({k: v for k, v in tensors.items() if k != "tokens.proj"}, meta),
        "metadata is missing": (tensors, {k: v for k, v in meta.items() if k != "fitted_for"}),
    }
    for words, (t, m) in cases.items():
        p = tmp_path / f"{words.split()[0]}.safetensors"
        save_file(t, str(p), metadata=m)
        with pytest.raises(CodebookError, match=words):
            load_quantizers(p)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(CodebookError, match="not a readable safetensors codebook file"):
        load_quantizers(junk)
    with pytest.raises(CodebookError, match="not a plug-in tokenizer codebook file"):
        load_quantizers(default_codebook_path())
    with pytest.raises(CodebookError, match="codebook file not found"):
        load_quantizers(tmp_path / "none.safetensors")


def test_a_save_that_cannot_happen_is_one_line(tmp_path: Path) -> None:
    qs = make_quantizer_set("onnx", {}, {"t": ScaleArrays(np.zeros(2), np.eye(2), np.zeros((1, 2, 2)))})
    path = tmp_path / "q.safetensors"
    save_quantizers(qs, path)
    assert load_quantizers(path).fitted_for == {}
    with pytest.raises(OutputError) as info:
        save_quantizers(qs, tmp_path / "missing-dir" / "q.safetensors")
    assert "missing-dir" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_fit_on_speech_then_refused_by_another_model(model_dir: Path, speech_wav: Path, tmp_path: Path) -> None:
    """The flow of `livetok fit --tokenizer units` and of starting: k-means units over the embeddings of
    real speech through the model; the same file is refused by a model with other weights."""
    enc = AudioModelEncoder.load("units", ModelConfig(path=stateless_model(model_dir, "onnx")), "onnx")
    cfg = QuantizerConfig(kind="kmeans", codebook_size=20, dim=None, iters=6)
    x = model_embeddings([speech_wav], enc, FitOptions())
    assert x.shape[1] == 12 and x.shape[0] > 150  # about 2 s at 100 frames/s
    qs = fit_tokenizer([speech_wav], enc, cfg, FitOptions())
    path = tmp_path / "units.safetensors"
    save_quantizers(qs, path)
    enc.use_codebooks(load_quantizers(path), cfg)
    steps = process(enc, enc.stream("mic").take(np.zeros(1600, np.float32)))
    assert steps and all(s.codes.shape == (1, 1) and s.codes.max() < 20 for s in steps)
    other = AudioModelEncoder.load("units", ModelConfig(path=stateless_model(model_dir, "onnx", seed=1)), "onnx")
    with pytest.raises(CodebookError, match="were fitted for another model"):
        other.use_codebooks(load_quantizers(path), cfg)
    # a codes model has nothing to fit
    codes = AudioModelEncoder.load("c", ModelConfig(path=stateful_model(model_dir, "onnx"),
                                                    io=stateful_io("onnx", "codes")), "onnx")
    with pytest.raises(MediaError, match="the model gives codes itself; there is nothing to fit"):
        fit_tokenizer([speech_wav], codes, cfg, FitOptions())


def test_fitting_sees_the_frames_the_live_stream_makes(model_dir: Path, speech_wav: Path) -> None:
    """A stateful model: the training embeddings are exactly the frames a live stream of the same
    audio gives (same chunks, same state), in order, while under the reservoir's cap."""
    from livetok.tokenizers.plugin_fit import audio_blocks

    enc = AudioModelEncoder.load("g", ModelConfig(path=stateful_model(model_dir, "onnx"), io=stateful_io("onnx")),
                                 "onnx")
    x = model_embeddings([speech_wav], enc, FitOptions())
    samples = np.concatenate(list(audio_blocks(speech_wav, 16000)))
    s = enc.stream("live")
    jobs = s.take(samples)
    live = np.concatenate([o.frames for o in enc.run(jobs)])
    assert x.shape == live.shape == (samples.size // 320 * 2, 8)
    assert x.tobytes() == live.tobytes()
