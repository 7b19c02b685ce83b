"""Making real test media with ffmpeg (importable by tests: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import subprocess

from requires import require


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; a failure raises CalledProcessError with its stderr."""
    subprocess.run([require("ffmpeg"), "-nostdin", "-loglevel", "error", "-y", *args], check=True)
