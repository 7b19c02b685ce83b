"""A real microphone through the daemon: PortAudio capturing a PulseAudio null sink's monitor
(ALSA device ``pulse``), fed a 1 kHz tone at a known instant; the tone is found in the audio
tokens, starting at the right time on the packets' clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from streamgen import PulseAudio, pulse  # noqa: F401  (pytest fixture)

from livetok.wire import Modality, Scale, TokenPacket, read_ltk

pytestmark = pytest.mark.slow  # every test here runs a live daemon, broker, stream or subprocess

NS = 1_000_000_000


def fine_audio(path: Path) -> list[TokenPacket]:
    packets = read_ltk(path).packets if path.exists() else []
    return sorted((p for p in packets if isinstance(p, TokenPacket) and p.modality == Modality.AUDIO
                   and p.scale == Scale.FINE), key=lambda p: p.start_ns)


def silence_after_a_tone(path: Path, after_s: float = 0.5) -> bool:
    """The file holds a tone (packets unlike the first, silent, one) and ``after_s`` of silence after it."""
    fine = fine_audio(path)
    changed = [i for i, p in enumerate(fine) if not np.array_equal(p.codes, fine[0].codes)]
    return bool(changed) and len(fine) - 1 - changed[-1] >= after_s * 50


def _wait(predicate: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, f"never {what}"
        time.sleep(0.05)


def test_tone_found_in_tokens_at_the_right_time(pulse: PulseAudio, tmp_path: Path) -> None:  # noqa: F811
    """Silence (1 s of it in the tokens), a 1.5 s tone, silence again (0.5 s of it), then SIGTERM."""
    out = tmp_path / "mic.ltk"
    proc = subprocess.Popen(
        [sys.executable, "-m", "livetok.cli", "run", "--mic", "pulse", "--sink", f"file:{out}"],
        env={**pulse.env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: len(fine_audio(out)) >= 50, "wrote 1 s of silence")
        # The instant the tone is started, on the packets' clock (UNIX ns).
        tone_unix = time.clock_gettime_ns(time.CLOCK_REALTIME)
        player = pulse.play_tone(1000.0, 1.5)
        _wait(lambda: not player.running, "played the tone")
        _wait(lambda: silence_after_a_tone(out), "wrote the tone and 0.5 s of silence after it")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        player.stop()
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    fine = fine_audio(out)
    assert [p.seq for p in sorted(fine, key=lambda p: p.seq)] == list(range(len(fine)))
    silence = fine[0].codes
    changed = [p for p in fine if not np.array_equal(p.codes, silence)]
    assert changed, "the tone never reached the tokens"
    onset = changed[0].start_ns
    print(f"tone in the tokens {(onset - tone_unix) / 1e6:+.1f} ms after it was started")
    # Starting ffmpeg | pacat and PulseAudio's buffering take some time; the tokens must not show the
    # tone before it was played, nor much after.
    assert tone_unix - 30_000_000 <= onset <= tone_unix + 600_000_000, (onset - tone_unix) / 1e6
    # The tone lasts 1.5 s: every packet of its first second carries it, none is missing (each
    # follows the one before), and the clock gives that second 50 packets of 20 ms, within its 5 % slew.
    during = [p for p in fine if onset <= p.start_ns < onset + NS]
    assert all(not np.array_equal(p.codes, silence) for p in during)
    assert [p.seq for p in during] == list(range(during[0].seq, during[0].seq + len(during)))
    captures = json.loads(err[err.index("{"):err.rindex("}") + 1])["accounting"]["captures"]
    (books,) = [row for key, row in captures.items() if key.endswith(".audio")]
    assert books["balanced"] == 1
    if books["dropped_queue"] + books["dropped_shutdown"] + books["failed"] == 0:
        assert 47 <= len(during) <= 53, len(during)
    assert os.path.getsize(out) > 0
