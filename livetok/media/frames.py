"""Video frames of any size and pixel format -> square RGB images at the model resolution.

Aspect ratio (``video.aspect``): ``crop`` (default, as ViT training pipelines do) scales the short
side to ``size`` and keeps the centre square, so nothing is distorted and the borders of wide frames
are not tokenized; ``pad`` scales the long side to ``size`` and letterboxes in mid-grey, keeping the
whole field of view; ``stretch`` scales each axis independently.
"""

from __future__ import annotations

import av
import numpy as np

from livetok.errors import MediaError

PAD_LEVEL = 128


def to_model_image(frame: av.VideoFrame | np.ndarray, size: int, aspect: str) -> np.ndarray:
    """A PyAV frame (any pix_fmt) or an ``[H, W, 3]`` uint8 RGB array -> ``[size, size, 3]`` uint8."""
    if isinstance(frame, np.ndarray):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, dtype=np.uint8), format="rgb24")
    w, h = frame.width, frame.height
    if w <= 0 or h <= 0:
        raise MediaError(f"video frame has no pixels ({w}x{h})")
    try:
        if aspect == "stretch":
            return _rgb(frame, size, size)
        if aspect == "crop":
            scale = size / min(w, h)
            sw, sh = max(size, round(w * scale)), max(size, round(h * scale))
            img = _rgb(frame, sw, sh)
            y, x = (sh - size) // 2, (sw - size) // 2
            return np.ascontiguousarray(img[y : y + size, x : x + size])
        scale = size / max(w, h)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        out = np.full((size, size, 3), PAD_LEVEL, np.uint8)
        y, x = (size - sh) // 2, (size - sw) // 2
        out[y : y + sh, x : x + sw] = _rgb(frame, sw, sh)
        return out
    except (av.FFmpegError, ValueError) as err:
        raise MediaError(f"cannot convert a {w}x{h} {frame.format.name} frame: {err}") from err


def _rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    # AREA averages when shrinking (no aliasing on 4K -> 224); swscale also converts the pixel format.
    out = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA")
    return out.to_ndarray()
