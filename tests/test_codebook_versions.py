"""Codebook versions (issue 16): the v1 default stays packaged and its token files still decode;
the fitting improvements (joint refinement, chunked PCA); the corpus keeps the held-out package out."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import skimage
import torch
from mediagen import ffmpeg
from PIL import Image

from livetok.cli import main
from livetok.commands.quality import evaluate, psnr_db
from livetok.config.tokenizer import AudioConfig, RVQConfig, VideoConfig
from livetok.errors import CodebookError
from livetok.media.frames import to_model_image
from livetok.tokenizers import TokenizerConfig, Tokenizers
from livetok.tokenizers.codebooks import (
    CodebookSet,
    compute_id,
    default_codebook_path,
    load_codebooks,
    make_set,
    packaged_codebook_path,
    save_codebooks,
)
from livetok.tokenizers.fit import FitOptions, fit, fit_deblocking
from livetok.tokenizers.kmeans import _nearest, fit_rvq, pca, project, refine_rvq
from livetok.tokenizers.video import VideoTokenizer, deblock, unpatchify
from livetok.wire import Modality, Scale, read_ltk

V1 = "c0ff5bee45950755"  # the packaged default until issue 16
V2 = "c6e8c71ddd1f06e4"  # the packaged default since (docs/tokenizers.md): a change of it is deliberate
REPO = Path(__file__).resolve().parent.parent


def test_v1_codebooks_stay_packaged_by_id() -> None:
    path = packaged_codebook_path(V1)
    assert path is not None and path.name == f"{V1}.safetensors"
    v1 = load_codebooks(path)  # the content hash is checked against the recorded id on load
    assert v1.codebook_id == V1
    assert load_codebooks(Path(V1)).codebook_id == V1  # tokenizer.codebooks: c0ff5bee45950755
    assert load_codebooks(None).codebook_id == V2  # the default moved on, with a new id
    v1.check(TokenizerConfig())  # and still matches the default configuration


def test_an_unknown_id_or_a_missing_file_is_still_not_found() -> None:
    with pytest.raises(CodebookError, match="not found"):
        load_codebooks(Path("0123456789abcdef"))
    with pytest.raises(CodebookError, match="not found"):
        load_codebooks(Path("no-such-codebooks.safetensors"))
    assert packaged_codebook_path("default") is None and packaged_codebook_path("../default") is None


def v1_config(tmp_path: Path, value: str) -> Path:
    cfg = tmp_path / f"v1-{len(value)}.yaml"
    cfg.write_text(f"tokenizer:\n  device: cpu\n  codebooks: {json.dumps(value)}\n")
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("by", ["file", "id"])
def test_v1_token_files_still_decode(by: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tokenize with the v1 codebooks file (by path, and by its id), then decode, inspect and eval
    with it after the default changed; the default codebooks refuse those tokens by name."""
    photo = tmp_path / "chelsea.png"
    Image.fromarray(skimage.data.chelsea()).save(photo)
    value = str(packaged_codebook_path(V1)) if by == "file" else V1
    cfg = v1_config(tmp_path, value)
    ltk = tmp_path / "v1.ltk"
    assert main(["tokenize", str(photo), "-o", str(ltk), "-c", str(cfg)]) == 0
    packets = read_ltk(ltk).packets
    assert {p.codebook_id for p in packets} == {V1}

    # decode: the tokens are the v1 encoder's, and the v1 arrays rebuild the picture from them
    toks = Tokenizers.from_config(TokenizerConfig(device="cpu", codebooks=Path(value)))
    image = np.asarray(Image.open(photo).convert("RGB"))
    model = to_model_image(image, 224, "crop")
    fine = next(p for p in packets if p.modality == Modality.VIDEO and p.scale == Scale.FINE)
    np.testing.assert_array_equal(fine.codes, toks.video.encode(model[None]).codes["fine"][0])
    rec = toks.video.reconstruct(fine.codes, "fine")
    raw = unpatchify(toks.video.quantizers["fine"].decode(fine.codes), 16)
    np.testing.assert_array_equal(rec, raw)  # v1 has no decoder metadata: decoded exactly as before
    v1_psnr = psnr_db(float(np.mean((rec.astype(float) - model.astype(float)) ** 2)))
    assert v1_psnr > 20
    wrong = Tokenizers.from_config(TokenizerConfig(device="cpu"))  # the new default, same codes
    x = wrong.video.quantizers["fine"].decode(fine.codes)
    wrong_psnr = psnr_db(float(np.mean((unpatchify(x, 16).astype(float) - model.astype(float)) ** 2)))
    assert wrong_psnr < v1_psnr - 3  # the codes mean nothing without their own codebooks

    # inspect with v1: a picture; with the default codebooks: one line naming both ids, exit 65
    png = tmp_path / "v1.png"
    assert main(["inspect", str(ltk), "-o", str(png), "--source", str(photo), "-c", str(cfg)]) == 0
    assert Image.open(png).size[0] > 0
    capsys.readouterr()
    assert main(["inspect", str(ltk), "-o", str(tmp_path / "x.png")]) == 65
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and V1 in err and load_codebooks(None).codebook_id in err, err

    # eval with v1 measures the v1 tokens
    report = evaluate(photo, toks, compare=False)
    assert report["video"]["fine"]["psnr_db"][-1] == pytest.approx(v1_psnr, abs=1e-6)


