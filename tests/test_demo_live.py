"""The Quick start's main job, for real: ``livetok demo`` starts its private Mosquitto, runs the
synthetic source through the daemon into it, and reports what a livetok.client subscriber got."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from requires import require

pytestmark = pytest.mark.slow  # every test here runs a live daemon, broker, stream or subprocess


def test_demo_end_to_end(tmp_path: Path) -> None:
    require("mosquitto")
    r = subprocess.run([sys.executable, "-m", "livetok.cli", "demo", "--seconds", "4", "--out-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "a private Mosquitto on 127.0.0.1:" in out
    for topic in ("audio/fine", "audio/coarse", "video/fine", "video/coarse", "steps"):
        assert re.search(rf"livetok/demo/synthetic/{topic} +\d+", out), topic
    got = int(re.search(r"received (\d+) messages", out).group(1))  # type: ignore[union-attr]
    published = int(re.search(r"books: (\d+) published", out).group(1))  # type: ignore[union-attr]
    assert got == published > 300
    assert "continuity: 0 gaps, 0 duplicates, 0 missing" in out and "0 dropped, 0 refused; balanced" in out
    skew = float(re.search(r"A/V skew measured from the markers: ([+-][\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    assert abs(skew - 40.0) <= 2.0  # the beep is made 40 ms late
    assert re.search(r"video/fine +p50 +[\d.]+ +p95 +[\d.]+ +p99 +[\d.]+", out)
    assert (tmp_path / "demo.ltk").exists() and (tmp_path / "demo-inspect.png").exists()
    # nothing left behind: the private broker is gone
    assert subprocess.run(["pgrep", "-f", "livetok-broker-"], capture_output=True).returncode == 1
