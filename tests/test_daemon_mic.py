"""A real microphone through the daemon: PortAudio capturing a PulseAudio null sink's monitor
(ALSA device ``pulse``), fed a 1 kHz tone at a known instant; the tone is found in the audio
tokens, starting at the right time on the packets' clock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from streamgen import PulseAudio, pulse  # noqa: F401  (pytest fixture)

from livetok.wire import Modality, Scale, TokenPacket, read_ltk

pytestmark = pytest.mark.slow  # every test here runs a live daemon, broker, stream or subprocess

NS = 1_000_000_000


def test_tone_found_in_tokens_at_the_right_time(pulse: PulseAudio, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "mic.ltk"
    proc = subprocess.Popen(
        [sys.executable, "-m", "livetok.cli", "run", "--mic", "pulse", "--sink", f"file:{out}", "--duration", "9"],
        env={**pulse.env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 5000):
            time.sleep(0.05)
        assert out.exists(), "the daemon wrote nothing"
        time.sleep(1.0)  # some silence first
        # The instant the tone is started, on the packets' clock (UNIX ns).
        tone_unix = time.clock_gettime_ns(time.CLOCK_REALTIME)
        player = pulse.play_tone(1000.0, 1.5)
        _, err = proc.communicate(timeout=60)
        player.stop()
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    fine = sorted((p for p in read_ltk(out).packets if isinstance(p, TokenPacket)
                   and p.modality == Modality.AUDIO and p.scale == Scale.FINE), key=lambda p: p.start_ns)
    assert len(fine) > 100
    silence = fine[0].codes
    changed = [p for p in fine if not np.array_equal(p.codes, silence)]
    assert changed, "the tone never reached the tokens"
    onset = changed[0].start_ns
    print(f"tone in the tokens {(onset - tone_unix) / 1e6:+.1f} ms after it was started")
    # Starting ffmpeg | pacat and PulseAudio's buffering take some time; the tokens must not show the
    # tone before it was played, nor much after.
    assert tone_unix - 30_000_000 <= onset <= tone_unix + 600_000_000, (onset - tone_unix) / 1e6
    during = [p for p in changed if p.start_ns < onset + NS]
    assert len(during) >= 40  # the tone lasts: about 50 steps a second
    assert os.path.getsize(out) > 0
