"""Passwords that do not leak: a :class:`Secret` never shows its value in ``repr``, ``str`` or
f-strings, and :func:`read_secret_file` reads one from a file without ever echoing it.

Passwords come from a file (``--password-file``, systemd's ``$CREDENTIALS_DIRECTORY``) or from code,
never from a URL, the command line or the environment (docs/bus.md).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from livetok.errors import ConfigError

MAX_SECRET_BYTES = 65535  # an MQTT password is binary data with a u16 length


class Secret:
    """A password: ``reveal()`` gives the value to the one place that sends it; anything that
    prints, logs or pickles a Secret sees ``Secret(***)``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def read_secret_file(path: str | os.PathLike[str], what: str = "password file") -> Secret:
    """The file's content as a Secret, without its one trailing newline (``\\n`` or ``\\r\\n``).

    A missing, unreadable, empty or oversized file is a ConfigError naming the file, never its content.
    """
    p = Path(path)
    try:
        raw = _read_regular(p, MAX_SECRET_BYTES + 2)  # + a line break
    except OSError as err:
        reason = err.strerror.lower() if err.strerror else type(err).__name__
        raise ConfigError(f"{what} {p}: cannot read it: {reason}") from None
    except ValueError as err:  # a NUL in the path, or not a regular file
        raise ConfigError(f"{what} {p}: cannot read it: {err}") from None
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    if not raw:
        raise ConfigError(f"{what} {p} is empty")
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(f"{what} {p} holds more than {MAX_SECRET_BYTES} bytes")
    try:
        return Secret(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p} is not UTF-8 text") from None


def _read_regular(p: Path, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes of a regular file, opened without blocking: a FIFO would block
    forever and /dev/zero never ends (ValueError for those, naming what they are)."""
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise ValueError(f"it is {kind}, not a regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