def test_default_file_is_the_new_set_and_both_are_small() -> None:
    new, old = default_codebook_path(), packaged_codebook_path(V1)
    assert old is not None
    assert new.stat().st_size < 8_000_000 and old.stat().st_size < 8_000_000
    meta_new = load_codebooks(new)
    meta_old = load_codebooks(old)
    for s in ("fine", "coarse"):  # the audio scales were carried over unchanged
        assert np.array_equal(meta_new.scale("audio", s).codebooks, meta_old.scale("audio", s).codebooks)
        assert meta_new.decoder[f"video.{s}"]["deblock_width"] > 0  # v2 deblocks its reconstructions
    assert meta_old.decoder == {}


# --- fitting ---------------------------------------------------------------------------------


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, d)) * 3
    return (centres[rng.integers(0, 40, n)] + rng.normal(size=(n, d)) * rng.uniform(0.2, 1.5, d)).astype(np.float32)


def rvq_error(z: np.ndarray, books: np.ndarray) -> float:
    r = torch.from_numpy(z)
    for cb in books:
        idx, _ = _nearest(r, torch.from_numpy(cb))
        r = r - torch.from_numpy(cb)[idx]
    return float((r * r).sum(1).mean())


def test_refinement_lowers_the_greedy_encoding_error() -> None:
    """Joint refinement (block coordinate descent on every level's codewords) lowers the error of
    the greedy encoder the tokenizers use, on the training data and on data it never saw."""
    z, held = clustered(6000, 8, 0), clustered(3000, 8, 0)[::-1].copy()
    books = fit_rvq(z, levels=3, k=32, iters=10, seed=0, device=torch.device("cpu"))
    refined = refine_rvq(z, books, rounds=6, device=torch.device("cpu"))
    assert refined.shape == books.shape and refined.dtype == np.float32
    assert rvq_error(z, refined) < 0.97 * rvq_error(z, books)
    assert rvq_error(held, refined) < rvq_error(held, books)
    assert np.array_equal(refine_rvq(z, books, rounds=0, device=torch.device("cpu")), books)


def test_chunked_pca_is_the_covariance_eigenbasis() -> None:
    x = clustered(5000, 12, 1).astype(np.float64)
    mean, proj = pca(x, 5, chunk=333)
    mean_all, proj_all = pca(x, 5, chunk=100_000)
    np.testing.assert_allclose(mean, x.mean(0), atol=1e-12)
    np.testing.assert_allclose(proj, proj_all, atol=1e-9)
    np.testing.assert_allclose(mean, mean_all, atol=1e-12)
    _, vecs = np.linalg.eigh(np.cov(x.T))
    top = vecs[:, ::-1][:, :5]
    np.testing.assert_allclose(np.abs(proj.T @ top), np.eye(5), atol=1e-6)  # the same directions
    z = project(x, mean, proj, chunk=777)
    np.testing.assert_allclose(z, ((x - mean) @ proj).astype(np.float32), rtol=1e-5, atol=1e-5)


# --- the corpus ------------------------------------------------------------------------------


