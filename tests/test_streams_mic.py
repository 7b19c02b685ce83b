"""MicSource through real PortAudio: a private PulseAudio daemon's null-sink monitor is the microphone.

PortAudio lists devices and PulseAudio's client library reads PULSE_SOURCE / XDG_RUNTIME_DIR when
the stream is set up, so each capture runs in a child process (streamgen.MicChild) whose
environment points at the test's own daemon; that also lets a test freeze it (SIGSTOP).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
from requires import missing
from streamgen import MicChild, PulseAudio, drain, pulse, wait_until

from livetok.errors import MediaError
from livetok.runtime.backoff import BackoffPolicy
from livetok.streams.handoff import Handoff
from livetok.streams.types import AudioCapture, SourceState, SourceStats

try:
    import sounddevice as sd

    from livetok.streams.mic import MicOptions, MicSource, resolve_input_device
    PORTAUDIO_MISSING = ""
except OSError as err:  # sounddevice raises OSError at import when libportaudio2 is missing
    PORTAUDIO_MISSING = f"the PortAudio library is not installed ({err}; scripts/setup.sh installs it)"


@pytest.fixture(autouse=True)
def _portaudio() -> None:
    """Each test, not the module's collection, skips (fails under CI=true) without PortAudio."""
    if PORTAUDIO_MISSING:
        missing(PORTAUDIO_MISSING)

__all__ = ["pulse"]  # the fixture, imported from streamgen

NS = 1_000_000_000
TONE_HZ = 1000.0
FROZEN_TONE_HZ = 1234.56  # no whole number of periods in any plausible loss: a loss breaks its phase
FREEZE_S = 2.0  # s


@pytest.fixture()
def children() -> Iterator[list[MicChild]]:
    made: list[MicChild] = []
    yield made
    for c in made:
        c.stop()


@pytest.mark.slow
def test_captures_the_tone_with_monotonic_adc_times(pulse: PulseAudio, children: list[MicChild]) -> None:
    pulse.play_tone(TONE_HZ, 20)
    child = MicChild(pulse, {"rate": 16000, "channels": 1, "block_ms": 20, "tone_hz": TONE_HZ})
    children.append(child)
    assert child.wait_for(lambda s: s["received"] >= 60, 20.0), child.status
    r = child.finish()
    assert r["stopped"] and r["state"] == "stopped"
    assert r["shapes"] == ["(1, 320)"] and r["rates"] == [16000] and r["dtypes"] == ["float32"]
    assert r["media_increasing"]
    assert abs(r["peak_hz"] - TONE_HZ) <= 5.0, r["peak_hz"]  # resolution: 16000 / samples analysed
    assert r["rms"] > 0.01
    assert r["phase_breaks"] == [] and r["discontinuities"] == [0]  # no sample lost, none flagged
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


@pytest.mark.slow
def test_full_handoff_drops_oldest_and_counts(pulse: PulseAudio, children: list[MicChild]) -> None:
    child = MicChild(pulse, {"rate": 16000, "block_ms": 5, "capacity": 1, "consume": False})
    children.append(child)
    assert child.wait_for(lambda s: s["blocks"] >= 100, 20.0), child.status
    r = child.finish()
    s = r["stats"]
    assert s["dropped_blocks"] >= 90 and s["dropped_blocks"] == r["handoff_dropped"]
    assert s["blocks"] == s["dropped_blocks"] + r["received"]  # the one left in the queue was still there
    assert r["received"] == 1


@pytest.mark.slow
def test_frozen_capture_flags_exactly_the_lost_samples(pulse: PulseAudio, children: list[MicChild]) -> None:
    pulse.play_tone(FROZEN_TONE_HZ, 20)
    child = MicChild(pulse, {"rate": 16000, "block_ms": 10, "stall_timeout_s": 30.0, "tone_hz": FROZEN_TONE_HZ})
    children.append(child)
    assert child.wait_for(lambda s: s["received"] >= 50, 20.0), child.status
    child.pause(FREEZE_S)  # the process stops reading
    n = child.status["received"]
    assert child.wait_for(lambda s: s["received"] >= n + 60, 20.0)
    r = child.finish()
    # The tone's phase says whether samples were lost. PulseAudio holds what a frozen client does
    # not read (5 s held in every run here; libpulse's queue is 4 MB) and then drops silently (no
    # input_overflow through PortAudio's ALSA plugin): a burst of old blocks arrives on resume.
    # Whatever happened, lost samples are flagged (after the loss, within a detection window) and
    # nothing else is: the burst alone is not a gap, and media time stays continuous through it.
    breaks, flagged = r["phase_breaks"], r["discontinuities"][1:]
    print(f"frozen {FREEZE_S} s: samples lost at blocks {breaks}, flagged at {flagged}")
    assert len(flagged) == len(breaks)
    for b, f in zip(breaks, flagged, strict=True):
        # The loss lies in the 5 blocks (one 800-sample phase window) before b; it is flagged there
        # or later: after the resume burst and one 250 ms window.
        assert b - 5 <= f <= b + round(FREEZE_S * 100) + 25
    assert r["stats"]["gaps"] == len(flagged)
    assert all(abs(step) < 0.01 for i, step in r["steps_ms"] if i not in flagged)  # contiguous stamps
    assert r["state"] == "stopped" and r["stats"]["reconnects"] == 0 and r["media_increasing"]


