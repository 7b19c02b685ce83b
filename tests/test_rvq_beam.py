"""Beam search in the video RVQ encoder (``tokenizer.video.{fine,coarse}.beam``): never worse than greedy,
exact when the beam holds every path, a row's codes independent of its batch, ties to the lower index,
shed frames encoded over the levels made, and the configuration's bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from livetok.cli import main
from livetok.config import load_config
from livetok.config.tokenizer import CoarseRVQConfig, RVQConfig, VideoConfig, VideoRVQConfig
from livetok.errors import ConfigError
from livetok.media.frames import to_model_image
from livetok.tokenizers import TokenizerConfig, Tokenizers, rvq
from livetok.tokenizers.rvq import ScaleQuantizer, beam_codes, smallest
from livetok.wire import Flag, Scale


def quantizer(seed: int, levels: int = 3, k: int = 16, d: int = 6, beam: int = 1) -> ScaleQuantizer:
    """Random codebooks shrinking per level (as fitted ones do), an orthonormal projection D = d."""
    rng = np.random.default_rng(seed)
    books = rng.standard_normal((levels, k, d)) * (0.6 ** np.arange(levels))[:, None, None]
    return ScaleQuantizer(np.zeros(d), np.eye(d), books, levels, beam)


def sq_error(q: ScaleQuantizer, z: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per row, in float64: ``||z - sum of the chosen codewords||^2``."""
    s = sum(q.codebooks[lv][codes[:, lv]] for lv in range(codes.shape[1]))
    return np.asarray(((z - s) ** 2).sum(axis=1))


def encode(q: ScaleQuantizer, x: np.ndarray, levels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    codes, z = q.encode_torch(torch.from_numpy(x.astype(np.float32)), levels=levels)
    return codes.numpy(), z.double().numpy()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), beam=st.integers(2, 8), levels=st.integers(2, 4), rows=st.integers(1, 40))
def test_beam_never_reconstructs_a_row_worse_than_greedy(seed: int, beam: int, levels: int, rows: int) -> None:
    greedy, beamed = quantizer(seed, levels), quantizer(seed, levels, beam=beam)
    x = np.random.default_rng(seed + 1).standard_normal((rows, 6))
    g_codes, z = encode(greedy, x)
    b_codes, _ = encode(beamed, x)
    g, b = sq_error(greedy, z, g_codes), sq_error(beamed, z, b_codes)
    assert (b <= g + 1e-5 * (1 + g)).all()  # float32 search, float64 check: rounding only


def test_a_beam_that_holds_every_path_finds_the_best_codes() -> None:
    k = 8
    q = quantizer(3, levels=2, k=k, beam=k)  # every level-0 code kept: level 1 sees all k * k sums
    x = np.random.default_rng(4).standard_normal((300, 6))
    codes, z = encode(q, x)
    every = (q.codebooks[0][:, None, :] + q.codebooks[1][None, :, :]).reshape(k * k, -1)
    best = ((z[:, None, :] - every[None]) ** 2).sum(axis=2).min(axis=1)
    assert np.allclose(sq_error(q, z, codes), best, rtol=1e-5, atol=1e-6)
    greedy_codes, _ = encode(quantizer(3, levels=2, k=k), x)
    assert (greedy_codes != codes).any(axis=1).sum() > 10  # the search changes something here


