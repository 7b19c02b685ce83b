"""``livetok inspect``: the picture's geometry and content, delta grids, errors, command line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from livetok.cli import main
from livetok.commands import inspect as ip
from livetok.commands.inspect import Layout, colormap, evenly_spaced, inspect
from livetok.commands.quality import model_images, video_grids
from livetok.commands.tokenize import tokenize_files
from livetok.config.tokenizer import DeltaConfig, VideoConfig
from livetok.errors import CodebookError, DecodeError
from livetok.tokenizers import TokenizerConfig, Tokenizers
from livetok.wire import FILE_HEADER, LtkWriter, Modality, read_ltk

TILE = 224


@pytest.fixture(scope="module")
def clip_ltk(av_clip: Path, toks: Tokenizers, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inspect") / "clip.ltk"
    tokenize_files([av_clip], toks, out)
    return out


@pytest.fixture(scope="module")
def with_source(clip_ltk: Path, av_clip: Path, toks: Tokenizers) -> Image.Image:
    png = clip_ltk.with_name("with-source.png")
    inspect(clip_ltk, png, toks, av_clip)
    return Image.open(png).convert("RGB")


@pytest.fixture(scope="module")
def without_source(clip_ltk: Path, toks: Tokenizers) -> Image.Image:
    png = clip_ltk.with_name("tokens-only.png")
    inspect(clip_ltk, png, toks, None)
    return Image.open(png).convert("RGB")


def first_tile_origin(column: int) -> tuple[int, int]:
    """Top-left pixel of tile ``column`` in the first video row."""
    x = ip.MARGIN + ip.LABEL_W + column * (TILE + ip.GAP)
    y = ip.MARGIN + ip.TITLE_H + ip.SECTION_H + ip.CAPTION_H
    return x, y


def tile(picture: Image.Image, column: int) -> np.ndarray:
    x, y = first_tile_origin(column)
    return np.asarray(picture.crop((x, y, x + TILE, y + TILE)))


@pytest.mark.slow
def test_picture_size_with_source(with_source: Image.Image) -> None:
    # original + fine depths 1..4 + coarse depths 1..2; 4 frames; source, fine, coarse log-mels
    layout = Layout(tile=TILE, columns=7, rows=4, spectrograms=3)
    assert with_source.size == layout.size
    assert layout.size == (2 * ip.MARGIN + ip.LABEL_W + 7 * TILE + 6 * ip.GAP,
                           2 * ip.MARGIN + ip.TITLE_H + ip.SECTION_H + 4 * (ip.CAPTION_H + TILE + ip.GAP)
                           + ip.SECTION_H + 3 * (ip.SPEC_ROW_H + ip.GAP) + ip.AXIS_H)


@pytest.mark.slow
def test_picture_without_source_drops_the_original_column_and_row(
    with_source: Image.Image, without_source: Image.Image
) -> None:
    assert without_source.size == Layout(tile=TILE, columns=6, rows=4, spectrograms=2).size
    assert with_source.width - without_source.width == TILE + ip.GAP
    assert with_source.height - without_source.height == ip.SPEC_ROW_H + ip.GAP


def test_tiles_show_the_original_and_its_reconstructions(
    with_source: Image.Image, without_source: Image.Image, av_clip: Path, clip_ltk: Path, toks: Tokenizers
) -> None:
    packets = [p for p in read_ltk(clip_ltk).packets if p.modality == Modality.VIDEO]
    grids = video_grids(packets)
    first_shown = evenly_spaced(len(grids[("clip", "fine")]))[0]  # the top row's frame
    images = [img for _, img in model_images(av_clip, toks)]
    np.testing.assert_array_equal(tile(with_source, 0), images[first_shown])
    fine0 = grids[("clip", "fine")][first_shown].codes
    coarse0 = grids[("clip", "coarse")][first_shown].codes
    for depth in (1, 4):
        expected = toks.video.reconstruct(fine0, "fine", depth)
        np.testing.assert_array_equal(tile(with_source, depth), expected)
        np.testing.assert_array_equal(tile(without_source, depth - 1), expected)
    np.testing.assert_array_equal(tile(with_source, 6), toks.video.reconstruct(coarse0, "coarse", 2))


@pytest.mark.slow
def test_spectrograms_are_colour_mapped(with_source: Image.Image) -> None:
    top = ip.MARGIN + ip.TITLE_H + Layout(tile=TILE, columns=7, rows=4, spectrograms=3).video_h + ip.SECTION_H
    left = ip.MARGIN + ip.LABEL_W
    row = np.asarray(with_source.crop((left, top, left + 400, top + ip.SPEC_ROW_H)))
    lut = colormap(np.linspace(0, 1, 256)[None, :], 0, 1)[0]
    # every pixel is a colour of the map (or the no-data grey), and the 440 Hz tone stands out
    dist = np.abs(row.reshape(-1, 1, 3).astype(int) - lut[None, :, :].astype(int)).sum(-1).min(1)
    assert np.mean(dist <= 6) > 0.99
    assert len(np.unique(row.reshape(-1, 3), axis=0)) > 20


def test_audio_only_picture(speech_wav: Path, toks: Tokenizers, tmp_path: Path) -> None:
    ltk, png = tmp_path / "speech.ltk", tmp_path / "speech.png"
    tokenize_files([speech_wav], toks, ltk)
    inspect(ltk, png, toks, speech_wav)
    assert Image.open(png).size == Layout(tile=TILE, columns=0, rows=0, spectrograms=3).size
    assert Image.open(png).size[0] == 2 * ip.MARGIN + ip.LABEL_W + ip.AUDIO_MIN_W


def test_still_image_picture(media_dir: Path, toks: Tokenizers, tmp_path: Path) -> None:
    from skimage import data

    photo = media_dir / "coins-rgb.png"
    Image.fromarray(data.coins()).convert("RGB").save(photo)
    ltk, png = tmp_path / "coins.ltk", tmp_path / "coins.png"
    tokenize_files([photo], toks, ltk)
    inspect(ltk, png, toks, photo)
    assert Image.open(png).size == Layout(tile=TILE, columns=7, rows=1, spectrograms=0).size


@pytest.mark.slow
def test_delta_packets_are_drawn_as_full_grids(av_clip: Path, tmp_path: Path) -> None:
    cfg = TokenizerConfig(device="cpu", video=VideoConfig(delta=DeltaConfig(enabled=True)))
    toks = Tokenizers.from_config(cfg)
    ltk, png = tmp_path / "delta.ltk", tmp_path / "delta.png"
    tokenize_files([av_clip], toks, ltk)
    assert any(p.positions is not None for p in read_ltk(ltk).packets)
    inspect(ltk, png, toks, None)
    picture = Image.open(png).convert("RGB")
    assert picture.size == Layout(tile=TILE, columns=6, rows=4, spectrograms=2).size
    # the last frame shown (a delta frame) is the reconstruction of the rebuilt full grid
    frames = video_grids(read_ltk(ltk).packets)[("clip", "fine")]
    last = frames[evenly_spaced(len(frames))[-1]]
    assert last.sent < last.codes.shape[0]
    assert not np.array_equal(last.codes, frames[0].codes)  # the deltas were applied
    x = ip.MARGIN + ip.LABEL_W + 3 * (TILE + ip.GAP)
    y = ip.MARGIN + ip.TITLE_H + ip.SECTION_H + 3 * (ip.CAPTION_H + TILE + ip.GAP) + ip.CAPTION_H
    drawn = np.asarray(picture.crop((x, y, x + TILE, y + TILE)))
    np.testing.assert_array_equal(drawn, toks.video.reconstruct(last.codes, "fine", 4))


def test_evenly_spaced_frames() -> None:
    assert evenly_spaced(2) == [0, 1]
    assert evenly_spaced(50) == [6, 18, 31, 43]
    assert evenly_spaced(181) == [22, 67, 113, 158]  # not the 2 s markers at 30 fps (0, 60, 120, 180)
    assert evenly_spaced(4) == [0, 1, 2, 3]


def test_colormap_ends_and_missing_values() -> None:
    rgb = colormap(np.array([[0.0, 1.0, np.nan, -5.0, 9.0]]), 0.0, 1.0)[0]
    assert tuple(rgb[0]) == (68, 1, 84) and tuple(rgb[1]) == (253, 231, 37)
    assert tuple(rgb[2]) == ip.MISSING
    assert tuple(rgb[3]) == tuple(rgb[0]) and tuple(rgb[4]) == tuple(rgb[1])  # clipped
    ramp = colormap(np.linspace(0, 1, 64)[None, :], 0, 1)[0].astype(float)
    luma = ramp @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(luma) > 0)  # perceptually ordered: brighter means louder


# --- errors -----------------------------------------------------------------------------------


def test_mismatched_codebook_id(clip_ltk: Path, toks: Tokenizers, tmp_path: Path) -> None:
    other = "ffffffffffffffff"
    bad = tmp_path / "other-codebooks.ltk"
    with LtkWriter(bad) as w:
        for p in read_ltk(clip_ltk).packets:
            w.write(dataclasses.replace(p, codebook_id=other))
    with pytest.raises(CodebookError) as info:
        inspect(bad, tmp_path / "x.png", toks, None)
    msg = str(info.value)
    assert other in msg and toks.codebooks.codebook_id in msg and "\n" not in msg
    assert not (tmp_path / "x.png").exists()


def test_not_a_token_file(av_clip: Path, toks: Tokenizers, tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match=r"not a \.ltk token file"):
        inspect(av_clip, tmp_path / "x.png", toks, None)
    with pytest.raises(DecodeError, match=r"nope\.ltk"):
        inspect(tmp_path / "nope.ltk", tmp_path / "x.png", toks, None)


def test_token_file_without_packets(toks: Tokenizers, tmp_path: Path) -> None:
    empty = tmp_path / "empty.ltk"
    empty.write_bytes(FILE_HEADER)
    with pytest.raises(DecodeError, match="no token packets"):
        inspect(empty, tmp_path / "x.png", toks, None)


# --- command line -----------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_inspect_writes_the_picture(clip_ltk: Path, av_clip: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "cli.png"
    assert main(["inspect", str(clip_ltk), "-o", str(png), "--source", str(av_clip)]) == 0
    assert f"wrote {png}" in capsys.readouterr().err
    assert Image.open(png).size == Layout(tile=TILE, columns=7, rows=4, spectrograms=3).size


def test_cli_inspect_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["inspect", str(tmp_path / "missing.ltk"), "-o", str(tmp_path / "out.png")])
    captured = capsys.readouterr()
    assert code != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("livetok: error:") and "missing.ltk" in lines[0]
    assert not (tmp_path / "out.png").exists()


def test_cli_inspect_missing_source(clip_ltk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["inspect", str(clip_ltk), "-o", str(tmp_path / "out.png"), "--source", str(tmp_path / "gone.mp4")])
    captured = capsys.readouterr()
    assert code != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "gone.mp4" in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_cli_inspect_damaged_file_draws_and_says_what_was_skipped(
    damage: str, clip_ltk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: exit 0 and a picture without a word, while probe exited 65 on the same file."""
    data = bytearray(clip_ltk.read_bytes())
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    else:
        for at in (len(data) // 3, len(data) // 2):
            data[at] ^= 0xFF
    bad = tmp_path / f"{damage}.ltk"
    bad.write_bytes(bytes(data))
    png = tmp_path / "out.png"
    capsys.readouterr()
    assert main(["probe", str(bad)]) == 65
    probe_errors = [line.removeprefix("error: ") for line in capsys.readouterr().out.splitlines()
                    if line.startswith("error: ")]
    code = main(["inspect", str(bad), "-o", str(png)])
    err = capsys.readouterr().err.splitlines()
    assert code == 65
    assert Image.open(png).size[0] > 0  # drawn from what could be read
    assert err[0] == f"wrote {png} from what could be read ({len(probe_errors)} damaged regions skipped)"
    assert err[1:] == [f"livetok: warning: {e}" for e in probe_errors] and len(probe_errors) == (
        1 if damage == "truncated" else 2)
