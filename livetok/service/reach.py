"""What the service must reach to start, and whether it can: checked by ``livetok install-service``.

systemd runs ``ExecStart=`` (the ``livetok`` script) in the unit's sandbox, as a dynamic user that
owns nothing and belongs to no group but its own, ``video`` and ``audio``. The kernel reads the
script's ``#!`` line and executes that interpreter (a venv's ``bin/python``: a chain of symbolic
links to the base interpreter), which loads ``libpython`` and the standard library from
``sys.base_prefix``, reads ``pyvenv.cfg`` and ``site-packages`` from ``sys.prefix``, and imports the
livetok package (in the venv, or in the checkout for an editable install). Two settings of the unit
hide parts of the file system:

* ``ProtectHome=`` hides ``/home``, ``/root`` and ``/run/user``. Whatever of the above lies under
  them is made reachable by binding exactly its top directory read-only (``BindReadOnlyPaths=``:
  the interpreter's base prefix, the venv, the checkout) over an empty read-only tmpfs
  (``ProtectHome=tmpfs``); the rest of the home directories stays invisible. The directories above
  a bound one are the tmpfs's, searchable by anyone (a 0700 ``/root`` does not matter).
* ``PrivateTmp=`` gives the service its own empty ``/tmp`` and ``/var/tmp``. Whatever of the above
  lies there is bound read-only the same way into the private one (the directories systemd makes
  above a bind there are ``0755``); ``livetok install-service`` warns that ``/tmp`` does not outlive
  a reboot.

Every directory a lookup of those paths searches must then be searchable by other users
(``o+x``), the files readable (``o+r``; the interpreter and the script executable, ``o+x``), the
directories Python lists readable (``o+r``), and the livetok package entirely so. Anything else
is refused in one line naming the path and its mode (:class:`~livetok.errors.ConfigError`, exit 78).
Not seen by this check: ACLs and the ``video``/``audio`` groups (only the "other" bits count), and
files deeper in ``site-packages`` than the ones named here (tests/test_service_systemd.py starts the
installed unit under a real systemd).
"""

from __future__ import annotations

import os
import stat
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from livetok.errors import ConfigError

HIDDEN = ("/home", "/root", "/run/user")  # ProtectHome=
PRIVATE = ("/tmp", "/var/tmp")  # PrivateTmp=
MAX_LINKS = 40  # as the kernel's lookup: more is a loop


@dataclass(frozen=True)
class Need:
    """One path the service opens: ``mode`` the "other" bits it needs (``r``, ``x``, ``rx``)."""

    path: str
    what: str
    mode: str = "r"
    tree: bool = False  # every file and directory below it too


@dataclass
class Reach:
    """What the unit binds read-only (absolute real paths, outermost only) and what was checked."""

    binds: tuple[str, ...] = ()
    checked: list[str] = field(default_factory=list)


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _tops(tops: Iterable[str]) -> tuple[str, ...]:
    """The tops and their real paths (a /home that is a link to /data/home hides /data/home)."""
    out = []
    for t in tops:
        out.append(t)
        real = os.path.realpath(t)
        if real != t:
            out.append(real)
    return tuple(out)


def lookup(path: str) -> tuple[list[str], list[str], str]:
    """The directories a lookup of ``path`` searches and the symbolic links it follows (the kernel's
    way), as real paths in order, and the real path it ends at. ConfigError for a loop or a missing part."""
    searched: list[str] = []
    followed: list[str] = []
    links = 0

    def walk(p: str) -> str:
        nonlocal links
        cur = "/"
        for comp in Path(p).parts[1:]:
            searched.append(cur)
            nxt = os.path.join(cur, comp)
            if _islink(nxt):
                followed.append(nxt)
                links += 1
                if links > MAX_LINKS:
                    raise ConfigError(f"{path}: too many levels of symbolic links")
                target = os.readlink(nxt)
                cur = walk(target if target.startswith("/") else os.path.join(cur, target))
            elif comp == "..":
                cur = os.path.dirname(cur)
            else:
                cur = nxt
        try:
            os.lstat(cur)
        except PermissionError:
            raise ConfigError(f"{path}: cannot look up {cur}: permission denied (run install-service as root: "
                              "sudo livetok install-service ...)") from None
        except OSError:
            raise ConfigError(f"{path}: {cur} does not exist") from None
        return cur

    end = walk(os.path.abspath(path))
    return searched, followed, end


