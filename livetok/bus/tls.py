"""TLS for broker connections: one :class:`ssl.SSLContext` built from file paths, verifying the
broker's certificate and host name always (there is no "insecure" switch)."""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from livetok.errors import ConfigError

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True)
class TlsOptions:
    """``ca_file``: PEM CA bundle to trust (None: the system's CAs); ``cert_file``/``key_file``: a
    client certificate and its key (PEM), for brokers that require one; ``min_version``: "1.2" or "1.3"."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    min_version: str = "1.2"


def make_ssl_context(opts: TlsOptions) -> ssl.SSLContext:
    """A client context for ``opts``; unreadable or invalid files are a ConfigError naming the file."""
    if opts.min_version not in _VERSIONS:
        raise ConfigError(f"TLS minimum version {opts.min_version!r} is not one of {', '.join(_VERSIONS)}")
    if opts.key_file is not None and opts.cert_file is None:
        raise ConfigError("a TLS client key was given without its certificate (cert_file)")
    _regular(opts.ca_file, f"TLS CA file {opts.ca_file}")
    _regular(opts.cert_file, f"TLS client certificate {opts.cert_file}")
    _regular(opts.key_file, f"TLS client key {opts.key_file}")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=_path(opts.ca_file))
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"TLS CA file {opts.ca_file}: cannot load it: {_reason(err)}") from None
    ctx.minimum_version = _VERSIONS[opts.min_version]
    if opts.cert_file is not None:
        try:
            ctx.load_cert_chain(str(opts.cert_file), _path(opts.key_file))
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(
                f"TLS client certificate {opts.cert_file} (key {opts.key_file or 'in the same file'}): "
                f"cannot load it: {_reason(err)}"
            ) from None
    return ctx


def _regular(p: Path | None, what: str) -> None:
    """OpenSSL reads a FIFO or a device until it ends, which may be never: refuse anything but a
    regular file (a missing one is left to OpenSSL's own message)."""
    if p is None:
        return
    try:
        mode = os.stat(p).st_mode
    except (OSError, ValueError):  # missing or unreadable, a NUL in the path: OpenSSL says which below
        return
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise ConfigError(f"{what}: cannot load it: it is {kind}, not a regular file")


def _path(p: Path | None) -> str | None:
    return None if p is None else str(p)


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    return str(err) or type(err).__name__
