"""numba kernels import for a user who can write neither beside the installation nor in a home
(systemd's DynamicUser= running a root-owned checkout). Before: ``RuntimeError: cannot cache function``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from requires import require_root
from unprivileged import AS_NOBODY, NOBODY, let_through

from livetok.tokenizers import jitcache

pytestmark = pytest.mark.slow  # every test here runs a live daemon, broker, stream or subprocess


@pytest.mark.usefixtures("unprivileged_user")
def test_kernels_import_for_a_user_with_nowhere_obvious_to_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    require_root("becoming nobody (setpriv)")
    top = tmp_path_factory.mktemp("ro")
    top.chmod(0o755)
    let_through(top)  # pytest's base folder is root-only: let nobody through to ours
    shutil.copytree(Path(jitcache.__file__).resolve().parents[1], top / "livetok",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chmod", "-R", "a+rX,a-w", str(top / "livetok")], check=True)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(HOME="/nonexistent", PYTHONPATH=str(top))
    code = ("import os, livetok.tokenizers.rvq_rows as r, livetok.tokenizers.patch_delta as d; "
            "print(os.environ['NUMBA_CACHE_DIR'], r.__file__)")
    r = subprocess.run([*AS_NOBODY, sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    cache_dir, module = r.stdout.split()
    assert module.startswith(str(top)) and cache_dir.endswith(f"livetok-numba-{NOBODY}")
