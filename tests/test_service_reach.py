"""install-service's check of what the service must reach (livetok.service.reach), on file trees the
test builds: a "home" top stands for /home and /root (ProtectHome=), a "tmp" top for /tmp
(PrivateTmp=), so every case is real files, links and modes, in a temporary folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from livetok.errors import ConfigError
from livetok.service.reach import Need, lookup, plan, service_reach


@pytest.fixture
def top() -> Iterator[Path]:
    """A fresh folder others can search (pytest's own temporary tree is root's, 0700: the check would
    rightly refuse everything below it)."""
    d = Path(tempfile.mkdtemp(prefix="livetok-reach-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def tree(base: Path) -> dict[str, Path]:
    """home/root/.pyenv/3.11 (an interpreter, 0700 home), opt/livetok (a checkout with a venv whose
    python links into the pyenv), tmp/."""
    t = {"home": base / "home", "tmp": base / "tmp", "opt": base / "opt"}
    prefix = t["home"] / "root" / ".pyenv" / "3.11"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib" / "python3.11").mkdir(parents=True)
    (prefix / "bin" / "python3.11").write_bytes(b"\x7fELF")
    (prefix / "lib" / "python3.11" / "os.py").write_text("")
    venv = t["opt"] / "livetok" / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(prefix / "bin" / "python3.11")
    (venv / "bin" / "livetok").write_text(f"#!{venv / 'bin' / 'python'}\n")
    t["tmp"].mkdir()
    base.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            if not os.path.islink(os.path.join(dirpath, name)):
                os.chmod(os.path.join(dirpath, name), 0o755)
    (t["home"] / "root").chmod(0o700)  # root's home, as on Debian
    t.update(prefix=prefix, venv=venv, exe=venv / "bin" / "livetok", python=venv / "bin" / "python")
    return t


def needs_of(t: dict[str, Path]) -> list[Need]:
    return [Need(str(t["exe"]), "the livetok script", "rx"),
            Need(str(t["python"]), "the Python interpreter of its #! line", "x"),
            Need(str(t["prefix"] / "lib" / "python3.11"), "the standard library", "rx"),
            Need(str(t["prefix"] / "lib" / "python3.11" / "os.py"), "the standard library")]


def check(t: dict[str, Path], items: list[Need] | None = None) -> tuple[str, ...]:
    roots = [str(t["venv"].parent), str(t["venv"]), str(t["prefix"])]
    return plan(items or needs_of(t), roots, hidden=(str(t["home"]),), private=(str(t["tmp"]),)).binds


def test_an_interpreter_in_a_0700_home_is_bound_alone(top: Path) -> None:
    """The case of the issue: the venv's python links into root's pyenv. The base prefix is bound
    (its parents become the tmpfs's, so the 0700 home does not matter); the checkout is visible."""
    t = tree(top)
    assert check(t) == (str(t["prefix"]),)


def test_a_checkout_in_a_home_directory_binds_the_checkout(top: Path) -> None:
    t = tree(top)
    moved = t["home"] / "ana" / "livetok"
    moved.parent.mkdir()
    moved.parent.chmod(0o750)
    os.rename(t["venv"].parent, moved)
    t.update(venv=moved / ".venv", exe=moved / ".venv/bin/livetok", python=moved / ".venv/bin/python")
    items = needs_of(t)
    assert check(t, items) == (str(moved), str(t["prefix"]))  # the venv is inside the checkout: one bind


@pytest.mark.parametrize("where", ["inside the bound prefix", "above the checkout"])
def test_a_directory_other_users_cannot_search_is_refused(top: Path, where: str) -> None:
    t = tree(top)
    closed = t["prefix"] / "lib" if where == "inside the bound prefix" else t["opt"]
    closed.chmod(0o700)
    with pytest.raises(ConfigError) as e:
        check(t)
    assert str(e.value).count("\n") == 0
    assert f"directory {closed} is not searchable by other users (mode 0700)" in str(e.value)
    assert f"chmod o+x {closed}" in str(e.value)


def test_an_unreadable_script_is_refused(top: Path) -> None:
    t = tree(top)
    t["exe"].chmod(0o700)  # root's umask 077 at install time
    with pytest.raises(ConfigError, match=r"the livetok script: file .*livetok is not readable and executable "
                                          r"by other users \(mode 0700\)"):
        check(t)


def test_a_checkout_under_tmp_is_bound_into_the_private_tmp(top: Path) -> None:
    """A clone in a 0700 `mktemp -d` folder (the newcomer check's): the checkout is bound into the
    service's own /tmp, whose directories above it systemd makes 0755, so the 0700 folder does not
    matter. Before: refused ("PrivateTmp= replaces"), though systemd can bind it."""
    t = tree(top)
    inside = t["tmp"] / "tmp.XXXX" / "lt"
    inside.parent.mkdir()
    inside.parent.chmod(0o700)
    os.rename(t["venv"].parent, inside)
    t.update(venv=inside / ".venv", exe=inside / ".venv/bin/livetok", python=inside / ".venv/bin/python")
    assert check(t) == (str(t["prefix"]), str(inside))
    (inside / ".venv").chmod(0o700)  # below the bind, modes count as anywhere
    with pytest.raises(ConfigError, match=r"directory .*\.venv is not searchable by other users"):
        check(t)


def test_lookup_follows_links_as_the_kernel_does(top: Path) -> None:
    t = tree(top)
    rel = t["opt"] / "py"
    rel.symlink_to(Path("livetok") / ".venv" / "bin" / "python")  # relative, to another link
    searched, followed, end = lookup(str(rel))
    assert end == str(t["prefix"] / "bin" / "python3.11")
    assert followed == [str(rel), str(t["python"])]
    assert str(t["home"] / "root") in searched
    loop = top / "loop"
    loop.symlink_to(loop)
    with pytest.raises(ConfigError, match="too many levels"):
        lookup(str(loop))
    with pytest.raises(ConfigError, match="does not exist"):
        lookup(str(top / "nothing" / "here"))


def test_this_checkout_passes() -> None:
    """The environment the tests run from can be installed as a service (the unit tests install it)."""
    import sys

    exe = Path(os.path.abspath(sys.executable)).parent / "livetok"
    reach = service_reach(exe)
    assert any(c.endswith("/os.py") for c in reach.checked) and any(c.endswith("/livetok") for c in reach.checked)
    assert all(b.startswith(("/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/")) for b in reach.binds)