@pytest.mark.parametrize("shape", [(37, 1024), (5, 4096), (64, 48), (3, 130)])
def test_smallest_is_value_then_index_order_even_with_ties(shape: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(shape[1])
    values = torch.randint(0, 7, shape, generator=g).float()  # many exact ties
    count = 5
    want = torch.sort(values, dim=1, stable=True).indices[:, :count]  # stable: ties to the lower index
    assert torch.equal(smallest(values.clone(), count), want)


def test_ties_go_to_the_lower_code_at_every_level() -> None:
    rng = np.random.default_rng(5)
    half = rng.standard_normal((2, 8, 6))
    books = np.concatenate([half, half], axis=1)  # code c + 8 is code c: every choice is a tie
    q = ScaleQuantizer(np.zeros(6), np.eye(6), books, 2, beam=4)
    codes, _ = encode(q, rng.standard_normal((200, 6)))
    assert codes.max() < 8


def test_a_rows_codes_do_not_depend_on_the_other_rows_of_the_batch() -> None:
    q = quantizer(6, levels=4, k=64, d=8, beam=5)
    x = np.random.default_rng(7).standard_normal((97, 8))
    x[10] = x[11]  # equal rows, exact ties among themselves
    x[12] = 0.0
    whole, _ = encode(q, x)
    for size in (1, 2, 13, 50):
        parts = np.concatenate([encode(q, x[i : i + size])[0] for i in range(0, len(x), size)])
        assert np.array_equal(parts, whole), size
    order = np.random.default_rng(8).permutation(len(x))
    assert np.array_equal(encode(q, x[order])[0], whole[order])


def test_video_frames_get_the_same_codes_alone_or_batched_with_other_cameras() -> None:
    cfg = TokenizerConfig(device="cpu", video=VideoConfig(fine=VideoRVQConfig(beam=3), coarse=CoarseRVQConfig(beam=4)))
    video = Tokenizers.from_config(cfg).video
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.rocket(), skimage.data.coffee()]
    images = np.stack([to_model_image(p, 224, "crop") for p in photos])
    batched = video.encode(images)
    for i in range(len(images)):
        one = video.encode(images[i : i + 1])
        for scale in ("fine", "coarse"):
            assert np.array_equal(batched.codes[scale][i], one.codes[scale][0]), (scale, i)


def test_a_shed_frame_gets_the_beams_best_codes_at_the_depth_made() -> None:
    """``levels=`` fewer than the depth: the search runs over the levels made, so the codes are what a
    quantizer of that depth gives (not the full-depth codes cut), never worse than greedy there."""
    full, two = quantizer(9, levels=4, k=32, beam=4), quantizer(9, levels=2, k=32, beam=4)
    x = np.random.default_rng(10).standard_normal((200, 6))
    shed, z = encode(full, x, levels=2)
    assert shed.shape == (200, 2)
    assert np.array_equal(shed, encode(two, x)[0])
    greedy, _ = encode(quantizer(9, levels=4, k=32), x, levels=2)
    assert (sq_error(full, z, shed) <= sq_error(full, z, greedy) + 1e-5).all()
    assert (encode(full, x)[0][:, :2] != shed).any()  # not a prefix of the full-depth codes here


def test_the_tokenizer_sheds_fine_levels_with_the_beam_over_the_levels_made() -> None:
    cfg = TokenizerConfig(device="cpu", video=VideoConfig(fine=VideoRVQConfig(beam=3)))
    video = Tokenizers.from_config(cfg).video
    two = Tokenizers.from_config(TokenizerConfig(
        device="cpu", video=VideoConfig(fine=VideoRVQConfig(levels=2, beam=3)))).video
    images = np.stack([to_model_image(p, 224, "crop") for p in (skimage.data.astronaut(), skimage.data.coffee())] * 2)
    out = video.encode(images, fine_levels=[4, 2, 0, 2])
    full = video.encode(images)
    assert np.array_equal(out.codes["fine"][0], full.codes["fine"][0])
    for i in (1, 3):
        assert np.array_equal(out.codes["fine"][i, :, :2], two.encode(images[i : i + 1]).codes["fine"][0])
        assert not out.codes["fine"][i, :, 2:].any()
    assert not out.codes["fine"][2].any()
    assert np.array_equal(out.codes["coarse"], full.codes["coarse"])