def load_make_corpus():  # scripts/ is not a package
    spec = importlib.util.spec_from_file_location("make_corpus", REPO / "scripts" / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_corpus_keeps_the_held_out_package_out_and_picks_one_rendition(tmp_path: Path) -> None:
    mc = load_make_corpus()
    assert mc.HELD_OUT_PACKAGE == "mate-backgrounds" and mc.HELD_OUT_PACKAGE not in mc.DEBIAN_PACKAGES
    assert mc.HELD_OUT not in mc.PHOTOS
    root = tmp_path / "pkg"
    sizes = {"usr/share/wallpapers/Kite/contents/images/2560x1600.jpg": 300_000,
             "usr/share/wallpapers/Kite/contents/images/1080x1920.jpg": 200_000,
             "usr/share/wallpapers/Kite/contents/images_dark/2560x1600.jpg": 150_000,
             "usr/share/wallpapers/Kite/contents/screenshot.jpg": 120_000,
             "usr/share/backgrounds/icon.png": 5_000,
             "usr/share/backgrounds/sway/Blue_768x1024_Portrait.png": 110_000,
             "usr/share/backgrounds/sway/Blue_2048x1536.png": 400_000,
             "usr/share/backgrounds/notes.txt": 200_000,
             "usr/share/desktop-base/joy-theme/grub/grub-4x3.png": 130_000,
             "usr/share/desktop-base/joy-theme/grub/grub-16x9.png": 160_000}
    for rel, size in sizes.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"\0" * size)
    picked = [p.relative_to(root).as_posix() for p in mc.pick_pictures(root)]
    assert sorted(picked) == ["usr/share/backgrounds/sway/Blue_2048x1536.png",
                              "usr/share/desktop-base/joy-theme/grub/grub-16x9.png",
                              "usr/share/wallpapers/Kite/contents/images/2560x1600.jpg",
                              "usr/share/wallpapers/Kite/contents/images_dark/2560x1600.jpg"]


# --- the decoder's deblocking ------------------------------------------------------------------


def deblock_reference(image: np.ndarray, patch: int, width: int, strength: float) -> np.ndarray:
    """The definition, boundary by boundary and pixel by pixel: rows first, then columns."""
    x = image.astype(np.float64)
    for axis in (0, 1):
        y = np.moveaxis(x, axis, 0)
        for b in range(patch, y.shape[0], patch):
            jump = y[b] - y[b - 1]
            for d in range(width):
                w = strength * 0.5 * (1 - (d + 0.5) / width)
                y[b - 1 - d] += w * jump
                y[b + d] -= w * jump
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("patch", "width", "strength"), [(16, 2, 0.85), (16, 8, 1.0), (32, 7, 0.85), (32, 16, 0.25)])
def test_deblock_is_the_documented_ramp(patch: int, width: int, strength: float) -> None:
    rng = np.random.default_rng(patch + width)
    images = rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    got = deblock(images, patch, width, strength)
    for i in range(3):
        np.testing.assert_array_equal(got[i], deblock_reference(images[i], patch, width, strength))
    assert deblock(images, patch, 0, 1.0) is images and deblock(images, patch, 3, 0.0) is images


def test_deblock_turns_a_step_into_a_ramp() -> None:
    img = np.full((32, 32, 3), 100, np.uint8)
    img[:, 16:] = 200
    row = deblock(img, 16, 2, 1.0)[5, :, 0].tolist()
    assert row[:14] == [100] * 14 and row[18:] == [200] * 14
    assert row[14:18] == [112, 138, 162, 188]  # 100 + 0.125 / 0.375 of the step, and back from 200


def test_decoder_metadata_round_trips_and_is_part_of_the_id(tmp_path: Path) -> None:
    v1 = load_codebooks(packaged_codebook_path(V1))
    assert v1.decoder == {}  # v1 decodes as it always did: no deblocking
    decoder = {"video.fine": {"deblock_width": 2, "deblock_strength": 0.85},
               "video.coarse": {"deblock_width": 7, "deblock_strength": 0.85}}
    with_decoder = make_set(v1.frontend, v1.scales, decoder)
    assert with_decoder.codebook_id != V1 and make_set(v1.frontend, v1.scales).codebook_id == V1
    path = tmp_path / "d.safetensors"
    save_codebooks(with_decoder, path)
    loaded = load_codebooks(path)
    assert loaded.decoder == decoder and loaded.codebook_id == with_decoder.codebook_id
    toks = Tokenizers.from_config(TokenizerConfig(device="cpu", codebooks=path))
    assert toks.video.deblocking == {"fine": (2, 0.85), "coarse": (7, 0.85)}


