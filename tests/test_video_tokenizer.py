"""Video tokenizer: frame conversion, batching, delta mode and the numba change detector."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest
import skimage

from livetok.config.tokenizer import DeltaConfig, VideoConfig
from livetok.media.decode import decode
from livetok.media.frames import PAD_LEVEL, to_model_image
from livetok.tokenizers import TokenizerConfig, Tokenizers
from livetok.tokenizers.patch_delta import patch_change, patch_change_numpy
from livetok.wire import Flag, Scale

PHOTO = skimage.data.astronaut()  # [512, 512, 3]


def frames_of(path: Path) -> list[np.ndarray]:
    return [to_model_image(mf.frame, 224, "crop") for mf in decode(path) if mf.kind == "video"]


def test_aspect_modes_on_a_wide_frame() -> None:
    wide = np.zeros((100, 400, 3), np.uint8)
    wide[:, 175:225] = 255  # a white centre band, 50 px of the middle 100
    crop = to_model_image(wide, 224, "crop")
    pad = to_model_image(wide, 224, "pad")
    stretch = to_model_image(wide, 224, "stretch")
    assert crop.shape == pad.shape == stretch.shape == (224, 224, 3)
    assert crop[112, 112].min() > 200 and crop[112, 5].max() < 30  # centre kept, scaled 2.24x
    assert (pad[:10] == PAD_LEVEL).all() and (pad[-10:] == PAD_LEVEL).all()  # letterboxed
    assert stretch[112, 112].min() > 200 and stretch[:, 100:124].min() > 200 and stretch[:, 80].max() < 30


@pytest.mark.parametrize("fmt", ["yuv420p", "nv12", "gray", "rgba", "bgr24", "yuv444p"])
def test_any_pixel_format(fmt: str) -> None:
    frame = av.VideoFrame.from_ndarray(PHOTO, format="rgb24").reformat(format=fmt)
    img = to_model_image(frame, 224, "crop")
    ref = to_model_image(PHOTO, 224, "crop").astype(int)
    assert img.shape == (224, 224, 3)
    tol = 60 if fmt == "gray" else 12  # grey loses colour; chroma subsampling blurs edges
    assert np.abs(img.astype(int) - ref).mean() < tol


def test_batch_equals_single_frames(toks: Tokenizers, av_clip: Path) -> None:
    images = np.stack(frames_of(av_clip)[:8])
    batched = toks.video.encode(images)
    for i in range(images.shape[0]):
        one = toks.video.encode(images[i : i + 1])
        for scale in ("fine", "coarse"):
            assert np.array_equal(batched.codes[scale][i], one.codes[scale][0])
    assert batched.codes["fine"].shape == (8, 196, 4) and batched.codes["coarse"].shape == (8, 49, 2)


def test_reconstruction_improves_with_depth(toks: Tokenizers) -> None:
    img = to_model_image(PHOTO, 224, "crop")
    codes = toks.video.encode(img[None]).codes
    for scale in ("fine", "coarse"):
        mse = [np.mean((toks.video.reconstruct(codes[scale][0], scale, d).astype(float) - img) ** 2)
               for d in range(1, codes[scale].shape[2] + 1)]
        assert all(a > b for a, b in itertools.pairwise(mse)), (scale, mse)


def test_vectors_are_float16_with_grid(toks: Tokenizers) -> None:
    img = to_model_image(PHOTO, 224, "crop")
    bc = toks.video.encode(img[None], vectors=True)
    assert bc.vectors["fine"] is not None and bc.vectors["fine"].dtype == np.float16
    assert bc.vectors["fine"].shape == (1, 196, toks.video.quantizers["fine"].dim)
    stream = toks.video.stream("cam")
    fine, coarse = stream.packets(img, bc, 0, 0, 40_000_000)
    assert fine.grid == (14, 14) and coarse.grid == (7, 7) and fine.vectors is not None


def delta_tokenizers(threshold: float = 3.0, keyframe_s: float = 1.0) -> Tokenizers:
    cfg = TokenizerConfig(device="cpu", video=VideoConfig(
        delta=DeltaConfig(enabled=True, threshold=threshold, keyframe_interval_s=keyframe_s)))
    return Tokenizers.from_config(cfg)


def test_delta_sends_only_changed_patches_and_rebuilds() -> None:
    toks = delta_tokenizers()
    base = to_model_image(PHOTO, 224, "crop")
    frames = []
    for i in range(6):
        f = base.copy()
        f[32:48, 64 + 16 * i : 80 + 16 * i] = 255  # a white 16x16 square stepping right
        frames.append(f)
    stream = toks.video.stream("cam")
    codes = toks.video.encode(np.stack(frames))
    grid = np.zeros((196, 4), np.uint16)
    for i, f in enumerate(frames):
        fine, coarse = stream.packets(f, codes, i, i * 40_000_000, (i + 1) * 40_000_000)
        assert fine.scale == Scale.FINE and coarse.scale == Scale.COARSE
        if i == 0:
            assert fine.flags & Flag.KEYFRAME and fine.positions is None
            grid[:] = fine.codes
            continue
        assert fine.flags & Flag.DELTA and fine.positions is not None
        # The square left one patch and entered the next: exactly two fine patches changed.
        assert sorted(fine.positions.tolist()) == [2 * 14 + 4 + i - 1, 2 * 14 + 4 + i]
        grid[fine.positions] = fine.codes
        assert np.array_equal(grid, codes.codes["fine"][i])  # the consumer's grid is the full one


def test_delta_keyframe_interval() -> None:
    toks = delta_tokenizers(keyframe_s=0.1)
    img = to_model_image(PHOTO, 224, "crop")
    codes = toks.video.encode(img[None])
    stream = toks.video.stream("cam")
    kinds = []
    for i in range(8):  # 40 ms frames: keyframes at 0, 120 ms (>= 100 ms), 240 ms
        fine, _ = stream.packets(img, codes, 0, i * 40_000_000, (i + 1) * 40_000_000)
        kinds.append("K" if fine.flags & Flag.KEYFRAME else str(fine.codes.shape[0]))
    assert kinds == ["K", "0", "0", "K", "0", "0", "K", "0"]
    stream.mark_gap()
    fine, _ = stream.packets(img, codes, 0, 400_000_000, 440_000_000)
    assert fine.flags & Flag.KEYFRAME and fine.flags & Flag.GAP  # after a gap the consumer needs a full grid


def test_numba_change_detector_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    b = a.copy()
    b[100:140, 30:90] = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    for patch in (16, 32):
        assert np.allclose(patch_change(a, b, patch), patch_change_numpy(a, b, patch))
    assert patch_change(a, a, 16).max() == 0


def test_conversion_reuses_one_scaler_per_thread_and_gives_fresh_reformat_bytes() -> None:
    """The converter keeps one swscale context per thread (rebuilt when the input changes): frames of
    changing sizes and formats through one thread, and through another, give exactly what a fresh
    ``frame.reformat`` gives."""
    from livetok.media import frames

    rng = np.random.default_rng(7)
    inputs = []
    for (h, w), fmt in itertools.product([(720, 1280), (480, 640), (120, 160)], ["yuv420p", "rgb24", "nv12"]):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        inputs.append(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt))
    inputs += inputs[::-1]  # back to sizes seen before: the context must be rebuilt each time

    def fresh(frame: av.VideoFrame, aspect: str) -> np.ndarray:
        scale = 224 / min(frame.width, frame.height)
        sw, sh = max(224, round(frame.width * scale)), max(224, round(frame.height * scale))
        if aspect == "stretch":
            sw = sh = 224
        img = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="AREA").to_ndarray()
        y, x = (sh - 224) // 2, (sw - 224) // 2
        return img[y : y + 224, x : x + 224]

    mine = frames.reformatter()
    assert frames.reformatter() is mine  # kept on this thread
    for frame, aspect in zip(inputs, itertools.cycle(["crop", "stretch"]), strict=False):
        assert np.array_equal(to_model_image(frame, 224, aspect), fresh(frame, aspect)), (frame, aspect)
    other: list[object] = []

    def convert_elsewhere() -> None:
        other.append(frames.reformatter())
        other.extend(np.array_equal(to_model_image(f, 224, "crop"), fresh(f, "crop")) for f in inputs)

    import threading

    t = threading.Thread(target=convert_elsewhere)
    t.start()
    t.join()
    assert other[0] is not mine and all(other[1:]) and len(other) == len(inputs) + 1


@pytest.mark.parametrize("delta", [False, True])
def test_encode_threads_give_the_packets_of_the_calling_thread(av_clip: Path, delta: bool) -> None:
    """``tokenize_file(encoders=2)`` (what `livetok tokenize` does on a CPU) encodes video batches in
    two threads while the calling one goes on: every stream's packets are those of encoding on the
    calling thread, in delta mode too (its reference moves frame by frame, in order)."""
    from livetok.commands.tokenize import TokenizeReport, tokenize_file

    cfg = TokenizerConfig(video=VideoConfig(batch_size=3, delta=DeltaConfig(enabled=delta, threshold=2.0)))
    toks = Tokenizers.from_config(cfg)

    def run(encoders: int) -> list[tuple[object, ...]]:
        report = TokenizeReport()
        packets = tokenize_file(av_clip, toks, "clip", None, report, encoders)
        assert report.frames["video"] == 50
        return sorted((p.modality, p.stream_name, p.seq, int(p.flags), p.start_ns, p.end_ns, p.codes.tobytes(),
                       None if p.positions is None else p.positions.tobytes()) for p in packets)

    alone = run(0)
    assert sum(1 for p in alone if p[0].name == "VIDEO") == 100  # 50 frames, fine + coarse
    if delta:
        assert any(p[7] is not None for p in alone)  # some packets carry only the changed positions
    assert run(2) == alone
