"""A file without video, or without audio, gets a default group of what it has:
an audio-only file was grouped as video + audio, so READY waited for video that never comes (its
first attempt "failed" when the file ended, ~5 s in), every step was flagged missing video, and
the meta promised video streams. Media made here with ffmpeg."""

from __future__ import annotations

from pathlib import Path

import pytest
from busgen import run_cli
from mediagen import ffmpeg

from livetok.config import Group, LivetokConfig
from livetok.daemon.preflight import check_sources
from livetok.wire import AlignedStep, Modality, StepFlag, TokenPacket, read_ltk


def config(sources: list[dict[str, object]], out: Path) -> LivetokConfig:
    return LivetokConfig.model_validate({"sources": sources, "sinks": [{"kind": "file", "path": str(out)}]})


def test_default_groups_take_only_the_tracks_a_file_has(tmp_path: Path) -> None:
    tone, picture, both = tmp_path / "tone.wav", tmp_path / "picture.mp4", tmp_path / "both.mkv"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-ar", "16000", str(tone))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=0.5", str(picture))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=0.5", "-f", "lavfi", "-i",
           "sine=duration=0.5", "-shortest", str(both))
    cfg = config([{"kind": "file", "name": "tone", "path": str(tone)},
                  {"kind": "file", "name": "picture", "path": str(picture)},
                  {"kind": "file", "name": "both", "path": str(both)}], tmp_path / "o.ltk")
    check_sources(cfg)
    assert cfg.effective_groups() == [Group(name="picture", video="picture"),
                                      Group(name="both", video="both", audio="both"),
                                      Group(name="tone", audio="tone")]
    # configured groups are the user's word, as before
    explicit = LivetokConfig.model_validate({**cfg.model_dump(), "groups": [{"name": "g", "video": "tone"}]})
    check_sources(explicit)
    assert explicit.effective_groups() == [Group(name="g", video="tone")]


@pytest.mark.slow
def test_an_audio_only_file_is_ready_at_its_first_audio(tmp_path: Path) -> None:
    tone, out = tmp_path / "tone.wav", tmp_path / "out.ltk"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1.5", "-ar", "16000", str(tone))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"sources:\n  - {{kind: file, name: clip, path: {tone}}}\nsinks:\n  - {{kind: file, path: {out}}}\n")
    checked = run_cli("check-config", "-c", str(cfg))
    assert checked.returncode == 0 and "groups: clip(video=None, audio=clip)" in checked.stdout, checked
    proc = run_cli("run", "-c", str(cfg), "--duration", "3", timeout_s=60)
    assert proc.returncode == 0, proc.stderr
    ready = next(ln for ln in proc.stderr.splitlines() if "ready: capturing" in ln)
    # READY at the first audio: not after the file ended with its "first attempt failed" (waiting for video)
    assert "first data clip: audio" in ready and "failed" not in ready, ready
    result = read_ltk(out)
    packets = [p for p in result.packets if isinstance(p, TokenPacket)]
    steps = [p for p in result.packets if isinstance(p, AlignedStep)]
    assert packets and all(p.modality == Modality.AUDIO for p in packets)
    assert len(steps) > 10 and not any(s.flags & StepFlag.MISSING_VIDEO for s in steps)