@pytest.mark.slow
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


LATE_DEVICE_CHILD = r"""
import json, os, sys, time
import numpy as np
import sounddevice as sd
listed_at_import = [d["name"] for d in sd.query_devices()]
# Only now point libpulse at the test's daemon: it reads the environment when a stream connects.
os.environ.update(json.loads(sys.argv[1]))
from livetok.streams.handoff import Handoff
from livetok.streams.mic import MicOptions, MicSource
from livetok.streams.types import SourceStats
audio, stats = Handoff(1000), SourceStats()
mic = MicSource("mic", MicOptions(device="pulse", rate=16000), audio, stats)
mic.start()
deadline = time.monotonic() + 15
while stats.blocks < 50 and time.monotonic() < deadline:
    time.sleep(0.05)
mic.stop()
blocks = []
while (b := audio.get_nowait()) is not None:
    blocks.append(b)
x = np.concatenate([b.samples[0] for b in blocks[len(blocks) // 2:]])
peak = float(np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x))))) * 16000 / len(x))
print(json.dumps({"at_import": listed_at_import, "blocks": stats.blocks, "peak_hz": peak,
                  "after": [d["name"] for d in sd.query_devices()]}))
"""


@pytest.mark.slow
def test_device_that_appears_after_portaudio_started_is_found(pulse: PulseAudio) -> None:
    """PortAudio lists devices once, at ``import sounddevice``; MicSource re-initialises it (no stream
    open) when the device is not in that list, and libpulse reads PULSE_SOURCE at connect time."""
    pulse.play_tone(TONE_HZ, 20)
    late = {k: pulse.env[k] for k in ("XDG_RUNTIME_DIR", "PULSE_SOURCE", "HOME")}
    env = {k: v for k, v in pulse.env.items() if k not in late}
    env["XDG_RUNTIME_DIR"] = str(pulse.runtime_dir.parent / "nowhere")  # no daemon there at import
    out = subprocess.run([sys.executable, "-c", LATE_DEVICE_CHILD, json.dumps(late)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert "pulse" not in r["at_import"] and "pulse" in r["after"]
    assert r["blocks"] >= 50 and abs(r["peak_hz"] - TONE_HZ) <= 10.0


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
    _callback(mic, block, now_s - 0.050, now_s)
    block[:] = 0  # PortAudio reuses its buffer: the capture must hold a copy
    _callback(mic, block, 0.0, 0.0)  # no ADC time: the timeline carries on
    _callback(mic, block, 0.0, 0.0, overflow=True)  # samples lost before this block
    a, b, c = drain(audio)
    assert a.samples.shape == (2, 320) and a.samples.flags.c_contiguous and a.samples.dtype == np.float32
    assert float(a.samples[1, -1]) == pytest.approx(0.5) and float(a.samples[0, 0]) == pytest.approx(-0.5)
    assert a.arrival_ns - a.media_ns == pytest.approx(50_000_000, abs=100_000)  # float seconds: ~0.2 µs
    assert b.media_ns == a.media_ns + 20_000_000  # contiguous samples, contiguous times
    assert a.discontinuity and not b.discontinuity and c.discontinuity
    assert c.overflow and not a.overflow and not b.overflow
    assert c.arrival_ns - c.media_ns == 20_000_000 + 50_000_000  # restarted at the arrival bound, less a margin
    assert stats.overflows == 1 and stats.gaps == 1 and stats.blocks == 3
    assert mic.stats.state is SourceState.RUNNING


def test_callback_never_stamps_later_than_one_block_before_arrival() -> None:
    audio: Handoff[AudioCapture] = Handoff(8)
    mic = MicSource("mic", MicOptions(), audio, SourceStats())
    mic.rate = 48000
    t = time.monotonic()
    _callback(mic, np.zeros((480, 1), np.float32), t, t)  # ADC time "now": impossible for a 10 ms block
    (a,) = drain(audio)
    assert a.arrival_ns - a.media_ns >= 10_000_000
