"""``livetok demo``: a short synthetic A/V clip, tokenized through the streaming path, reported on.

Needs no camera, microphone or broker: the clip is made with FFmpeg's lavfi sources through PyAV.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import skimage.data

from livetok.config import LivetokConfig
from livetok.errors import MediaError

SIZE, FPS, RATE = (640, 360), 25, 48000
# Plucked notes, two per second, stepping up a pentatonic-ish scale: a fundamental and an octave,
# each note decaying.
_NOTE = "262*pow(2\\,mod(floor(2*t)\\,5)*2.4/12)"
MELODY = f"0.3*(sin(2*PI*{_NOTE}*t)+0.4*sin(4*PI*{_NOTE}*t))*exp(-5*mod(t\\,0.5))"


def pan_frames(seconds: float) -> Iterator[np.ndarray]:
    """A slow pan and zoom across a natural photograph (scikit-image's coffee.png, a photo that the
    packaged codebooks were not fitted on), as ``[h, w, 3]`` RGB frames of SIZE."""
    photo = skimage.data.coffee()  # [400, 600, 3]
    ph, pw = photo.shape[:2]
    n = max(1, round(seconds * FPS))
    for i in range(n):
        t = i / max(1, n - 1)
        ch = int(ph * (0.9 - 0.3 * t))  # zoom in from 90% to 60% of the height
        cw = min(pw, ch * SIZE[0] // SIZE[1])
        y, x = int((ph - ch) * 0.5 * (1 - t)), int((pw - cw) * t)
        crop = np.ascontiguousarray(photo[y : y + ch, x : x + cw])
        yield av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(SIZE[0], SIZE[1]).to_ndarray()


def make_clip(path: Path, seconds: float) -> None:
    """A pan across a photograph and a plucked melody, as H.264 + AAC in MP4."""
    w, h = SIZE
    try:
        with (
            av.open(f"aevalsrc={MELODY}:s={RATE}:d={seconds}", format="lavfi") as asrc,
            av.open(str(path), "w") as out,
        ):
            vout = out.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "crf": "20"})
            vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
            aout = out.add_stream("aac", rate=RATE, layout="mono")
            for rgb in pan_frames(seconds):
                out.mux(vout.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            out.mux(vout.encode(None))
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=RATE, frame_size=1024)
            for aframe in asrc.decode(audio=0):
                for f in resampler.resample(aframe):
                    out.mux(aout.encode(f))
            for f in resampler.resample(None):
                out.mux(aout.encode(f))
            out.mux(aout.encode(None))
    except av.FFmpegError as err:
        raise MediaError(f"cannot make the demo clip {path}: {err}") from err


def run_demo(out_dir: Path, seconds: float) -> int:
    from livetok import probe
    from livetok.inspect_picture import inspect
    from livetok.quality import evaluate, format_report
    from livetok.tokenize_file import tokenize_files
    from livetok.tokenizers import Tokenizers

    out_dir.mkdir(parents=True, exist_ok=True)
    clip, tokens, picture = out_dir / "demo.mp4", out_dir / "demo.ltk", out_dir / "demo-inspect.png"
    size = f"{SIZE[0]}x{SIZE[1]}@{FPS}"
    print(f"livetok demo: making a {seconds:g} s {size} clip (a pan across a photo, a melody) -> {clip}")
    make_clip(clip, seconds)
    toks = Tokenizers.from_config(LivetokConfig().tokenizer)
    print(f"tokenizing through the streaming path on {toks.video.device} (codebooks {toks.codebooks.codebook_id})")
    tokenize_files([clip], toks, tokens)
    print(f"\ntoken summary ({tokens}):")
    probe.print_table(probe.probe_file(tokens), sys.stdout)
    print("\nquality report:")
    print(format_report(evaluate(clip, toks, compare=True)))
    inspect(tokens, picture, toks, clip)
    print(f"\ninspection picture: {picture}")
    return 0


__all__ = ["make_clip", "run_demo"]
