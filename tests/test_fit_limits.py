"""``livetok fit`` with too little data says how much is needed in one line; its memory is bounded
by design (bounded reservoirs of training vectors, media streamed), whatever the input length."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from mediagen import ffmpeg
from PIL import Image

from livetok.cli import main
from livetok.config.tokenizer import AudioConfig, RVQConfig, VideoConfig
from livetok.errors import MediaError
from livetok.tokenizers import TokenizerConfig
from livetok.tokenizers import fit as fit_module
from livetok.tokenizers.fit import FitOptions, Reservoir, fit, gather, vector_cap


def one_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("livetok: ")]  # not tqdm's progress bars
    assert len(lines) == 1 and lines[0].startswith("livetok: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, err)
    return lines[0]


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        ("tiny.wav", ["audio.fine", "0 training vectors", "at least 10.3 s of audio", "given: 0.01 s in 1 file)"]),
        ("one.png", ["video.fine", "at least 1 image or video frame of 32 px or more", "one.png: 1x1 px"]),
        ("wide.png", ["video.fine", "wide.png: 3000x1 px"]),
    ],
)
def test_too_little_data_is_one_line(name: str, needles: list[str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Before: tracebacks (no array to concatenate; a 0-pixel crop in PyAV)."""
    path = tmp_path / name
    if name.endswith(".wav"):
        ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=0.01", str(path))
    else:
        w, h = (1, 1) if name == "one.png" else (3000, 1)
        Image.fromarray(np.full((h, w, 3), 200, np.uint8)).save(path)
    out = tmp_path / "cb.safetensors"
    capsys.readouterr()
    code = main(["fit", str(path), "-o", str(out)])
    assert code == 66
    one_line(capsys, *needles)
    assert not out.exists()


def test_needed_amount_is_enough(tmp_path: Path) -> None:
    """The seconds of audio the message asks for do make enough training vectors."""
    cfg = TokenizerConfig(device="cpu", audio=AudioConfig(fine=RVQConfig(levels=1, codebook_size=64, dim=8),
                                                          coarse=RVQConfig(levels=1, codebook_size=64, dim=8)))
    short = tmp_path / "short.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=0.5", str(short))
    with pytest.raises(MediaError, match=r"audio\.fine: \d+ training vectors") as info:
        fit([short], cfg, FitOptions(iters=1), base=None)
    seconds = float(str(info.value).split("at least ")[1].split(" s of audio")[0])
    enough = tmp_path / "enough.wav"
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=300:sample_rate=16000:duration={seconds + 0.05}", str(enough))
    data = gather([enough], cfg, FitOptions())
    assert data.vectors["audio.coarse"].kept >= 64 and data.vectors["audio.fine"].kept >= 64


def test_reservoir_keeps_order_under_the_cap_and_a_uniform_sample_beyond() -> None:
    rng = np.random.default_rng(0)
    r = Reservoir(100, rng)
    r.add(np.arange(30).reshape(30, 1), np.arange(30) + 1000)
    r.add(np.arange(30, 60).reshape(30, 1), np.arange(30))  # keys put these first
    assert np.array_equal(r.result()[:, 0], np.r_[np.arange(30, 60), np.arange(30)])
    counts = np.zeros(10_000)
    for seed in range(200):
        r = Reservoir(100, np.random.default_rng(seed))
        for lo in range(0, 10_000, 700):
            rows = np.arange(lo, min(lo + 700, 10_000))
            r.add(rows.reshape(-1, 1), rows)
        kept = r.result()[:, 0]
        assert kept.size == 100 == r.kept and np.all(np.diff(kept) > 0)  # no duplicates, in key order
        counts[kept] += 1
    # each row kept with probability 1/100: 2 expected per row over 200 runs; halves of the stream alike
    assert abs(counts[:5000].sum() - counts[5000:].sum()) < 0.1 * counts.sum()


def test_vector_caps_bound_memory() -> None:
    opts = FitOptions()
    caps = {d: vector_cap(opts, d) for d in (160, 640, 768, 3072)}
    assert caps == {160: 200_000, 640: 156_250, 768: 130_208, 3072: 32_552}
    assert all(n * d <= opts.max_values for d, n in caps.items())


def small_cfg() -> TokenizerConfig:
    small = RVQConfig(levels=1, codebook_size=16, dim=8)
    return TokenizerConfig(device="cpu", audio=AudioConfig(fine=small, coarse=small),
                           video=VideoConfig(fine=small, coarse=small))


def traced_peak(path: Path, opts: FitOptions) -> tuple[int, dict[str, int]]:
    tracemalloc.start()
    try:
        data = gather([path], small_cfg(), opts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, {k: r.kept for k, r in data.vectors.items()}


@pytest.mark.slow
def test_gathering_memory_does_not_grow_with_the_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2 s and 16 s of 320x240 video with audio: the same caps are reached and the peak of NumPy
    memory is about the same (before: every decoded frame and every log-mel frame was kept, so the
    16 s clip took about 8 times as much)."""
    clips = {}
    for seconds in (2, 16):
        clips[seconds] = tmp_path / f"c{seconds}.mp4"
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={seconds}",
               "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds}",
               "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
               str(clips[seconds]))
    monkeypatch.setattr(fit_module, "AUDIO_BLOCK_FRAMES", 100)  # log-mel blocks of 1 s, so both clips fill them
    opts = FitOptions(crops_per_frame=1, video_frames_per_file=8, max_values=24_000)
    traced_peak(clips[2], opts)  # first use: imports, caches, filter banks
    (p2, kept2), (p16, kept16) = traced_peak(clips[2], opts), traced_peak(clips[16], opts)
    caps = {k: vector_cap(opts, d) for k, d in
            (("audio.fine", 160), ("audio.coarse", 640), ("video.fine", 768), ("video.coarse", 3072))}
    assert kept16 == caps  # the long clip fills every reservoir to its cap, and no further
    assert all(kept2[k] <= caps[k] for k in caps)
    assert p16 < 1.5 * p2, (p2, p16)
