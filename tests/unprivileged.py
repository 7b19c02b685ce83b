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
from functools import cache
from pathlib import Path

import pytest
from requires import missing, require

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]  # prefix a command (root)
ROOT = Path(__file__).resolve().parent.parent


def let_through(path: Path) -> None:
    """Add others' search (x) permission to the temporary directories above ``path`` (a clone in a
    ``mktemp -d`` folder is 0700): never their read or write permission, never outside /tmp."""
    for p in reversed(path.parents):
        if str(p).startswith(tempfile.gettempdir() + "/"):
            mode = p.stat().st_mode
            if not mode & 0o001:
                p.chmod(mode | 0o001)


@cache
def _nobody_cannot_import() -> str | None:
    probe = [*AS_NOBODY, sys.executable, "-c", "import livetok, numba"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/nonexistent"}
    for attempt in range(2):
        done = subprocess.run(probe, env=env, cwd="/", capture_output=True, text=True, timeout=120, check=False)
        if done.returncode == 0:
            return None
        if attempt == 0:
            let_through(Path(sys.prefix))
            let_through(ROOT)
    return (f"nobody cannot import livetok and numba from {sys.prefix} and {ROOT} (a folder above them is "
            f"private): {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")


def require_unprivileged_user() -> None:
    """Skip unless an unprivileged user can run this checkout: as root, ``setpriv`` exists and
    ``nobody`` can reach the interpreter and the package (made so under /tmp, else skipped)."""
    if os.geteuid() != 0:
        return
    require("setpriv", "util-linux has it")
    reason = _nobody_cannot_import()
    if reason is not None:  # where the checkout lives is part of the setup: CI must not skip for it
        missing(reason)


@pytest.fixture
def unprivileged_user() -> None:
    """A test that runs something as an unprivileged user: skipped where that cannot be (above)."""
    require_unprivileged_user()


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
        cmd = [*AS_NOBODY, *cmd]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300)