def test_a_catch_up_batch_is_encoded_as_with_beam_1() -> None:
    """``greedy=True`` (an overloaded daemon's catch-up batches): every scale's codes are those of a
    tokenizer configured with ``beam: 1``, whatever the configured beams; the fine levels still as planned."""
    beams = Tokenizers.from_config(TokenizerConfig(
        device="cpu", video=VideoConfig(fine=VideoRVQConfig(beam=3), coarse=CoarseRVQConfig(beam=4)))).video
    greedy = Tokenizers.from_config(TokenizerConfig(
        device="cpu", video=VideoConfig(fine=VideoRVQConfig(beam=1), coarse=CoarseRVQConfig(beam=1)))).video
    images = np.stack([to_model_image(p, 224, "crop") for p in (skimage.data.astronaut(), skimage.data.coffee())])
    for plan in (None, [0, 0], [4, 2]):
        got, want = beams.encode(images, fine_levels=plan, greedy=True), greedy.encode(images, fine_levels=plan)
        for scale in ("fine", "coarse"):
            assert np.array_equal(got.codes[scale], want.codes[scale]), (plan, scale)
    assert not np.array_equal(beams.encode(images).codes["coarse"], greedy.encode(images).codes["coarse"])


def test_a_catch_up_batchs_packets_carry_greedy_where_the_scale_has_a_beam() -> None:
    """Flag.GREEDY tells a consumer which packets an offline run could have coded otherwise: the scales
    encoded greedily although configured with a beam, nothing else."""
    tok = Tokenizers.from_config(TokenizerConfig(device="cpu", video=VideoConfig(coarse=CoarseRVQConfig(beam=4)))).video
    images = np.stack([to_model_image(p, 224, "crop") for p in (skimage.data.astronaut(), skimage.data.coffee())])
    stream = tok.stream("cam")
    for greedy, plan, flagged in ((True, [0, 0], {(Scale.COARSE, 0), (Scale.COARSE, 1)}), (False, None, set()),
                                  (True, [4, 4], {(Scale.COARSE, 4), (Scale.COARSE, 5)})):
        codes = tok.encode(images, fine_levels=plan, greedy=greedy)
        assert codes.greedy == (("coarse",) if greedy else ())  # fine's beam is 1: its greedy codes are its codes
        seq0 = stream.state.seq
        packets = [p for i in range(2)
                   for p in stream.packets(images[i], codes, i, (seq0 + i) * 10, (seq0 + i + 1) * 10)]
        assert {(p.scale, p.seq) for p in packets if p.flags & Flag.GREEDY} == flagged



def test_beam_defaults_and_partial_sections(tmp_path: Path) -> None:
    cfg = load_config(None).tokenizer.video
    assert (cfg.fine.beam, cfg.coarse.beam, cfg.coarse.levels) == (1, 4, 2)
    p = tmp_path / "c.yaml"
    p.write_text("tokenizer:\n  video:\n    coarse: {beam: 1}\n    fine: {beam: 8}\n")
    cfg = load_config(p).tokenizer.video
    assert (cfg.fine.beam, cfg.fine.levels, cfg.coarse.beam, cfg.coarse.levels) == (8, 4, 1, 2)
    assert Tokenizers.from_config(load_config(p).tokenizer).video.quantizers["coarse"].beam == 1
    # a caller's plain RVQConfig (the model the video scales had before) keeps the scale's default beam
    assert VideoConfig(coarse=RVQConfig(levels=1)).coarse.beam == 4


@pytest.mark.parametrize(("text", "where"), [
    ("    coarse: {beam: 0}\n", r":4: tokenizer\.video\.coarse\.beam: .*greater than or equal to 1"),
    ("    fine:\n      beam: 33\n", r":5: tokenizer\.video\.fine\.beam: .*less than or equal to 32"),
    ("    fine: {beam: two}\n", r":4: tokenizer\.video\.fine\.beam: "),
])
def test_beam_bounds_are_refused_in_one_line_exit_78(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      text: str, where: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("tokenizer:\n  video:\n    size: 224\n" + text)
    with pytest.raises(ConfigError, match=where):
        load_config(p)
    assert main(["check-config", "-c", str(p)]) == 78
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "beam" in err and "Traceback" not in err


def test_audio_scales_have_no_beam(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("tokenizer:\n  audio:\n    fine: {beam: 2}\n")
    with pytest.raises(ConfigError, match=r":3: tokenizer\.audio\.fine\.beam: unknown key"):
        load_config(p)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), beam=st.integers(2, 9), levels=st.integers(1, 4), rows=st.integers(1, 60),
       k=st.sampled_from([16, 64, 130, 256]))
