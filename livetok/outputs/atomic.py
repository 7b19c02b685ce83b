"""Output files that are whole or absent: written to a temporary file beside the destination and
renamed into place only when the command succeeds.

    with atomic_output(Path("out.ltk")) as tmp:
        write_everything_to(tmp)          # an exception here leaves out.ltk as it was

On success the temporary file is flushed to disk (``fsync``) and renamed over the destination in
one step (``os.replace``, atomic on POSIX), then the directory is synced. On any exception —
including ``KeyboardInterrupt`` — the temporary file is removed and the destination is untouched.
A file that already exists keeps its permission bits; a new one gets ``0666 & ~umask``.

A destination that exists and is not a regular file (``/dev/null``, ``/dev/stdout``, a FIFO) is
written directly: there is no file to destroy, and renaming over it would replace the device.
Failures to create or place the output raise :class:`~livetok.errors.OutputError` (exit 73) with
one line naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from livetok.errors import OutputError
from livetok.outputs.interrupts import checkpoint, held


def describe_oserror(err: OSError) -> str:
    """A short reason for an OSError, naming a full disk as such."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    if err.errno == errno.EROFS:
        return "read-only file system"
    if err.errno == errno.EFBIG:
        return "file too large (a file size limit was reached)"
    return err.strerror.lower() if err.strerror else str(err)


def _problem_with_directory(parent: Path) -> str:
    """Why files cannot be created in ``parent``, or ""."""
    probe = parent
    while True:
        if probe.is_dir():
            break
        if probe.exists() or probe.is_symlink():
            return f"cannot create it: {probe} is not a directory"
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe != parent:
        return f"cannot create it: directory {parent} does not exist"
    return ""


def check_writable_dir(directory: Path) -> None:
    """Raise OutputError unless a file can be created in ``directory`` (which must exist)."""
    problem = _problem_with_directory(directory)
    if problem:
        raise OutputError(f"{directory}: {problem.replace('cannot create it: ', 'cannot write there: ')}")
    tmp = directory / f".livetok-write-test.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise OutputError(f"{directory}: cannot write there: {describe_oserror(err)}") from None
    os.close(fd)
    tmp.unlink(missing_ok=True)


def _target(path: Path) -> Path:
    """Where the bytes must land: a symlink is followed, so the link stays and its file is replaced."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def prepare(dest: Path) -> tuple[Path, os.stat_result | None]:
    """Where ``dest``'s bytes go and what is there now; OutputError when it cannot be created."""
    target = _target(dest)
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as err:
        if err.errno != errno.ENOTDIR:
            raise OutputError(f"{dest}: cannot create it: {describe_oserror(err)}") from None
        st = None  # reported below, with the part of the path that is not a directory
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{dest}: cannot create it: is a directory")
    if st is None or stat.S_ISREG(st.st_mode):
        problem = _problem_with_directory(target.parent)
        if problem:
            raise OutputError(f"{dest}: {problem}")
    return target, st


def check_output(path: str | os.PathLike[str]) -> None:
    """Raise OutputError now if ``path`` could not be written later (before a long computation)."""
    dest = Path(path)
    target, st = prepare(dest)
    if st is None or stat.S_ISREG(st.st_mode):
        tmp, fd = open_temp(dest, target)
        os.close(fd)
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; see the module doc."""
    dest = Path(path)
    target, st = prepare(dest)
    if st is not None and not stat.S_ISREG(st.st_mode):
        yield target  # a device or a FIFO: written in place
        return
    parent = target.parent
    tmp: Path | None = None
    try:
        with held():  # a signal (livetok/outputs/interrupts.py) between creating it and knowing its name: not here
            tmp = create_temp(dest, target)
        yield tmp
        with held():  # nor between the rename and forgetting the name
            checkpoint()  # and not at all once asked to stop
            try:
                if st is not None:
                    os.chmod(tmp, stat.S_IMODE(st.st_mode))
                _fsync_file(tmp)
                os.replace(tmp, target)
                tmp = None
            except OSError as err:
                raise OutputError(f"{dest}: cannot write it: {describe_oserror(err)}") from None
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    _fsync_dir(parent)


def create_temp(dest: Path, target: Path) -> Path:
    """A new empty file ``.STEM.XXXXXXXX.tmp.SUFFIX`` beside ``target``; OutputError naming ``dest``."""
    tmp, fd = open_temp(dest, target)
    os.close(fd)
    return tmp


def open_temp(dest: Path, target: Path) -> tuple[Path, int]:
    """An exclusive new file ``.STEM.XXXXXXXX.tmp.SUFFIX`` beside ``target`` (mode 0666 & ~umask); the
    suffix is kept for tools that go by it."""
    for _ in range(100):
        tmp = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as err:
            raise OutputError(f"{dest}: cannot create it: {describe_oserror(err)}") from None
    raise OutputError(f"{dest}: cannot create a temporary file beside it")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; not every file system lets a directory be synced."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
