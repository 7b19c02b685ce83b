"""Codebook files: the packaged set, fitting, mismatches and damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage
import torch
from mediagen import ffmpeg

from livetok.errors import CodebookError
from livetok.tokenizers import TokenizerConfig, Tokenizers
from livetok.tokenizers.codebooks import default_codebook_path, load_codebooks, save_codebooks
from livetok.tokenizers.config import AudioConfig, RVQConfig, VideoConfig
from livetok.tokenizers.fit import FitOptions, fit
from livetok.tokenizers.kmeans import _nearest, fit_rvq, kmeans_pp, lloyd, pca


def test_packaged_codebooks_load_and_match_defaults() -> None:
    cbs = load_codebooks(None)
    cbs.check(TokenizerConfig())
    assert len(cbs.codebook_id) == 16
    assert cbs.scale("video", "fine").codebooks.shape == (4, 1024, 64)
    assert cbs.scale("audio", "coarse").codebooks.shape == (2, 1024, 128)
    assert cbs.scale("audio", "fine").proj.shape == (160, 64)


def test_frontend_mismatch_names_both_values() -> None:
    cfg = TokenizerConfig(audio=AudioConfig(n_mels=64))
    with pytest.raises(CodebookError, match=r"audio\.n_mels=80 .* tokenizer\.audio\.n_mels=64"):
        Tokenizers.from_config(cfg)
    cfg = TokenizerConfig(video=VideoConfig(fine=RVQConfig(levels=4, codebook_size=512)))
    with pytest.raises(CodebookError, match=r"1024 codes per level .*codebook_size=512"):
        Tokenizers.from_config(cfg)
    cfg = TokenizerConfig(video=VideoConfig(coarse=RVQConfig(levels=5)))
    with pytest.raises(CodebookError, match="levels=5"):
        Tokenizers.from_config(cfg)


def test_fewer_levels_than_fitted_is_allowed() -> None:
    toks = Tokenizers.from_config(TokenizerConfig(device="cpu", video=VideoConfig(fine=RVQConfig(levels=2))))
    img = skimage.data.astronaut()[:224, :224].copy()
    assert toks.video.encode(img[None]).codes["fine"].shape == (1, 196, 2)


def test_damaged_or_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CodebookError, match="not found"):
        load_codebooks(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(CodebookError, match=r"junk\.safetensors"):
        load_codebooks(junk)
    data = bytearray(default_codebook_path().read_bytes())
    data[-10] ^= 0xFF  # a flipped bit in the last tensor
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CodebookError, match="does not match"):
        load_codebooks(bad)


def test_kmeans_pp_and_lloyd_find_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 4)) * 20
    x = torch.from_numpy((centres[rng.integers(0, 8, 4000)] + rng.normal(size=(4000, 4))).astype(np.float32))
    gen = torch.Generator().manual_seed(0)
    fitted = lloyd(x, kmeans_pp(x, 8, gen), iters=10)
    _, dist = _nearest(x, fitted)
    assert float(dist.mean()) < 6.0  # ~4 (unit noise in 4 dims) when every cluster is found


def test_rvq_levels_reduce_error_and_pca_is_orthonormal() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 12)) @ rng.normal(size=(12, 12))
    mean, proj = pca(x, 6)
    assert np.allclose(proj.T @ proj, np.eye(6), atol=1e-8)
    z = (x - mean) @ proj
    books = fit_rvq(z, levels=3, k=16, iters=8, seed=0, device=torch.device("cpu"))
    r = torch.from_numpy(z.astype(np.float32))
    errs = []
    for level in range(3):
        idx, _ = _nearest(r, torch.from_numpy(books[level]))
        r = r - torch.from_numpy(books[level])[idx]
        errs.append(float((r**2).sum(1).mean()))
    assert errs[0] > errs[1] > errs[2]


def small_config() -> TokenizerConfig:
    small = RVQConfig(levels=2, codebook_size=16, dim=8)
    return TokenizerConfig(device="cpu", audio=AudioConfig(fine=small, coarse=small),
                           video=VideoConfig(fine=small, coarse=small))


def test_fit_writes_a_loadable_reproducible_file(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=22050:duration=3", str(media / "tone.wav"))
    skimage.io.imsave(media / "photo.png", skimage.data.chelsea())
    opts = FitOptions(iters=3, crops_per_frame=2)
    cfg = small_config()
    files = sorted(media.iterdir())
    a = fit(files, cfg, opts, base=None)
    b = fit(files, cfg, opts, base=None)
    assert a.codebook_id == b.codebook_id  # same data and seed -> same codebooks
    out = tmp_path / "cb.safetensors"
    save_codebooks(a, out)
    loaded = load_codebooks(out)
    assert loaded.codebook_id == a.codebook_id
    loaded.check(cfg)
    toks = Tokenizers.from_config(cfg.model_copy(update={"codebooks": out}))
    assert toks.video.encode(skimage.data.chelsea()[:224, :224].copy()[None]).codes["fine"].max() < 16


def test_fit_takes_missing_modality_from_base(tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=500:sample_rate=16000:duration=3", str(wav))
    base = load_codebooks(None)
    cfg = small_config().model_copy(update={"video": VideoConfig()})
    got = fit([wav], cfg, FitOptions(iters=2), base=base)
    assert np.array_equal(got.scale("video", "fine").codebooks, base.scale("video", "fine").codebooks)
    assert got.scale("audio", "fine").codebooks.shape == (2, 16, 8)
    assert got.codebook_id != base.codebook_id
