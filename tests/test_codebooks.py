"""Codebook files: the packaged set, fitting, mismatches and damage."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage
import torch
from mediagen import ffmpeg

from livetok.cli import main
from livetok.config.tokenizer import AudioConfig, RVQConfig, VideoConfig
from livetok.errors import CodebookError
from livetok.tokenizers import TokenizerConfig, Tokenizers
from livetok.tokenizers.codebooks import (
    CodebookSet,
    compute_id,
    default_codebook_path,
    load_codebooks,
    save_codebooks,
    vector_size,
)
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


@pytest.mark.slow
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


# --- files that pass the content hash but are inconsistent inside (issue 6) ----------------


def crafted_codebooks(tmp_path: Path, name: str, frontend_edit=None, **arrays: np.ndarray) -> Path:
    """The packaged set with some arrays (``audio_fine_proj=...``) or front-end metadata replaced,
    saved with a recomputed codebook_id, so the content-hash check passes."""
    base = load_codebooks(None)
    frontend = json.loads(json.dumps(base.frontend))
    if frontend_edit is not None:
        frontend_edit(frontend)
    scales = dict(base.scales)
    for arg, value in arrays.items():
        modality, scale, part = arg.split("_")
        scales[f"{modality}.{scale}"] = dataclasses.replace(scales[f"{modality}.{scale}"], **{part: value})
    cbs = CodebookSet(frontend=frontend, scales=scales, codebook_id=compute_id(frontend, scales))
    path = tmp_path / f"{name}.safetensors"
    save_codebooks(cbs, path)
    return path


def tokenize_with(codebooks: Path, media: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"tokenizer:\n  device: cpu\n  codebooks: {codebooks}\n")
    out = tmp_path / "out.ltk"
    capsys.readouterr()
    code = main(["tokenize", str(media), "-o", str(out), "-c", str(cfg)])
    err = capsys.readouterr().err.strip()
    assert not out.exists()
    return code, err


def _set_type(fe: dict) -> None:
    fe["audio"]["n_mels"] = "80"


def _video_not_object(fe: dict) -> None:
    fe["video"] = [224, 16, 32]


def _negative_patch(fe: dict) -> None:
    fe["video"]["fine_patch"] = -16


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("proj_wrong_shape", "audio.fine.proj"),
        ("mean_wrong_shape", "video.fine.mean"),
        ("frontend_wrong_type", "frontend.audio.n_mels"),
        ("frontend_not_object", "frontend.video"),
        ("frontend_out_of_range", "frontend.video.fine_patch"),
        ("coarse_audio_wrong_width", "audio.coarse.codebooks"),
        ("all_nan_codebooks", "video.fine.codebooks"),
        ("inf_in_mean", "audio.coarse.mean"),
        ("integer_tensor", "video.coarse.proj"),
        ("huge_codebooks", "video.fine.codebooks"),
        ("huge_proj", "audio.fine.proj"),
        ("huge_mean", "audio.coarse.mean"),
    ],
)
def test_inconsistent_codebook_file_is_one_line_exit_65(
    case: str, needle: str, tmp_path: Path, speech_wav: Path, av_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each passed the hash check and, before, gave a traceback (exit 1) or wrong tokens with exit 0
    (coarse audio of the wrong width: every token [28, 28]; all-NaN codebooks: every code 0)."""
    base = load_codebooks(None)
    a_fine, a_coarse = base.scale("audio", "fine"), base.scale("audio", "coarse")
    v_fine, v_coarse = base.scale("video", "fine"), base.scale("video", "coarse")
    made = {
        "proj_wrong_shape": lambda: crafted_codebooks(tmp_path, case, audio_fine_proj=a_fine.proj[:150]),
        "mean_wrong_shape": lambda: crafted_codebooks(tmp_path, case, video_fine_mean=v_fine.mean[:700]),
        "frontend_wrong_type": lambda: crafted_codebooks(tmp_path, case, _set_type),
        "frontend_not_object": lambda: crafted_codebooks(tmp_path, case, _video_not_object),
        "frontend_out_of_range": lambda: crafted_codebooks(tmp_path, case, _negative_patch),
        "coarse_audio_wrong_width": lambda: crafted_codebooks(
            tmp_path, case, audio_coarse_codebooks=np.ascontiguousarray(a_coarse.codebooks[:, :, :64])),
        "all_nan_codebooks": lambda: crafted_codebooks(
            tmp_path, case, video_fine_codebooks=np.full_like(v_fine.codebooks, np.nan)),
        "inf_in_mean": lambda: crafted_codebooks(
            tmp_path, case, audio_coarse_mean=np.where(np.arange(a_coarse.mean.size) == 3, np.inf, a_coarse.mean)),
        "integer_tensor": lambda: crafted_codebooks(tmp_path, case, video_coarse_proj=v_coarse.proj.astype(np.int32)),
        # finite in float32, but not fitted values: before, exit 0 (with numpy's overflow warnings) and
        # meaningless codes
        "huge_codebooks": lambda: crafted_codebooks(tmp_path, case, video_fine_codebooks=huge(v_fine.codebooks)),
        "huge_proj": lambda: crafted_codebooks(tmp_path, case, audio_fine_proj=huge(a_fine.proj)),
        "huge_mean": lambda: crafted_codebooks(tmp_path, case, audio_coarse_mean=huge(a_coarse.mean)),
    }
    path = made[case]()
    media = speech_wav if "audio" in needle else av_clip
    code, err = tokenize_with(path, media, tmp_path, capsys)
    assert code == 65, err
    assert len(err.splitlines()) == 1 and err.startswith("livetok: error: "), err
    assert str(path) in err and needle in err, err
    with pytest.raises(CodebookError, match=re.escape(needle)):
        load_codebooks(path)


