"""Microphone capture with sounddevice (PortAudio), stamped on the monotonic clock from the ADC time.

PortAudio calls :meth:`MicSource._callback` from its own thread for every block. The callback only
copies the block, computes its time and calls :meth:`Handoff.put` (a short lock, drop-oldest): it
never waits and no queue grows without bound. A supervising thread opens the stream, watches it
(a stream that stops, or no callback for ``stall_timeout_s``, means the device is gone) and
reopens it with the shared capped backoff.

**Timestamps.** ``media_ns`` is the time of the block's first sample on the monotonic clock, on
a timeline that stays continuous while no sample is lost (:mod:`livetok.streams.timeline`): the
first block is stamped with PortAudio's ADC time (``time.inputBufferAdcTime``), every later one
exactly one block duration after the previous. PortAudio's stream clock is *not* the monotonic
clock on Linux: Debian 12's libportaudio2 (19.6, ALSA host API) reads ``CLOCK_REALTIME``
(``InputStream.time`` equals ``time.time()`` to ~10 µs; checked in tests/test_streams_mic.py). So
each callback measures the offset ``monotonic_ns() - currentTime`` and applies it to the ADC time;
a minimum filter keeps the callback's own scheduling delay out of the offset, and a step of the
wall clock (NTP) is followed at once. A block's first sample cannot have been captured later than
one block before its callback: an ADC time later than that is impossible and, like a missing one
(0), is replaced by that bound less a margin (see timeline.py). Lost samples (an
``input_overflow``, or a step of more than ``jump_ms`` in how far arrivals lag the timeline)
restart the timeline: that block is flagged DISCONTINUITY.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sounddevice as sd

from livetok.errors import MediaError
from livetok.runtime.backoff import BackoffPolicy
from livetok.streams.handoff import Handoff
from livetok.streams.timeline import SampleTimeline
from livetok.streams.types import AudioCapture, SourceStats
from livetok.streams.worker import Outcome, SourceThread, Stall

NS = 1_000_000_000
_STEP_NS = 20_000_000  # an offset change beyond this is a clock step, not scheduling jitter (ns)
_POLL_S = 0.1  # how often the supervisor looks at the stream (s)

# PortAudio lists devices once, when it is initialised. Re-initialising (to see a device plugged in
# later) would break every open stream, so it is done only while no MicSource has one open.
_pa_lock = threading.Lock()
_pa_open_streams = 0


@dataclass(frozen=True)
class MicOptions:
    """Which input device, and how to read it."""

    device: str | int | None = None  # PortAudio device: index, or (part of) its name; None: the default input
    rate: int | None = None  # sample rate (Hz); None: the device's default rate
    channels: int = 1  # channels to capture (count)
    block_ms: float = 20.0  # samples per callback, as a duration (ms); 0: PortAudio's choice (variable)
    # PortAudio's suggested latency: "low", "high" or seconds. "high" by default: a deeper device
    # buffer overflows less, and the ADC timestamps already remove the latency from media time.
    latency: str | float = "high"
    open_timeout_s: float = 5.0  # the first block must come within this long after opening (s)
    stall_timeout_s: float = 3.0  # no callback for this long: the device is gone, reopen it (s)
    jump_ms: float = 100.0  # arrivals lagging the sample count this much more than before: samples lost (ms)
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)

    def __post_init__(self) -> None:
        if self.channels < 1 or self.block_ms < 0 or min(self.open_timeout_s, self.stall_timeout_s, self.jump_ms) <= 0:
            raise ValueError("channels >= 1, block_ms >= 0 and positive timeouts and jump_ms are required")


def resolve_input_device(device: str | int | None) -> tuple[int, dict[str, Any]]:
    """PortAudio index and description of an input device; MediaError naming it when there is none."""
    label = "the default input device" if device is None else f"audio device {device!r}"
    try:
        info = sd.query_devices(device, kind="input")
    except (ValueError, sd.PortAudioError) as err:
        # One line: sounddevice lists every candidate on its own line when a name is ambiguous.
        raise MediaError(f"{label}: {'; '.join(str(err).splitlines())}") from err
    if not isinstance(info, dict) or info.get("max_input_channels", 0) < 1:
        raise MediaError(f"{label}: not an input device")
    return int(info["index"]), info


def reinitialize_portaudio() -> bool:
    """Let PortAudio list devices again (hot-plugged ones); only while no MicSource stream is open."""
    with _pa_lock:
        if _pa_open_streams:
            return False
        # sounddevice has no public call for this; _terminate/_initialize are its own init pair.
        sd._terminate()
        sd._initialize()
        return True


class MicSource(SourceThread):
    """Captures one PortAudio input device into an audio Handoff."""

    def __init__(self, name: str, options: MicOptions, audio: Handoff[AudioCapture], stats: SourceStats) -> None:
        super().__init__(name, stats, options.backoff)
        self.options = options
        self._audio = audio
        self.rate = 0  # the open stream's rate (Hz)
        self._last_callback_ns = 0  # monotonic ns of the last callback; 0: none since the stream opened
        self._offset_ns: int | None = None  # monotonic - PortAudio stream time (ns), filtered
        self._timeline = SampleTimeline(round(options.jump_ms * 1_000_000))
        self._label = f"audio device {options.device!r}"  # the opened device's name once known

    def _open(self) -> sd.InputStream:
        global _pa_open_streams
        o = self.options
        try:
            _index, info = resolve_input_device(o.device)
        except MediaError:
            if not reinitialize_portaudio():  # a device that came (back) after PortAudio listed devices
                raise
            _index, info = resolve_input_device(o.device)
        rate = o.rate or int(info["default_samplerate"])
        blocksize = round(rate * o.block_ms / 1000)
        self._label = f"audio device {info['name']!r}"
        self.rate = rate  # before the stream exists: its first callback needs it
        with _pa_lock:
            stream: sd.InputStream | None = None
            try:
                stream = sd.InputStream(device=_index, samplerate=rate, channels=o.channels, dtype="float32",
                                        blocksize=blocksize, latency=o.latency, callback=self._callback)
                stream.start()
            except (sd.PortAudioError, ValueError) as err:
                if stream is not None:
                    stream.close(ignore_errors=True)
                raise MediaError(f"{self._label}: cannot capture {o.channels} ch at {rate} Hz ({err})") from err
            _pa_open_streams += 1
        return stream

    def _session(self) -> Outcome:
        global _pa_open_streams
        self._offset_ns = None
        self._timeline.reset()
        self._last_callback_ns = 0
        stream = self._open()
        opened_ns = time.monotonic_ns()
        self.stats.connects += 1
        if self.stats.connects > 1:
            self.stats.gaps += 1
        try:
            while not self._wait(_POLL_S):
                if not stream.active:
                    return Outcome.LOST  # PortAudio ended the stream: the device failed or went away
                last = self._last_callback_ns
                # Starting takes longer than a block (PulseAudio: about a second): a separate limit.
                limit_s = self.options.stall_timeout_s if last else self.options.open_timeout_s
                silent_ns = time.monotonic_ns() - (last or opened_ns)
                if silent_ns > limit_s * NS:
                    raise Stall(f"{self._label}: no audio for {silent_ns / NS:.1f} s")
            return Outcome.FINISHED
        finally:
            with _pa_lock:
                try:
                    stream.abort(ignore_errors=True)
                    stream.close(ignore_errors=True)
                finally:
                    _pa_open_streams -= 1

    # -- PortAudio's thread --------------------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, t: Any, status: sd.CallbackFlags) -> None:
        try:
            self._capture(indata, frames, t, status)
        except Exception as err:  # an exception would abort PortAudio's stream: count it, keep capturing
            self.stats.errors += 1
            self.stats.last_error = f"audio callback: {err}"

    def _capture(self, indata: np.ndarray, frames: int, t: Any, status: sd.CallbackFlags) -> None:
        arrival = time.monotonic_ns()
        self._last_callback_ns = arrival
        overflow = bool(status.input_overflow)
        if overflow:
            self.stats.overflows += 1
        adc = self._adc_ns(t.inputBufferAdcTime, t.currentTime, arrival)
        restarts = self._timeline.restarts
        media, flag = self._timeline.stamp(frames, self.rate, adc, arrival, overflow)
        if self._timeline.restarts != restarts:
            self.stats.gaps += 1  # lost samples: this block does not follow the previous one
        # [C, N], always a copy (ascontiguousarray would return a view for one channel): PortAudio
        # reuses indata's buffer once the callback returns.
        samples = np.array(indata.T, dtype=np.float32, order="C", copy=True)
        cap = AudioCapture(source=self.name, samples=samples, rate=self.rate, media_ns=media, arrival_ns=arrival,
                           discontinuity=flag, overflow=overflow)
        self.stats.blocks += 1
        if not self._audio.put(cap):
            self.stats.dropped_blocks += 1
        self._delivered()

    def _adc_ns(self, adc_s: float, current_s: float, arrival_ns: int) -> int | None:
        """ADC time on the monotonic clock (ns), or None when PortAudio gives none."""
        if adc_s <= 0 or current_s <= 0:
            return None
        sample = arrival_ns - int(current_s * NS)  # true offset + this callback's scheduling delay
        off = self._offset_ns
        if off is None or sample < off or sample - off > _STEP_NS:
            off = sample  # less delay than seen so far, or the PortAudio clock stepped
        else:
            off += (sample - off) // 64  # follow slow drift between the two clocks
        self._offset_ns = off
        return int(adc_s * NS) + off
