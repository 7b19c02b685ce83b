"""Streaming audio front end: resampling to the model rate and a causal log-mel spectrogram.

Both stages keep explicit state between calls so that any chunking of the input gives the same
output as one call with the whole signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import av
import numpy as np
import torch
import torchaudio

from livetok.config.tokenizer import AudioConfig
from livetok.errors import MediaError

LOG_FLOOR = 1e-6  # added to mel power before log: keeps digital silence finite (about -13.8)


class StreamingResampler:
    """Audio of any rate, layout and sample format -> mono float32 samples at ``rate``.

    Wraps libswresample (PyAV's AudioResampler), whose filter state carries across calls. When the
    input format changes mid-stream the old resampler is flushed and a new one started.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._resampler: av.AudioResampler | None = None
        self._key: tuple[int, str, str] | None = None
        self.samples_out = 0

    def push(self, frame: av.AudioFrame) -> np.ndarray:
        """One decoded frame -> ``[n]`` float32 mono samples at the model rate (n may be 0)."""
        key = (frame.sample_rate, frame.layout.name, frame.format.name)
        out = []
        if key != self._key:
            if self._resampler is not None:
                out.append(self._drain(None))
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
            self._key = key
        frame.pts = None  # swr would otherwise try to fill pts gaps with silence or drop samples
        out.append(self._drain(frame))
        return np.concatenate(out) if len(out) > 1 else out[0]

    def push_array(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """``samples [C, N]`` float32 at ``rate`` Hz -> ``[n]`` float32 mono at the model rate."""
        if samples.ndim != 2 or samples.shape[0] not in (1, 2, 4, 6, 8):
            raise ValueError(f"expected [channels, samples] audio, got shape {samples.shape}")
        layout = {1: "mono", 2: "stereo", 4: "quad", 6: "5.1", 8: "7.1"}[samples.shape[0]]
        planar = np.ascontiguousarray(samples, dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate = rate
        return self.push(frame)

    def flush(self) -> np.ndarray:
        """Drain the filter's delay line at end of stream."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        out = self._drain(None)
        self._resampler, self._key = None, None
        return out

    def _drain(self, frame: av.AudioFrame | None) -> np.ndarray:
        assert self._resampler is not None
        try:
            frames = self._resampler.resample(frame)
        except (av.FFmpegError, ValueError) as err:
            raise MediaError(f"cannot resample audio to {self.rate} Hz: {err}") from err
        if not frames:
            return np.zeros(0, np.float32)
        out = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
        self.samples_out += out.size
        return out


@dataclass
class LogMelState:
    """Samples not yet covered by a complete frame (the frame window's overlap), and a frame count."""

    tail: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frames_out: int = 0


class StreamingLogMel:
    """Causal log-mel: frame t covers samples ``[t*hop, t*hop + win)``, no centre padding.

    ``push(samples [n]) -> frames [T, n_mels] float64``; a frame is produced as soon as its last
    sample arrives. Frames are computed row by row independently (FFT per row), so the result does
    not depend on how the input was cut.
    """

    def __init__(self, cfg: AudioConfig) -> None:
        self.win = cfg.win_length
        self.hop = cfg.hop_length
        self.n_fft = cfg.n_fft
        self.window = torch.hann_window(self.win, dtype=torch.float64).numpy()
        f_max = cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2
        self.fbanks = torchaudio.functional.melscale_fbanks(
            n_freqs=cfg.n_fft // 2 + 1, f_min=cfg.f_min, f_max=f_max, n_mels=cfg.n_mels,
            sample_rate=cfg.sample_rate, norm=None, mel_scale="htk",
        ).to(torch.float64).numpy()  # [n_freqs, n_mels]
        self.state = LogMelState()
        # frame t of a push = buf[t * hop : t * hop + win], for the first few t
        self._index = np.arange(8)[:, None] * self.hop + np.arange(self.win)[None, :]

    def reset(self) -> None:
        self.state = LogMelState()

    def push(self, samples: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self.state.tail, samples.astype(np.float64, copy=False)])
        n_frames = 0 if buf.size < self.win else (buf.size - self.win) // self.hop + 1
        if n_frames == 0:
            self.state.tail = buf
            return np.zeros((0, self.fbanks.shape[1]))
        if n_frames <= self._index.shape[0]:
            # Live pushes make one or two frames: a precomputed gather costs less than building a view.
            frames = buf[self._index[:n_frames]]
        else:
            step = buf.strides[0]
            shape, strides = (n_frames, self.win), (self.hop * step, step)
            frames = np.lib.stride_tricks.as_strided(buf, shape, strides, writeable=False)
        self.state.tail = buf[n_frames * self.hop :].copy()
        self.state.frames_out += n_frames
        return self.compute(frames)

    def compute(self, frames: np.ndarray) -> np.ndarray:
        """``frames [T, win]`` -> log-mel ``[T, n_mels]``."""
        spec = np.fft.rfft(frames * self.window, n=self.n_fft, axis=1)
        power = spec.real**2 + spec.imag**2
        return np.log(power @ self.fbanks + LOG_FLOOR)
