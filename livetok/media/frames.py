"""Video frames of any size and pixel format -> square RGB images at the model resolution.

Aspect ratio (``video.aspect``): ``crop`` (default, as ViT training pipelines do) scales the short
side to ``size`` and keeps the centre square, so nothing is distorted and the borders of wide frames
are not tokenized; ``pad`` scales the long side to ``size`` and letterboxes in mid-grey, keeping the
whole field of view; ``stretch`` scales each axis independently.
"""

from __future__ import annotations

import threading

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from livetok.errors import MediaError

PAD_LEVEL = 128
_local = threading.local()  # one swscale context per thread: a context is not safe to share


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


def reformatter() -> VideoReformatter:
    """This thread's reformatter, made on first use and kept: its swscale context is rebuilt only
    when the input size, format or the output changes (sws_getCachedContext)."""
    r: VideoReformatter | None = getattr(_local, "reformatter", None)
    if r is None:
        r = _local.reformatter = VideoReformatter()
    return r


def _rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    # AREA averages when shrinking (no aliasing on 4K -> 224); swscale also converts the pixel format.
    # Not frame.reformat(): it builds a new swscale context for every frame, and PyAV 18 gives each a
    # pool of threads (threads=0): a 720p frame cost 1.4-1.8 ms of CPU that way, 0.75-0.86 ms with this
    # thread's context reused on one thread, the same bytes (docs/performance.md, section 3). Frames
    # are scaled in parallel by running one converter per thread instead.
    out = reformatter().reformat(frame, width=width, height=height, format="rgb24", interpolation="AREA",
                                 threads=1)
    return out.to_ndarray()