def _islink(path: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False
    except PermissionError:
        raise ConfigError(f"cannot look up {path}: permission denied (run install-service as root: "
                          "sudo livetok install-service ...)") from None


def needs(executable: Path) -> list[Need]:
    """What ``executable`` (the livetok script of the Python running this) needs at start."""
    import livetok

    out = [Need(str(executable), "the livetok script", "rx")]
    interpreter = _shebang(executable)
    if interpreter is not None:
        out.append(Need(interpreter, "the Python interpreter of its #! line", "x"))
    paths = sysconfig.get_paths()
    out.append(Need(paths["stdlib"], "the standard library (sys.base_prefix)", "rx"))
    out.append(Need(os.path.join(paths["stdlib"], "os.py"), "the standard library (sys.base_prefix)"))
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        libdir, lib = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
        if libdir and lib and os.path.exists(os.path.join(libdir, lib)):
            out.append(Need(os.path.join(libdir, lib), "libpython (sys.base_prefix)"))
    if sys.prefix != sys.base_prefix and os.path.exists(os.path.join(sys.prefix, "pyvenv.cfg")):
        out.append(Need(os.path.join(sys.prefix, "pyvenv.cfg"), "the venv's pyvenv.cfg (sys.prefix)"))
    for key in ("purelib", "platlib"):
        if os.path.isdir(paths[key]):
            out.append(Need(paths[key], "site-packages (sys.prefix)", "rx"))
    out.append(Need(str(Path(livetok.__file__).resolve().parent), "the livetok package", "rx", tree=True))
    return out


def _shebang(script: Path) -> str | None:
    try:
        with open(script, "rb") as f:
            first = f.readline(4096)
    except OSError as err:
        raise ConfigError(f"{script}: cannot read it: {err.strerror or err}") from None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    return words[0] if words and words[0].startswith("/") else None


def source_tree() -> Path | None:
    """The livetok source tree this package runs from (its config.yaml and docs), if it is one."""
    import livetok

    top = Path(livetok.__file__).resolve().parent.parent
    return top if (top / "config.yaml").is_file() and (top / "pyproject.toml").is_file() else None


def roots() -> list[str]:
    """Where a bind starts: the checkout (an editable install), the venv, the base prefix."""
    tree = source_tree()
    out = [str(tree)] if tree is not None else []
    out += [sys.prefix, sys.base_prefix]
    return [os.path.realpath(r) for r in out]


def plan(items: list[Need], bind_roots: list[str], hidden: Iterable[str] = HIDDEN,
         private: Iterable[str] = PRIVATE) -> Reach:
    """The binds ``items`` need and the check that they are enough (ConfigError, one line, if not)."""
    hidden = _tops([*hidden, *private])  # both are replaced in the service's view; binds bring paths back
    walks = []
    wanted: set[str] = set()
    for item in items:
        searched, followed, end = lookup(item.path)
        walks.append((item, searched, end))
        # what must exist in the service's view: the links followed and the end (the directories
        # searched above them are then either bound, the tmpfs's or those systemd makes in its /tmp)
        for p in [*followed, end]:
            if any(_under(p, t) for t in hidden):
                wanted.add(next((r for r in bind_roots if _under(p, r)), p))
    binds = tuple(sorted(b for b in wanted if not any(b != o and _under(b, o) for o in wanted)))
    reach = Reach(binds)
    for item, searched, end in walks:
        for d in searched:
            _check(d, "x", item, binds, hidden)
        _check(end, item.mode, item, binds, hidden)
        reach.checked.append(end)
        if item.tree:
            _check_tree(end, item, binds, hidden)
    return reach


def _check(path: str, mode: str, item: Need, binds: tuple[str, ...], hidden: tuple[str, ...]) -> None:
    if any(_under(path, t) for t in hidden) and not any(_under(path, b) for b in binds):
        return  # above a bind: a directory of the service's tmpfs, searchable by anyone
    st = os.stat(path)
    need = (stat.S_IROTH if "r" in mode else 0) | (stat.S_IXOTH if "x" in mode else 0)
    if stat.S_ISDIR(st.st_mode) and mode == "x":
        need = stat.S_IXOTH
    if st.st_mode & need != need:
        perm = stat.S_IMODE(st.st_mode)
        kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
        verb = {"x": "searchable" if kind == "directory" else "executable", "r": "readable",
                "rx": "readable and searchable" if kind == "directory" else "readable and executable"}[mode]
        raise ConfigError(f"{item.what}: {kind} {path} is not {verb} by other users (mode {perm:04o}), as the "
                          f"service's user needs: chmod o+{mode} {path}, or install livetok under /opt "
                          "(docs/service.md)")


def _check_tree(top: str, item: Need, binds: tuple[str, ...], hidden: tuple[str, ...]) -> None:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]  # the service never writes or needs them
        for d in dirnames:
            _check(os.path.join(dirpath, d), "rx", item, binds, hidden)
        for f in filenames:
            _check(os.path.join(dirpath, f), "r", item, binds, hidden)


def service_reach(executable: Path) -> Reach:
    """install-service's check for the livetok it runs from."""
    return plan(needs(executable), roots())