def test_the_cpu_kernel_finds_what_the_tensor_formulation_finds(seed: int, beam: int, levels: int, rows: int,
                                                               k: int) -> None:
    """The CPU encodes with the jitted kernel (``rvq_beam``); other devices with :func:`beam_codes`, the
    tensor formulation of the same search. Run both on the CPU: the same codes, but where two sums
    tie within float32 rounding (then the same error)."""
    q = quantizer(seed, levels, k=k, beam=beam)
    x = torch.from_numpy(np.random.default_rng(seed + 2).standard_normal((rows, 6)).astype(np.float32))
    p = q.torch_params(x.device, x.dtype, 1.0)
    z = torch.addmm(p.bias, x, p.weight)
    kernel, tensor = q.encode_torch(x)[0].numpy(), beam_codes(p, z, levels, beam).numpy()
    zd = z.double().numpy()
    same = (kernel == tensor).all(axis=1)
    assert np.allclose(sq_error(q, zd, kernel)[~same], sq_error(q, zd, tensor)[~same], rtol=1e-5, atol=1e-6)
    assert same.mean() >= 0.9



def test_zero_and_repeated_codewords_give_the_tensor_formulations_sums() -> None:
    """Dead codewords at zero (an extension that changes nothing: a score of exactly 0, right at the
    kept sums' errors) and repeated ones (exact ties), with rows of zeros among the input."""
    rng = np.random.default_rng(11)
    books = rng.standard_normal((3, 32, 6)) * np.array([1.0, 0.5, 0.25])[:, None, None]
    books[:, :4] = 0.0
    books[:, 20:24] = books[:, 8:12]
    q = ScaleQuantizer(np.zeros(6), np.eye(6), books, 3, beam=4)
    x = rng.standard_normal((300, 6)).astype(np.float32)
    x[::7] = 0.0
    x[1::7] = books[0, 8] + books[1, 9]  # exactly a two-level sum
    xt = torch.from_numpy(x)
    p = q.torch_params(xt.device, xt.dtype, 1.0)
    z = torch.addmm(p.bias, xt, p.weight)
    kernel, tensor = q.encode_torch(xt)[0].numpy(), beam_codes(p, z, 3, 4).numpy()
    zd = z.double().numpy()
    assert np.allclose(sq_error(q, zd, kernel), sq_error(q, zd, tensor), rtol=1e-5, atol=1e-6)
    assert (kernel == tensor).all(axis=1).mean() >= 0.9
    assert not kernel[::7].any()  # zero rows: the first zero codeword at every level


