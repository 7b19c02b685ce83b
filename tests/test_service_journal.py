"""Priorities under journald: every line the daemon writes under the unit carries a ``<N>`` prefix,
except the command line's own error line, which the unit's ``SyslogLevel=err`` files at priority 3
(before: a configuration error at start was filed at 6, info, and ``journalctl -p warning`` showed
nothing). journald is stood in for by what it looks at: ``JOURNAL_STREAM`` naming the device and
inode of stderr (a file here). tests/test_service_systemd.py reads the real journal's PRIORITY."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from livetok.runtime import log
from livetok.service.unit import REFERENCE_EXECUTABLE, render_unit


def run_under_journal(tmp_path: Path, *args: str) -> tuple[int, list[str]]:
    err = tmp_path / "stderr"
    with err.open("w") as f:
        st = os.fstat(f.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        env.pop("NOTIFY_SOCKET", None)
        done = subprocess.run([sys.executable, "-m", "livetok.cli", *args], stdout=subprocess.DEVNULL, stderr=f,
                              env=env, timeout=300, check=False)
    return done.returncode, err.read_text().splitlines()


def test_the_unit_files_unprefixed_lines_as_errors() -> None:
    assert "\nSyslogLevel=err\n" in render_unit(REFERENCE_EXECUTABLE)


@pytest.mark.slow
def test_a_configuration_error_at_start_is_the_one_unprefixed_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("sources:\n  - {kind: synthetic, name: s, fps: -3}\n")
    rc, lines = run_under_journal(tmp_path, "run", "-c", str(cfg))
    assert rc == 78
    assert len(lines) == 1 and lines[0].startswith("livetok: error: ") and "sources.0.fps" in lines[0], lines


@pytest.mark.slow
def test_a_run_prefixes_every_line(tmp_path: Path) -> None:
    """So SyslogLevel=err promotes nothing routine: each line of a run has its own priority."""
    rc, lines = run_under_journal(tmp_path, "run", "--source", "synthetic", "--sink", f"file:{tmp_path / 't.ltk'}",
                                  "--duration", "2")
    assert rc == 0 and lines, lines
    assert all(line[:1] == "<" and line[2:3] == ">" for line in lines), lines
    assert any(line.startswith("<5>livetok: ready: capturing") for line in lines), lines


def test_python_warnings_are_warning_lines() -> None:
    buf = io.StringIO()
    try:
        log.configure(stream=buf, journal=True)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a library's complaint", RuntimeWarning, stacklevel=1)
    finally:
        log.configure()
    out = buf.getvalue().splitlines()
    assert len(out) == 1 and out[0].startswith("<4>livetok: ") and "RuntimeWarning: a library's complaint" in out[0]
