"""The lock (requirements.lock) and pyproject.toml must agree: every requirement pyproject names, in the
base and the `daemon` and `dev` extras, is locked at exactly one version that satisfies its range, with
hashes; nothing in the lock is a range. A disagreement means `bash scripts/lock.sh` was not run."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _lock_entries() -> list[tuple[str, str, str, list[str]]]:
    """(name, version, marker, hashes) per entry; continuation lines joined."""
    text = (ROOT / "requirements.lock").read_text()
    logical = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in logical.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)\s*(?:;\s*(.*?))?\s*((?:--hash=sha256:[0-9a-f]{64}\s*)+)$", line)
        assert m, f"requirements.lock: not an exact, hashed pin: {line[:100]}"
        out.append((m.group(1), m.group(2), m.group(3) or "", re.findall(r"[0-9a-f]{64}", m.group(4))))
    return out


def _locked_here() -> dict[str, Version]:
    """The versions the lock installs on this machine (markers evaluated)."""
    env = default_environment()
    found: dict[str, Version] = {}
    for name, version, marker, _ in _lock_entries():
        if not marker or Requirement(f"x; {marker}").marker.evaluate(env):  # type: ignore[union-attr]
            found[canonicalize_name(name)] = Version(version)
    return found


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in ("daemon", "monitor", "dev", "examples"):
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def test_every_lock_entry_is_exact_and_hashed() -> None:
    entries = _lock_entries()
    assert len(entries) > 50
    for name, version, _, hashes in entries:
        assert hashes, f"{name} has no hash"
        assert "*" not in version, f"{name}=={version} is a range"


def test_pyproject_and_lock_agree() -> None:
    locked = _locked_here()
    for req in _pyproject_requirements():
        name = canonicalize_name(req.name)
        assert name in locked, f"pyproject requires {req} but requirements.lock has no {name}: run scripts/lock.sh"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {name}=={locked[name]}, outside pyproject's {req}: run scripts/lock.sh")


def test_the_broken_torchaudio_is_kept_out() -> None:
    """torchaudio 2.11.1 does not load with torch 2.11.0: neither the ranges nor the lock admit it."""
    locked = _locked_here()
    assert locked["torchaudio"] != Version("2.11.1")
    ta = next(r for r in _pyproject_requirements() if r.name == "torchaudio")
    assert not ta.specifier.contains("2.11.1")


def test_the_client_needs_no_heavy_stack() -> None:
    """`pip install livetok` (no extra) must not pull torch, torchaudio, PyAV or numba."""
    base = {canonicalize_name(Requirement(r).name)
            for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert not base & {"torch", "torchaudio", "av", "numba"}