def _rules(books: np.ndarray, z: np.ndarray, beam: int) -> np.ndarray:
    """The documented search in exact integer arithmetic, one row at a time: the ``beam`` best sums per
    level by (error, kept-sum index * K + code), the greedy path's best extension in the last place
    when it falls out, the best sum at the last level."""
    levels, k, _ = books.shape
    out = []
    for row in z:
        kept: list[tuple[int, tuple[int, ...]]] = [(0, ())]
        greedy = 0
        for lv in range(levels):
            cands = []
            for b, (_, codes) in enumerate(kept):
                r = row - sum((books[j][codes[j]] for j in range(lv)), np.zeros_like(row))
                cands += [(int(((r - books[lv][c]) ** 2).sum()), b * k + c, (*codes, c)) for c in range(k)]
            cands.sort(key=lambda t: (t[0], t[1]))
            keep = 1 if lv + 1 == levels else min(beam, len(kept) * k)
            g = min((t for t in cands if t[1] // k == greedy), key=lambda t: (t[0], t[1]))
            sel = cands[:keep]
            if keep > 1:
                if g not in sel:
                    sel[-1] = g
                greedy = sel.index(g)
            kept = [(t[0], t[2]) for t in sel]
        out.append(kept[0][1])
    return np.array(out)


@pytest.mark.parametrize("seed", range(12))
def test_the_kernel_and_the_tensor_formulation_follow_the_rules_exactly(seed: int) -> None:
    """Small integers: every float32 sum is exact and ties are everywhere, so the selection rules (ties
    to the lower index, the greedy path kept) are pinned row for row, not up to rounding."""
    rng = np.random.default_rng(seed)
    levels, k, beam = int(rng.integers(2, 4)), int(rng.choice([3, 5, 8, 70])), int(rng.integers(2, 7))
    books = rng.integers(-2, 3, size=(levels, k, 3)).astype(np.float64)
    z = rng.integers(-4, 5, size=(8, 3))
    q = ScaleQuantizer(np.zeros(3), np.eye(3), books, levels, beam=beam)
    x = torch.from_numpy(z.astype(np.float32))
    p = q.torch_params(x.device, x.dtype, 1.0)
    want = _rules(books.astype(np.int64), z, beam)
    assert np.array_equal(q.encode_torch(x)[0].numpy(), want)
    assert np.array_equal(beam_codes(p, torch.addmm(p.bias, x, p.weight), levels, beam).numpy(), want)


def test_a_row_of_nan_gets_the_greedy_encoders_codes_whatever_came_before() -> None:
    q = quantizer(12, levels=3, k=16, beam=4)
    x = np.random.default_rng(13).standard_normal((5, 6)).astype(np.float32)
    x[2] = np.nan
    codes = q.encode_torch(torch.from_numpy(x))[0].numpy()
    assert not codes[2].any()
    assert np.array_equal(codes[2], quantizer(12, levels=3, k=16).encode_torch(torch.from_numpy(x[2:3]))[0].numpy()[0])


def test_large_codebooks_and_half_precision_take_the_tensor_formulation() -> None:
    """The kernel's Gram tables grow as K^2 per pair of levels: above 64 MiB (a 4096-code, 2-level
    set: exactly 64 MiB, kept; 3 levels: 192 MiB) the search runs as tensor operations, as it does
    for dtypes the kernel does not take. Same codes either way."""
    rng = np.random.default_rng(14)
    for levels, kernel in ((2, True), (3, False)):
        q = ScaleQuantizer(np.zeros(4), np.eye(4), rng.standard_normal((levels, 4096, 4)), levels, beam=3)
        assert (q._gram_bytes() <= rvq.GRAM_LIMIT_BYTES) == kernel
        x = torch.from_numpy(rng.standard_normal((20, 4)).astype(np.float32))
        p = q.torch_params(x.device, x.dtype, 1.0)
        want = beam_codes(p, torch.addmm(p.bias, x, p.weight), levels, 3)
        assert torch.equal(q.encode_torch(x)[0], want)
        assert (q._grams is not None) == kernel
    half = quantizer(15, levels=3, k=16, beam=4)
    x16 = torch.from_numpy(np.random.default_rng(16).standard_normal((9, 6))).to(torch.bfloat16)
    assert half.encode_torch(x16)[0].shape == (9, 3)


def test_one_level_with_a_beam_is_not_flagged_greedy() -> None:
    """A beam over one level finds the nearest code, as greedy encoding does: a catch-up batch changes
    nothing there, so nothing is flagged (nor booked as degraded: the same ``searches`` property)."""
    tok = Tokenizers.from_config(TokenizerConfig(
        device="cpu", video=VideoConfig(coarse=CoarseRVQConfig(levels=1, beam=4)))).video
    assert not tok.quantizers["coarse"].searches and tok.quantizers["coarse"].beam == 4
    images = np.stack([to_model_image(skimage.data.astronaut(), 224, "crop")])
    codes = tok.encode(images, fine_levels=[0], greedy=True)
    assert codes.greedy == ()
    assert np.array_equal(codes.codes["coarse"], tok.encode(images).codes["coarse"])
