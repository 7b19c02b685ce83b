"""Decoded audio frames of any sample format and layout -> ``[C, N]`` float32 at the native rate.

libswresample (PyAV's ``AudioResampler``) does the conversion with the output rate equal to the
input rate, so it only converts the sample format and de-interleaves: no filter, no delay, one
output frame per input frame with the same sample count (checked here, not assumed).
"""

from __future__ import annotations

import av
import numpy as np

from livetok.errors import MediaError


class AudioToFloat:
    """Converts frames to planar float32; rebuilds its resampler when the input format changes."""

    def __init__(self) -> None:
        self._key: tuple[str, str, int] | None = None
        self._resampler: av.AudioResampler | None = None

    def convert(self, frame: av.AudioFrame) -> np.ndarray:
        """``[C, N]`` float32 (C channels of the frame's layout, N = frame.samples), a fresh array."""
        if frame.format.name == "fltp":
            return np.ascontiguousarray(frame.to_ndarray(), dtype=np.float32)  # vstack: already a copy
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        try:
            if key != self._key or self._resampler is None:
                self._resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
                self._key = key
            out = self._resampler.resample(frame)
        except (av.FFmpegError, ValueError) as err:
            self._key = None
            raise MediaError(f"cannot convert {frame.format.name} {frame.layout.name} audio: {err}") from err
        arrays = [o.to_ndarray() for o in out]  # vstack of the planes: fresh arrays
        samples = np.concatenate(arrays, axis=1) if arrays else np.zeros((0, 0), np.float32)
        if samples.shape[1] != frame.samples:  # a same-rate conversion must not delay samples
            raise MediaError(f"audio conversion returned {samples.shape[1]} samples for {frame.samples}")
        return np.ascontiguousarray(samples, dtype=np.float32)
