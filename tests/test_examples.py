"""examples/NAME/run.sh as a user runs them (issue 15 §3): each builds or finds its model, writes its
config, fits what needs fitting, runs the daemon into a token file and a private Mosquitto, takes back
what the bus carried and probes both. Checked here: exit 0, the streams each example promises, their
counts, and the bus's packets equal the file's, packet for packet."""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from requires import require, require_module

from livetok.wire import TokenPacket, read_ltk

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, out: Path) -> str:
    for tool in ("mosquitto", "espeak-ng", "sox", "ffmpeg"):
        require(tool)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(["bash", str(ROOT / "examples" / name / "run.sh"), str(out)], cwd=out.parent,
                          capture_output=True, text=True, timeout=170, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def streams(path: Path) -> dict[tuple[str, str, str], list[TokenPacket]]:
    result = read_ltk(path)
    assert result.errors == []
    out: dict[tuple[str, str, str], list[TokenPacket]] = {}
    for p in result.packets:
        if isinstance(p, TokenPacket):
            out.setdefault((p.source, p.modality.name.lower(), p.stream_name), []).append(p)
    return out


def check_file_and_bus(out: Path) -> dict[tuple[str, str, str], list[TokenPacket]]:
    """Every stream numbered from 0 without a hole, and the bus gave back the same packets."""
    file, bus = streams(out / "tokens.ltk"), streams(out / "bus.ltk")
    assert set(file) == set(bus)
    for key, ps in file.items():
        assert [p.seq for p in ps] == list(range(len(ps))), key
        got = bus[key]
        assert [(p.seq, p.start_ns, p.end_ns, p.codes.tobytes()) for p in got] == [
            (p.seq, p.start_ns, p.end_ns, p.codes.tobytes()) for p in ps], key
    return file


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_silero_vad(tmp_path: Path) -> None:
    require_module("silero_vad")
    stdout = run_example("silero-vad", tmp_path / "vad")
    got = check_file_and_bus(tmp_path / "vad")
    assert set(got) == {("speech", "audio", "vad")}
    vad = got[("speech", "audio", "vad")]
    # 0.6 s + espeak's speech + 0.6 s, one token per 512 samples at 16 kHz
    assert 100 < len(vad) < 250
    assert all(p.grid == (1, 1) and p.codes.shape == (1, 1) and p.stream == "vad" for p in vad)
    # 32 ms each, end to end (the source clock may slew a little at the start: the UNIX steps follow it)
    assert all(a.end_ns == b.start_ns for a, b in itertools.pairwise(vad))
    assert all(28e6 < p.end_ns - p.start_ns < 36e6 for p in vad)
    codes = np.array([int(p.codes[0, 0]) for p in vad])
    # silence first and last (the lowest units), speech in between (the highest): the model heard the voice
    assert codes[:15].max() <= 1 and codes[-15:].max() <= 1 and (codes == 7).sum() > 30
    assert "code -> speech probability: 0: " in stdout


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_torchscript(tmp_path: Path) -> None:
    run_example("torchscript", tmp_path / "ts")
    got = check_file_and_bus(tmp_path / "ts")
    assert set(got) == {("speech", "audio", s) for s in ("fine", "coarse", "units")}
    units, fine = got[("speech", "audio", "units")], got[("speech", "audio", "fine")]
    assert len(units) == len(fine) > 100  # 20 ms each: the fine stream's grid, step for step
    assert [p.start_ns for p in units] == [p.start_ns for p in fine]
    assert all(p.codes.shape == (1, 1) and p.codes.max() < 32 for p in units)
    assert len({int(p.codes[0, 0]) for p in units}) > 8  # the units vary with the voice


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_onnx(tmp_path: Path) -> None:
    run_example("onnx", tmp_path / "onnx")
    got = check_file_and_bus(tmp_path / "onnx")
    assert set(got) == {("clip", "video", "patches")}
    patches = got[("clip", "video", "patches")]
    assert len(patches) == 30  # 3 s at 10 fps: every frame
    assert all(p.grid == (7, 7) and p.codes.shape == (49, 2) and p.codes.max() < 64 for p in patches)


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_spectrogram_patches(tmp_path: Path) -> None:
    run_example("spectrogram-patches", tmp_path / "sp")
    got = check_file_and_bus(tmp_path / "sp")
    assert set(got) == {("speech", "audio", "spec")}
    spec = got[("speech", "audio", "spec")]
    assert len(spec) > 40  # 80 ms each over the whole clip
    assert all(p.grid == (8, 1) and p.codes.shape == (8, 2) and p.codes.max() < 64 for p in spec)
