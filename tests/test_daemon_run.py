"""``livetok run`` end to end: real threads, the synthetic source, a dead source, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from livetok.cli import main
from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking
from livetok.wire import AlignedStep, Modality, Scale, TokenPacket, read_ltk


def test_synthetic_run_recovers_the_marker_offset(tmp_path: Path) -> None:
    out = tmp_path / "syn.ltk"
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": "syn", "audio_offset_ms": 37, "marker_interval_s": 1.0}],
        "sinks": [{"kind": "file", "path": str(out)}],
    })
    report = run_blocking(cfg, 3.5)
    assert report.stopped_by == "duration"
    result = read_ltk(out)
    assert result.errors == []
    steps = [p for p in result.packets if isinstance(p, AlignedStep)]
    packets = [p for p in result.packets if isinstance(p, TokenPacket)]
    assert len(steps) >= 35 and report.steps == len(steps)
    skews = [s.skew_ns for s in steps if s.skew_ns is not None]
    assert skews and abs(skews[-1] - 37_000_000) <= 2_000_000  # audio minus video, from the markers
    fine_audio = [p for p in packets if p.modality == Modality.AUDIO and p.scale == Scale.FINE]
    assert [p.seq for p in fine_audio] == list(range(len(fine_audio)))  # none lost, none repeated
    gauges = report.metrics["gauges"]
    assert isinstance(gauges, dict) and gauges["source.syn.frames"] > 80


def test_dead_source_does_not_stop_the_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A UDP stream nobody sends to stalls and is retried; the synthetic source keeps flowing."""
    out = tmp_path / "two.ltk"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources:\n"
        "  - {kind: stream, name: dead, url: 'udp://127.0.0.1:9', format: mpegts,\n"
        "     open_timeout_s: 1, read_timeout_s: 1}\n"
        "  - {kind: synthetic, name: syn}\n"
        f"sinks:\n  - {{kind: file, path: '{out}'}}\n")
    assert main(["run", "-c", str(cfg), "--duration", "3"]) == 0
    packets = [p for p in read_ltk(out).packets if isinstance(p, TokenPacket)]
    assert {p.source for p in packets} == {"syn"}
    err = capsys.readouterr().err
    assert '"source.dead.frames": 0' in err and '"source.syn.frames"' in err


def test_sigterm_stops_cleanly_with_the_file_whole(tmp_path: Path) -> None:
    out = tmp_path / "sig.ltk"
    proc = subprocess.Popen(
        [sys.executable, "-m", "livetok.cli", "run", "--source", "synthetic", "--sink", f"file:{out}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 20_000):
            time.sleep(0.2)
        assert out.exists() and out.stat().st_size >= 20_000, "no tokens written"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    result = read_ltk(out)
    assert result.errors == [] and len(result.packets) > 20  # the last packet is whole


def test_bad_flags_are_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--source", str(tmp_path / "nope.mp4"), "--duration", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 78 and err.startswith("livetok: error: --source") and len(err.splitlines()) == 1
    code = main(["run", "--source", "synthetic", "--sink", "mqtt://x", "--duration", "1"])
    assert code == 78 and "--sink mqtt://x" in capsys.readouterr().err


def test_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources:\n  - {kind: synthetic, name: s}\n  - {kind: mic, name: m}\n")
    assert main(["check-config", "-c", str(cfg)]) == 0
    assert "groups: s(video=s, audio=m)" in capsys.readouterr().out
    cfg.write_text("sources:\n  - {kind: synthetic, name: s, fps: -1}\n")
    assert main(["check-config", "-c", str(cfg)]) == 78
    assert "c.yaml:2: sources.0.fps" in capsys.readouterr().err


def test_devices_lists_or_says_none(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out.lower()
    assert "camera" in out or "v4l2" in out
