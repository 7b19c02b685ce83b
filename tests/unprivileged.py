"""Running a command as a user without root's right to write anywhere (importable by tests).

Read-only directories stop only unprivileged users: as root, the command runs as ``nobody`` through
``setpriv``; as anyone else, as that user. ``read_only_dir`` makes a directory such a user can
enter but not write into, outside pytest's root-only temporary tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NOBODY = 65534


def can_drop_privileges() -> bool:
    return os.geteuid() != 0 or shutil.which("setpriv") is not None


@contextmanager
def read_only_dir() -> Iterator[Path]:
    """A fresh world-readable directory under the system temp dir, with a writable ``scratch/``
    (for the command's inputs and numba's cache), then made read-only."""
    top = Path(tempfile.mkdtemp(prefix="livetok-ro-"))
    try:
        top.chmod(0o755)
        scratch = top / "scratch"
        scratch.mkdir()
        scratch.chmod(0o777)
        (top / "ro").mkdir()
        (top / "ro").chmod(0o555)
        yield top
    finally:
        (top / "ro").chmod(0o755)
        shutil.rmtree(top, ignore_errors=True)


def run_livetok(args: list[str], cwd: Path, scratch: Path) -> subprocess.CompletedProcess[str]:
    """``python -m livetok.cli ARGS`` in ``cwd`` as an unprivileged user."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(scratch / "numba"), HOME=str(scratch))
    cmd = [sys.executable, "-m", "livetok.cli", *args]
    if os.geteuid() == 0:
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")])
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300)
