"""A synthetic A/V source with sync markers, made in Python: no camera, microphone or network needed.

Video: a scrolling colour pattern with a moving box (motion in every frame, never near white) at
``width x height``, ``fps``. Audio: a quiet tone. Sync markers near ``marker_interval_s``,
``2 * marker_interval_s``, ...: the first video frame at or after each of those instants is all
white (a flash), and a 1 kHz beep of 50 ms starts in the audio at that frame's time plus
``audio_offset_ms`` (to give synchronisation code a known A/V offset to find; 0: exactly together).

``media_ns`` counts from 0 with the source's own frame and sample counters (frame ``i`` at
``i * 10^9 / fps`` rounded down, sample ``n`` at ``n * 10^9 // rate``), so timestamps are exact whatever the
pacing. With ``realtime=True`` items are handed over when the monotonic clock reaches their time
(an audio block when its last sample is due, as a microphone would); ``realtime=False`` runs as
fast as the consumer takes them (with ``duration_s``, a finite test signal).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from livetok.errors import LivetokError
from livetok.runtime.backoff import BackoffPolicy
from livetok.streams.handoff import Handoff
from livetok.streams.pacing import Pacer
from livetok.streams.rate import RateGate
from livetok.streams.types import AudioCapture, SourceStats, VideoCapture
from livetok.streams.worker import Outcome, SourceThread

NS = 1_000_000_000


@dataclass(frozen=True)
class SyntheticOptions:
    """Picture, sound and markers of a synthetic source."""

    width: int = 640  # px
    height: int = 480  # px
    fps: float = 30.0  # frames per second (29.97 and the like are fine)
    rate: int = 48_000  # audio sample rate (Hz)
    channels: int = 1  # audio channels (count), all carrying the same signal
    block_ms: int = 20  # audio block duration (ms)
    tone_hz: float = 440.0  # the background tone (Hz)
    tone_level: float = 0.02  # its amplitude (full scale 1.0; 0.02 is about -34 dBFS)
    marker_interval_s: float = 2.0  # a flash + beep every this many seconds (s); 0: no markers
    beep_hz: float = 1000.0  # marker beep frequency (Hz)
    beep_ms: float = 50.0  # marker beep duration (ms)
    beep_level: float = 0.5  # marker beep amplitude
    audio_offset_ms: float = 0.0  # the beep comes this much after the flash (ms; negative: before)
    realtime: bool = True  # pace on the monotonic clock; False: as fast as the handoffs take them
    duration_s: float | None = None  # stop after this much media time (s); None: run until stop()
    token_fps: float | None = None  # the most frames per second handed over (livetok.streams.rate); None: all

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1 or self.fps <= 0 or self.rate < 1 or self.channels < 1:
            raise ValueError("width, height, fps, rate and channels must be positive")
        if self.block_ms < 1 or self.marker_interval_s < 0 or self.beep_ms <= 0:
            raise ValueError("block_ms >= 1, marker_interval_s >= 0 and beep_ms > 0 are required")
        if self.token_fps is not None and not self.token_fps > 0:
            raise ValueError("token_fps must be positive")

    def marker_ns(self, k: int) -> int:
        """Media time of marker ``k`` (1, 2, ...): its flash frame's time, the first frame at or after
        ``k * marker_interval_s`` (so the flash and the beep share one instant exactly) (ns)."""
        return self.frame_ns(self.flash_frame(k * round(self.marker_interval_s * NS)))

    def marker_times_ns(self, until_ns: int) -> list[int]:
        """Media times of the markers (flash frames; beeps start there + ``audio_offset_ms``) before ``until_ns``."""
        if not self.marker_interval_s:
            return []
        out: list[int] = []
        k = 1
        while (t := self.marker_ns(k)) < until_ns:
            out.append(t)
            k += 1
        return out

    @property
    def frame_rate(self) -> Fraction:
        """``fps`` as an exact fraction (frames/s)."""
        return Fraction(self.fps).limit_denominator(1_000_000)

    def frame_ns(self, frame_i: int) -> int:
        """Media time of frame ``frame_i`` (ns), rounded down."""
        r = self.frame_rate
        return frame_i * NS * r.denominator // r.numerator

    def flash_frame(self, marker_ns: int) -> int:
        """Index of the white frame of the marker at ``marker_ns``: the first frame at or after it."""
        r = self.frame_rate
        return -(-marker_ns * r.numerator // (NS * r.denominator))

    def beep_start_sample(self, marker_ns: int) -> int:
        """Index of the first beep sample of the marker at ``marker_ns`` (a time from ``marker_ns(k)``)."""
        return round((marker_ns + self.audio_offset_ms * 1_000_000) * self.rate / NS)


class SyntheticSource(SourceThread):
    """Generates video frames and audio blocks in its own thread (see module docstring)."""

    def __init__(
        self,
        name: str,
        options: SyntheticOptions,
        prepare: Callable[[av.VideoFrame], np.ndarray],
        video: Handoff[VideoCapture] | None,
        audio: Handoff[AudioCapture] | None,
        stats: SourceStats,
    ) -> None:
        super().__init__(name, stats, BackoffPolicy())
        self.options = options
        self._prepare = prepare
        self._video = video
        self._audio = audio
        self._pattern = _pattern(options.width, options.height)
        self._block = max(1, options.rate * options.block_ms // 1000)  # samples per block
        self._gate = RateGate(options.token_fps) if options.token_fps else None
        if self._gate is not None:
            self._gate.set_frame_ns(options.frame_ns(1))
        stats.nominal_fps = round(float(options.fps), 3)

    def _session(self) -> Outcome:
        o = self.options
        pacer = Pacer(self._stopping)
        end_ns = None if o.duration_s is None else round(o.duration_s * NS)
        frame_i = 0
        sample_i = 0
        self.stats.connects += 1
        while not self._stopping.is_set():
            video_due = o.frame_ns(frame_i) if self._video is not None else None
            audio_due = (sample_i + self._block) * NS // o.rate if self._audio is not None else None
            if video_due is not None and (audio_due is None or video_due <= audio_due):
                if end_ns is not None and video_due >= end_ns:
                    return Outcome.FINISHED
                if o.realtime and not pacer.wait(video_due):
                    break
                self._hand_video(frame_i, video_due)
                frame_i += 1
            elif audio_due is not None:
                if end_ns is not None and sample_i * NS // o.rate >= end_ns:
                    return Outcome.FINISHED
                if o.realtime and not pacer.wait(audio_due):
                    break
                self._hand_audio(sample_i)
                sample_i += self._block
            else:
                return Outcome.FINISHED  # neither video nor audio wanted
        return Outcome.FINISHED

    def _is_flash(self, frame_i: int) -> bool:
        o = self.options
        if not o.marker_interval_s:
            return False
        step = round(o.marker_interval_s * NS)
        t = o.frame_ns(frame_i)
        # The flash is the first frame at or after a marker instant: the marker lies in (t - 1 frame, t].
        k = t // step
        return k >= 1 and o.flash_frame(k * step) == frame_i

    def _picture(self, frame_i: int) -> np.ndarray:
        o = self.options
        if self._is_flash(frame_i):
            return np.full((o.height, o.width, 3), 255, np.uint8)
        t_s = o.frame_ns(frame_i) / NS
        shift = int(t_s * 120) % o.width  # scrolls 120 px/s to the left
        img = np.roll(self._pattern, -shift, axis=1)
        size = max(4, min(o.width, o.height) // 6)
        phase = abs(t_s % 2.0 - 1.0)  # the box crosses the picture in one second and back: 1 -> 0 -> 1
        x = int((o.width - size) * phase)
        y = (o.height - size) // 2
        img[y : y + size, x : x + size] = (32, 32, 160)
        return img

    def _hand_video(self, frame_i: int, media_ns: int) -> None:
        assert self._video is not None
        duration = self.options.frame_ns(1)
        if self._gate is not None:
            if not self._gate.keep(media_ns, restart=frame_i == 0):
                self.stats.skipped_by_rate += 1  # before the picture is even drawn
                self._delivered()
                return
            if not self._gate.passes_all:
                duration = self._gate.period_ns  # a token frame stands for its slot
        try:
            image = self._prepare(av.VideoFrame.from_ndarray(self._picture(frame_i), format="rgb24"))
        except LivetokError as err:
            self.stats.errors += 1
            self.stats.last_error = str(err)
            return
        cap = VideoCapture(source=self.name, image=image, media_ns=media_ns, arrival_ns=time.monotonic_ns(),
                           duration_ns=duration, discontinuity=frame_i == 0)
        self.stats.frames += 1
        if not self._video.put(cap):
            self.stats.dropped_frames += 1
        self._delivered()

    def _signal(self, start: int, n: int) -> np.ndarray:
        """Samples ``start .. start + n`` of the mono signal: the tone plus any beeps."""
        o = self.options
        idx = np.arange(start, start + n, dtype=np.float64)
        out = o.tone_level * np.sin(2 * math.pi * o.tone_hz / o.rate * idx)
        if o.marker_interval_s:
            step = round(o.marker_interval_s * NS)
            beep_len = round(o.beep_ms * o.rate / 1000)
            # Markers whose beep can overlap [start, start + n): a marker is at most one frame after
            # k * step, and its beep is shifted by the offset and lasts beep_ms.
            margin = abs(round(o.audio_offset_ms * 1e6)) + o.frame_ns(1) + round(o.beep_ms * 1e6)
            first = max(1, (start * NS // o.rate - margin) // step)
            last = ((start + n) * NS // o.rate + margin) // step + 1
            for k in range(first, last + 1):
                b0 = o.beep_start_sample(o.marker_ns(k))
                lo, hi = max(start, b0), min(start + n, b0 + beep_len)
                if lo < hi:
                    t = np.arange(lo - b0, hi - b0, dtype=np.float64)
                    out[lo - start : hi - start] += o.beep_level * np.sin(2 * math.pi * o.beep_hz / o.rate * t)
        return out.astype(np.float32)

    def _hand_audio(self, sample_i: int) -> None:
        assert self._audio is not None
        o = self.options
        mono = self._signal(sample_i, self._block)
        samples = np.ascontiguousarray(np.broadcast_to(mono, (o.channels, self._block)))
        cap = AudioCapture(source=self.name, samples=samples, rate=o.rate, media_ns=sample_i * NS // o.rate,
                           arrival_ns=time.monotonic_ns(), discontinuity=sample_i == 0)
        self.stats.blocks += 1
        if not self._audio.put(cap):
            self.stats.dropped_blocks += 1
        self._delivered()


def _pattern(width: int, height: int) -> np.ndarray:
    """A colourful, textured picture (no near-white area), periodic horizontally so it can scroll."""
    x = np.arange(width, dtype=np.float64)[None, :] * (2 * math.pi / width)
    y = np.arange(height, dtype=np.float64)[:, None] * (2 * math.pi / max(height, 1))
    r = 90 + 60 * np.sin(3 * x + 2 * y)
    g = 90 + 60 * np.sin(5 * x - 3 * y + 1.0)
    b = 90 + 60 * np.cos(2 * x + 5 * y)
    checker = ((np.arange(width)[None, :] // 16 + np.arange(height)[:, None] // 16) % 2) * 20.0
    img = np.stack([r + checker, g + checker, b + checker], axis=-1)
    return np.clip(img, 0, 230).astype(np.uint8)
