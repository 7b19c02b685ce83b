"""MicSource through real PortAudio: a private PulseAudio daemon's null-sink monitor is the microphone.

PortAudio lists devices and PulseAudio's client library reads PULSE_SOURCE / XDG_RUNTIME_DIR when
the stream is set up, so each capture runs in a child process (streamgen.MicChild) whose
environment points at the test's own daemon; that also lets a test freeze it (SIGSTOP).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import sounddevice as sd
from streamgen import MicChild, PulseAudio, drain, need, wait_until

from livetok.errors import MediaError
from livetok.streams.backoff import BackoffPolicy
from livetok.streams.handoff import Handoff
from livetok.streams.mic import MicOptions, MicSource, resolve_input_device
from livetok.streams.types import AudioCapture, SourceState, SourceStats

NS = 1_000_000_000
TONE_HZ = 1000.0


@pytest.fixture()
def pulse() -> Iterator[PulseAudio]:
    for tool in ("pulseaudio", "pacat", "pactl", "ffmpeg"):
        need(tool)
    # A short path: the daemon's unix socket path must fit in 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="lt-pa-"))
    pa = PulseAudio(root / "xdg", rate=16000)
    try:
        pa.start()
        yield pa
    finally:
        pa.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def children() -> Iterator[list[MicChild]]:
    made: list[MicChild] = []
    yield made
    for c in made:
        c.stop()


def test_captures_the_tone_with_monotonic_adc_times(pulse: PulseAudio, children: list[MicChild]) -> None:
    pulse.play_tone(TONE_HZ, 20)
    child = MicChild(pulse, {"rate": 16000, "channels": 1, "block_ms": 20})
    children.append(child)
    assert child.wait_for(lambda s: s["received"] >= 60, 20.0), child.status
    r = child.finish()
    assert r["stopped"] and r["state"] == "stopped"
    assert r["shapes"] == ["(1, 320)"] and r["rates"] == [16000] and r["dtypes"] == ["float32"]
    assert r["media_increasing"]
    assert abs(r["peak_hz"] - TONE_HZ) <= 5.0, r["peak_hz"]  # resolution: 16000 / samples analysed
    assert r["rms"] > 0.01
    assert r["discontinuities"] == [0]  # only the first block after the open
    # media_ns is on the monotonic clock: the first sample of a block came at least one block
    # (20 ms) before the callback handed it over, and not seconds before.
    lag = r["arrival_minus_media_ms"]
    assert min(lag) >= 20.0 - 1e-3 and max(lag) < 5000.0
    # PortAudio's own clock (Debian's libportaudio2 19.6): CLOCK_REALTIME, not CLOCK_MONOTONIC
    # (docs/sources.md); the conversion above does not depend on which.
    clock = r["clock"]
    print("PortAudio stream time - time.time():", clock.get("pa_minus_realtime_s"),
          "- time.monotonic():", clock.get("pa_minus_monotonic_s"))
    assert abs(clock["pa_minus_realtime_s"]) < 0.5 or abs(clock["pa_minus_monotonic_s"]) < 0.5


def test_full_handoff_drops_oldest_and_counts(pulse: PulseAudio, children: list[MicChild]) -> None:
    child = MicChild(pulse, {"rate": 16000, "block_ms": 5, "capacity": 1, "consume": False})
    children.append(child)
    assert child.wait_for(lambda s: s["blocks"] >= 100, 20.0), child.status
    r = child.finish()
    s = r["stats"]
    assert s["dropped_blocks"] >= 90 and s["dropped_blocks"] == r["handoff_dropped"]
    assert s["blocks"] == s["dropped_blocks"] + r["received"]  # the one left in the queue was still there
    assert r["received"] == 1


def test_frozen_capture_loses_samples_and_flags_the_gap(pulse: PulseAudio, children: list[MicChild]) -> None:
    pulse.play_tone(TONE_HZ, 20)
    child = MicChild(pulse, {"rate": 16000, "block_ms": 10, "stall_timeout_s": 5.0})
    children.append(child)
    assert child.wait_for(lambda s: s["received"] >= 50, 20.0), child.status
    child.pause(2.0)  # the process stops reading: PulseAudio's buffers overflow and drop audio
    n = child.status["received"]
    assert child.wait_for(lambda s: s["received"] >= n + 50, 20.0)
    r = child.finish()
    # PulseAudio drops silently (PortAudio sees no input_overflow through its ALSA plugin), so the
    # jump in ADC time is what reveals the loss: a DISCONTINUITY after the first block.
    assert len(r["discontinuities"]) >= 2 or r["stats"]["overflows"] >= 1, r
    assert r["stats"]["gaps"] >= 1 or r["stats"]["overflows"] >= 1
    assert r["state"] == "stopped" and r["stats"]["reconnects"] == 0


def test_device_disappears_and_comes_back(pulse: PulseAudio, children: list[MicChild]) -> None:
    pulse.play_tone(TONE_HZ, 30)
    child = MicChild(pulse, {"rate": 16000, "stall_timeout_s": 1.0})
    children.append(child)
    assert child.wait_for(lambda s: s["received"] >= 25, 20.0), child.status
    pulse.kill()  # the sound server (the device) is gone
    assert child.wait_for(lambda s: s["reconnects"] >= 1 and s["state"] in ("backoff", "connecting"), 20.0)
    assert child.status["last_error"]  # e.g. "audio device 'pulse': cannot capture ... [PaErrorCode -9993]"
    n = child.status["received"]
    pulse.start()
    pulse.play_tone(TONE_HZ, 30)
    assert child.wait_for(lambda s: s["received"] >= n + 25 and s["state"] == "running", 25.0), child.status
    r = child.finish()
    assert r["stats"]["connects"] >= 2
    assert n in r["discontinuities"]  # the first block after the reconnect
    assert r["media_increasing"]


# -- without a device -------------------------------------------------------------------------------


def test_unknown_device_is_a_one_line_media_error() -> None:
    with pytest.raises(MediaError) as info:
        resolve_input_device("no-such-microphone-xyz")
    assert "no-such-microphone-xyz" in str(info.value) and "\n" not in str(info.value)


def test_unknown_device_is_retried_and_stops_promptly() -> None:
    stats = SourceStats()
    mic = MicSource("mic", MicOptions(device="no-such-microphone-xyz",
                                      backoff=BackoffPolicy(initial_s=0.1, max_s=0.2)), Handoff(4), stats)
    mic.start()
    assert wait_until(lambda: stats.errors >= 2, 10.0)
    assert "no-such-microphone-xyz" in stats.last_error
    assert mic.alive and stats.state in (SourceState.BACKOFF, SourceState.CONNECTING)
    assert mic.stop() and stats.state is SourceState.STOPPED


def _callback(mic: MicSource, block: np.ndarray, adc_s: float, current_s: float, overflow: bool = False) -> None:
    flags = sd.CallbackFlags()
    flags.input_overflow = overflow
    mic._callback(block, block.shape[0], SimpleNamespace(inputBufferAdcTime=adc_s, currentTime=current_s), flags)


def test_callback_stamps_copies_and_counts_overflow() -> None:
    """PortAudio's input_overflow cannot be provoked through PulseAudio: the callback gets one here."""
    audio: Handoff[AudioCapture] = Handoff(8)
    stats = SourceStats()
    mic = MicSource("mic", MicOptions(), audio, stats)
    mic.rate = 16000
    block = np.linspace(-0.5, 0.5, 640, dtype=np.float32).reshape(320, 2)  # [N, C] as PortAudio gives
    # A PortAudio clock on another epoch (here: wall-clock seconds); the ADC 50 ms before "now".
    now_s = 1.8e9
    _callback(mic, block, now_s - 0.050, now_s, overflow=True)
    block[:] = 0  # PortAudio reuses its buffer: the capture must hold a copy
    _callback(mic, block, 0.0, 0.0)  # no ADC time: arrival minus one block
    a, b = drain(audio)
    assert a.samples.shape == (2, 320) and a.samples.flags.c_contiguous and a.samples.dtype == np.float32
    assert float(a.samples[1, -1]) == pytest.approx(0.5) and float(a.samples[0, 0]) == pytest.approx(-0.5)
    assert a.overflow and not b.overflow and stats.overflows == 1
    assert a.discontinuity and not b.discontinuity
    assert a.arrival_ns - a.media_ns == pytest.approx(50_000_000, abs=100_000)  # float seconds: ~0.2 µs
    assert b.arrival_ns - b.media_ns == 320 * NS // 16000
    assert stats.blocks == 2 and mic.stats.state is SourceState.RUNNING


def test_callback_never_stamps_later_than_one_block_before_arrival() -> None:
    audio: Handoff[AudioCapture] = Handoff(8)
    mic = MicSource("mic", MicOptions(), audio, SourceStats())
    mic.rate = 48000
    t = time.monotonic()
    _callback(mic, np.zeros((480, 1), np.float32), t, t)  # ADC time "now": impossible for a 10 ms block
    (a,) = drain(audio)
    assert a.arrival_ns - a.media_ns >= 10_000_000
