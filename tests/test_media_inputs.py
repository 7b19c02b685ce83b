"""Inputs that are not what they seem: devices and FIFOs named as such, and a media file that ends
before its container says it should (a faststart MP4 cut in half) reported, not tokenized silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import skimage
from mediagen import ffmpeg

from livetok.cli import main
from livetok.media.decode import DecodeNotes, decode
from livetok.wire import read_ltk


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("livetok: error: ") and "Traceback" not in err, err
    return err


def test_character_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: exit 66 with "empty file"."""
    capsys.readouterr()
    assert main(["tokenize", "/dev/zero", "-o", str(tmp_path / "z.ltk")]) == 66
    err = error_line(capsys)
    assert "/dev/zero: is a character device, not a regular file" in err and "empty" not in err


def test_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    capsys.readouterr()
    assert main(["tokenize", str(fifo), "-o", str(tmp_path / "z.ltk")]) == 66  # returns: the FIFO is never opened
    err = error_line(capsys)
    assert f"{fifo}: is a FIFO (named pipe), not a regular file" in err
    assert not (tmp_path / "z.ltk").exists()


@pytest.fixture(scope="module")
def faststart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s, 25 fps, with audio, the index (moov) at the front as for streaming."""
    out = tmp_path_factory.mktemp("fs") / "faststart.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
           "-movflags", "+faststart", str(out))
    return out


def test_truncated_faststart_mp4_is_tokenized_with_a_warning(faststart: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Before: 20-odd of 50 frames, exit 0 and no word, while FFmpeg itself reports a partial file."""
    half = tmp_path / "half.mp4"
    data = faststart.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    out = tmp_path / "half.ltk"
    capsys.readouterr()
    assert main(["tokenize", str(half), "-o", str(out)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("livetok: warning: ")]
    assert len(warnings) == 1, warnings
    w = warnings[0]
    assert f"{half}: the input ended early: decoded video to " in w and "of the 2.00 s the container states" in w
    got = float(w.split("decoded video to ")[1].split(" s")[0])
    frames = sum(1 for p in read_ltk(out).packets if p.modality.name == "VIDEO" and p.scale.name == "FINE")
    assert 0 < frames < 50 and got == pytest.approx(frames / 25, abs=0.041)


@pytest.mark.parametrize("kind", ["faststart", "av_clip", "speech", "image"])
def test_complete_inputs_give_no_warning(kind: str, faststart: Path, av_clip: Path, speech_wav: Path,
                                         tmp_path: Path) -> None:
    if kind == "image":
        path = tmp_path / "photo.png"
        skimage.io.imsave(path, skimage.data.astronaut())
    else:
        path = {"faststart": faststart, "av_clip": av_clip, "speech": speech_wav}[kind]
    notes = DecodeNotes()
    assert sum(1 for _ in decode(path, notes=notes)) > 0
    assert notes.warnings == []


@pytest.mark.parametrize("container", ["mkv", "flac"])
def test_other_containers_cut_short(container: str, tmp_path: Path) -> None:
    full = tmp_path / f"full.{container}"
    if container == "flac":
        ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=3", str(full))
    else:
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-c:v", "libx264",
               "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(full))
    cut = tmp_path / f"cut.{container}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    notes = DecodeNotes()
    assert sum(1 for _ in decode(cut, notes=notes)) > 0
    assert len(notes.warnings) == 1 and "the input ended early" in notes.warnings[0]