def huge(a: np.ndarray) -> np.ndarray:
    """``a`` scaled so that its largest value is 1e37: every value finite in float32."""
    return (a / np.abs(a).max() * np.float32(1e37)).astype(np.float32)


@pytest.mark.slow
def test_huge_values_are_one_line_without_numpy_warnings(tmp_path: Path, av_clip: Path) -> None:
    """Before: numpy's "RuntimeWarning: overflow encountered in cast" with its source line on stderr,
    then exit 0."""
    path = crafted_codebooks(tmp_path, "huge", audio_fine_codebooks=huge(load_codebooks(None).scale(
        "audio", "fine").codebooks))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"tokenizer:\n  device: cpu\n  codebooks: {path}\n")
    why = (f"{path}: tensor audio.fine.codebooks has 262144 values beyond ±1e+06 of 262144 (the largest 1e+37): "
           "not fitted codebooks; tokenizing with them would overflow")
    for argv, code in ((["tokenize", str(av_clip), "-o", str(tmp_path / "o.ltk")], 65), (["check-config"], 78)):
        r = subprocess.run([sys.executable, "-W", "default", "-m", "livetok.cli", *argv, "-c", str(cfg)],
                           capture_output=True, text=True, timeout=300, check=False)
        assert r.returncode == code and r.stderr.count("\n") == 1 and r.stderr.endswith(f"{why}\n"), r.stderr
    assert not (tmp_path / "o.ltk").exists()


def test_projected_size_must_match_the_configuration() -> None:
    cfg = TokenizerConfig(audio=AudioConfig(coarse=RVQConfig(levels=2, dim=64)))
    with pytest.raises(CodebookError, match=r"audio\.coarse to 128 values .*tokenizer\.audio\.coarse\.dim=64"):
        load_codebooks(None).check(cfg)


def test_vector_sizes_follow_the_tokenizers(toks: Tokenizers) -> None:
    """D as content_problem computes it is the input size of every quantizer the tokenizers build."""
    fe = toks.codebooks.frontend
    for scale in ("fine", "coarse"):
        assert vector_size(fe, "audio", scale) == toks.audio.quantizers[scale].in_dim
        assert vector_size(fe, "video", scale) == toks.video.quantizers[scale].in_dim
    assert vector_size(fe, "audio", "fine") == 80 * 2 and vector_size(fe, "video", "coarse") == 3 * 32 * 32