@pytest.mark.parametrize(
    ("decoder", "needle"),
    [
        ({"video.fine": {"deblock_width": 9, "deblock_strength": 0.5}}, "decoder.video.fine.deblock_width"),
        ({"video.coarse": {"deblock_width": 4, "deblock_strength": 1.5}}, "decoder.video.coarse.deblock_strength"),
        ({"audio.fine": {"deblock_width": 1, "deblock_strength": 0.5}}, "not a video scale"),
        ({"video.fine": {"deblock_width": 1}}, "decoder.video.fine"),
        ([1, 2], "metadata 'decoder' is a list"),
    ],
)
def test_bad_decoder_metadata_is_one_line(decoder: object, needle: str, tmp_path: Path) -> None:
    v1 = load_codebooks(packaged_codebook_path(V1))
    cbs = CodebookSet(v1.frontend, v1.scales, compute_id(v1.frontend, v1.scales, {"x": decoder}), decoder={})
    path = tmp_path / "bad.safetensors"
    save_codebooks(cbs, path, {"decoder": json.dumps(decoder)})
    with pytest.raises(CodebookError, match=re.escape(needle)) as err:
        load_codebooks(path)
    assert "\n" not in str(err.value)


def test_fit_deblocking_lowers_the_error_on_its_pictures() -> None:
    cbs = load_codebooks(packaged_codebook_path(V1))
    cfg = TokenizerConfig(device="cpu")
    pictures = np.stack([to_model_image(img, 224, "crop") for img in (skimage.data.astronaut(), skimage.data.rocket())])
    decoder = fit_deblocking(cbs, cfg, pictures)
    assert set(decoder) == {"video.fine", "video.coarse"}
    tok = VideoTokenizer(cfg.video, cbs, "cpu")
    codes = tok.encode(pictures).codes
    for scale, patch in (("fine", 16), ("coarse", 32)):
        params = decoder[f"video.{scale}"]
        assert 1 <= params["deblock_width"] <= patch // 2  # natural pictures: some deblocking helps
        rec = np.stack([tok.reconstruct(c, scale) for c in codes[scale]])
        done = deblock(rec, patch, params["deblock_width"], params["deblock_strength"])
        err = [float(np.sum((pictures.astype(float) - r.astype(float)) ** 2)) for r in (rec, done)]
        assert err[1] < err[0]


def small_config() -> TokenizerConfig:
    small = RVQConfig(levels=2, codebook_size=16, dim=8)
    return TokenizerConfig(device="cpu", audio=AudioConfig(fine=small, coarse=small),
                           video=VideoConfig(fine=small, coarse=small))


@pytest.mark.slow
def test_livetok_fit_fits_the_deblocking_of_the_video_it_fits(tmp_path: Path) -> None:
    photo = tmp_path / "chelsea.png"
    Image.fromarray(skimage.data.chelsea()).save(photo)
    cfg = small_config()
    got = fit([photo], cfg, FitOptions(iters=2, crops_per_frame=1), base=load_codebooks(None))
    assert set(got.decoder) == {"video.fine", "video.coarse"}
    assert 1 <= got.decoder["video.coarse"]["deblock_width"] <= 16  # 16-code books: blocky enough to gain
    assert got.decoder == fit_deblocking(got, cfg, to_model_image(skimage.data.chelsea(), 224, "crop")[None])
    none = fit([photo], cfg, FitOptions(iters=2, crops_per_frame=1, deblock_pictures=0), base=load_codebooks(None))
    assert none.decoder == {}
    # the same codebooks either way: keeping pictures does not change which vectors are kept
    for key in ("video.fine", "video.coarse"):
        assert np.array_equal(none.scales[key].codebooks, got.scales[key].codebooks)


def test_fit_keeps_the_base_decoder_for_the_video_it_takes_from_base(tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=500:sample_rate=16000:duration=3", str(wav))
    base = load_codebooks(None)
    cfg = small_config().model_copy(update={"video": VideoConfig()})
    got = fit([wav], cfg, FitOptions(iters=2), base=base)
    assert got.decoder == base.decoder and got.decoder  # v2's deblocking goes with v2's video scales
