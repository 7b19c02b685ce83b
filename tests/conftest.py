"""Shared fixtures: the packaged tokenizers, and real media made by ffmpeg / espeak-ng / PyAV; and,
when the suite runs on several workers (pytest-xdist, scripts/test.sh), a test marked ``exclusive``
runs with no other test beside it."""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker import mosquitto, mosquitto_factory  # noqa: F401  -- per-test Mosquitto fixtures (tests/broker.py)
from mediagen import ffmpeg
from netproxy import netproxy_factory  # noqa: F401  -- TCP fault proxy fixture (tests/netproxy.py)
from requires import require
from unprivileged import unprivileged_user  # noqa: F401  -- runs as nobody where it can (tests/unprivileged.py)

from livetok.outputs import interrupts
from livetok.tokenizers import TokenizerConfig, Tokenizers

# Module fixtures that take seconds (evaluating or tokenizing a clip, drawing its picture): a test
# that uses one is ``slow`` (left out of the inner loop, -m "not slow") whatever its own time.
SLOW_FIXTURES = frozenset({"av_report", "photo_report", "clip_ltk", "with_source", "without_source"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(autouse=True)
def _exclusive_under_xdist(request: pytest.FixtureRequest,
                           tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Under pytest-xdist, every test holds a shared lock and a test marked ``exclusive`` (it loads
    both cores on purpose, or measures under a load of its own) holds it alone, so it neither
    starves nor is starved by a neighbour. A turnstile taken before either keeps a waiting
    exclusive test from being overtaken by shared ones. Without xdist: nothing to do."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        yield
        return
    base = tmp_path_factory.getbasetemp().parent  # the run's folder, shared by its workers (popen-gwN inside)
    exclusive = request.node.get_closest_marker("exclusive") is not None
    with open(base / "turnstile", "a") as turn, open(base / "cores", "a") as cores:
        fcntl.flock(turn, fcntl.LOCK_EX)
        try:
            fcntl.flock(cores, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(cores, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _no_signal_left_for_the_next_test() -> Iterator[None]:
    """livetok.outputs.interrupts keeps the signal of its latest ``catching()`` block after the block (the
    command line's exit reads it there). In a test process that outlives the command, a test that
    signals itself left it for a later test's ``checkpoint()``, which raised it as an interruption:
    the whole session stopped (test_outputs' signal test, then test_plugin_quantizers)."""
    yield
    interrupts._received = interrupts._pending = None
