"""What a test needs from the machine, decided in one place (importable by tests and their helpers).

A missing tool, library or right that ``scripts/setup.sh`` (or the CI job) provides skips the test,
naming what is missing, on a developer's machine, and FAILS it under ``CI=true``: CI installs
everything, so a broken setup must not go green by skipping what it could not run::

    ffmpeg = require("ffmpeg")                   # the tool's path (/usr/sbin and /sbin searched too)
    silero_vad = require_module("silero_vad")    # an installed Python package
    require_root("mounting a tmpfs")             # the test needs root
    missing("the PortAudio library is not installed (...)")  # anything else setup provides

What is about the machine's kind, not its setup (a kernel without overlayfs or PR_SET_MDWE, a
container that may not mount, a machine with CUDA where the test is about its absence) is a skip
everywhere, CI included, and says why::

    not_on_this_machine("no overlayfs in this kernel: ...")

Every skip in the suite goes through this module (tests/test_requires.py checks that).
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest

SETUP = "scripts/setup.sh installs it"
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


def on_ci() -> bool:
    """True under ``CI=true`` (GitHub Actions, GitLab and most CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(why: str) -> NoReturn:
    """Something the setup provides is missing: skip saying ``why``; under ``CI=true``, fail."""
    if on_ci():
        pytest.fail(f"{why} [CI=true: a missing requirement fails the test instead of skipping it]",
                    pytrace=False)
    pytest.skip(why)


def require(tool: str, why: str = SETUP) -> str:
    """The path of the command ``tool`` (searched in PATH, then the sbin directories), or :func:`missing`."""
    path = shutil.which(tool) or shutil.which(tool, path=SBIN)
    if path is None:
        missing(f"{tool} is not installed ({why})")
    return path


def require_module(name: str, why: str = SETUP) -> ModuleType:
    """The imported Python module ``name``, or :func:`missing` (an import that fails for another
    reason than its absence raises as it is)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name not in (name, name.split(".")[0]):
            raise
    missing(f"the Python package {name} is not installed ({why})")


def require_root(what: str) -> None:
    """The test does ``what``, which needs root: :func:`missing` for any other user (CI runs as root)."""
    if os.geteuid() != 0:
        missing(f"{what} needs root")


def not_on_this_machine(why: str) -> NoReturn:
    """The machine's kind (kernel, hardware, container), not its setup, rules the test out: a skip
    everywhere, CI included. Name the reason; each use is listed in tests/test_requires.py."""
    pytest.skip(why)
