"""Shared fixtures: the packaged tokenizers, and real media made by ffmpeg / espeak-ng / PyAV."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from broker import mosquitto, mosquitto_factory  # noqa: F401  -- per-test Mosquitto fixtures (tests/broker.py)
from mediagen import ffmpeg
from netproxy import netproxy_factory  # noqa: F401  -- TCP fault proxy fixture (tests/netproxy.py)
from requires import require
from unprivileged import unprivileged_user  # noqa: F401  -- runs as nobody where it can (tests/unprivileged.py)

from livetok.tokenizers import TokenizerConfig, Tokenizers


@pytest.fixture(scope="session")
def toks() -> Tokenizers:
    return Tokenizers.from_config(TokenizerConfig(device="cpu"))


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def speech_wav(media_dir: Path) -> Path:
    """About 2 s of espeak-ng speech at its native 22.05 kHz mono."""
    out = media_dir / "speech.wav"
    subprocess.run([require("espeak-ng"), "-w", str(out), "Tokens must match for every chunking."], check=True)
    return out


@pytest.fixture(scope="session")
def av_clip(media_dir: Path) -> Path:
    """A 2 s 320x240 25 fps H.264 clip with a 48 kHz stereo AAC tone."""
    out = media_dir / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2",
           "-ac", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
           "-shortest", str(out))
    return out
