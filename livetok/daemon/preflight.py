"""Everything ``livetok run`` checks before capture starts, so that ``livetok check-config`` can check it too.

Validation of the file itself happens when it is loaded (:func:`livetok.config.load_config`); this adds
what needs the file system: the codebooks load and match the configuration; every file source exists;
every file sink's directory exists and is writable, and an existing sink file is a ``.ltk`` file that no
other process holds; the Prometheus endpoint's address can be listened on. A problem raises the same
one-line error ``run`` would give, naming the key.

One exception, for ``check-config`` only (``notes``): a file sink directly in a directory that the
systemd unit's ``StateDirectory=`` or ``CacheDirectory=`` names (:data:`SYSTEMD_CREATES`), when that
directory does not exist yet (its parent does). systemd creates it, owned by the service's user, at
the service's first start, so a service's configuration can be checked before that start; the
check says so in a note instead of failing. Deeper paths, and every other directory, are checked
as always (systemd creates only the directory itself), and ``run`` never takes the exception.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

from livetok import config as dc
from livetok.config import LivetokConfig
from livetok.errors import CodebookError, ConfigError, OutputError
from livetok.wire.ltkfile import LTK_MAGIC

if TYPE_CHECKING:
    from livetok.tokenizers.codebooks import CodebookSet


def checked_codebooks(cfg: LivetokConfig) -> CodebookSet:
    """The codebooks, loaded and checked against the configuration (ConfigError naming
    ``tokenizer.codebooks``). numpy and safetensors only: no torch."""
    from livetok.tokenizers.codebooks import load_codebooks

    try:
        cbs = load_codebooks(cfg.tokenizer.codebooks)
        cbs.check(cfg.tokenizer)
    except CodebookError as err:
        raise ConfigError(f"{cfg.where('tokenizer', 'codebooks')}: {err}") from err
    return cbs


def check_codebooks(cfg: LivetokConfig) -> str:
    """Load and check the codebooks (ConfigError naming ``tokenizer.codebooks``); their id."""
    return checked_codebooks(cfg).codebook_id


def check_sources(cfg: LivetokConfig) -> None:
    """Every file source's file exists; what each file source's media holds is noted in ``cfg``
    (:meth:`~livetok.config.LivetokConfig.note_tracks`: the default groups use it)."""
    for i, s in enumerate(cfg.sources):
        if isinstance(s, dc.FileSource) and not Path(s.path).is_file():
            what = "no such file" if not Path(s.path).exists() else "not a regular file"
            raise ConfigError(f"{cfg.where('sources', i, 'path')}: {s.path}: {what}")
    cfg.note_tracks({s.name: t for s in cfg.sources if (t := media_tracks(s)) is not None})


def media_tracks(source: object) -> tuple[bool, bool] | None:
    """(has video, has audio) of a file source, from its header; None for another kind or a file
    that does not open (opening it at capture says why, in its own line)."""
    if not isinstance(source, dc.FileSource):
        return None
    from livetok.errors import MediaError
    from livetok.media.decode import open_media  # PyAV: only with a file source

    try:
        container = open_media(source.path)
    except MediaError:
        return None
    with container:
        return bool(container.streams.video), bool(container.streams.audio)


# What the livetok unit's StateDirectory=/CacheDirectory= make at start (tests/test_service_unit.py
# keeps this equal to systemd/livetok.service).
SYSTEMD_CREATES = {"/var/lib/livetok": "StateDirectory=livetok", "/var/cache/livetok": "CacheDirectory=livetok"}


def check_file_sink(path: Path, key: str, notes: list[str] | None = None) -> None:
    """Would a file sink at ``path`` open? (OutputError naming ``key`` if not; nothing is created.)
    With ``notes`` (check-config): a directory systemd creates at the service's start, not there
    yet, is a note instead (see the module's docstring)."""
    parent = path.parent
    made = SYSTEMD_CREATES.get(str(parent))
    if notes is not None and made and not parent.exists() and parent.parent.is_dir():
        notes.append(f"{key}: {parent} does not exist yet; systemd creates it for the service at its start "
                     f"({made}), so the file is not checked further")
        return
    if not parent.is_dir():
        raise OutputError(f"{key}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{key}: directory {parent} is not writable")
    if not path.exists():
        return
    if not path.is_file():
        raise OutputError(f"{key}: {path} is not a regular file; refusing to write into it")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise OutputError(f"{key}: {path}: {err.strerror or err}") from err
    try:
        head = os.pread(fd, 4, 0)
        if head and head != LTK_MAGIC:
            raise OutputError(f"{key}: {path} exists and is not a .ltk token file; refusing to overwrite it")
        from livetok.sinks.file import HELD

        if os.path.realpath(path) not in HELD:  # our own sink's lock (a reload) is no conflict
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputError(f"{key}: {path} is in use by another process (locked)") from None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    if not os.access(path, os.W_OK):
        raise OutputError(f"{key}: {path} is not writable")


def check_sinks(cfg: LivetokConfig, notes: list[str] | None = None) -> None:
    for i, s in enumerate(cfg.sinks):
        if isinstance(s, dc.FileSink):
            check_file_sink(Path(s.path), f"{cfg.where('sinks', i, 'path')}: sink file:{s.path}", notes)


def check_bus(cfg: LivetokConfig) -> None:
    """The MQTT section's files: the password (file or systemd credential) readable and not empty,
    the TLS CA, certificate and key loadable — ConfigError naming the key, never the secret."""
    bus = cfg.bus
    if bus is None:
        return
    from livetok.sinks.mqtt_setup import connect_options, default_instance, load_password

    try:
        section = ".".join(str(k) for k in cfg.bus_key())
        connect_options(bus, load_password(bus, section), bus.instance or default_instance())
    except ConfigError as err:
        text = str(err)
        key = next((k for marker, k in (("CA file", ("tls", "ca_file")), ("client certificate", ("tls", "cert_file")),
                                        ("password_credential", ("password_credential",)),
                                        ("password_file", ("password_file",)))
                    if marker in text), ())
        raise ConfigError(f"{cfg.where(*cfg.bus_key(*key))}: {text}") from None


def check_metrics(cfg: LivetokConfig) -> None:
    """The Prometheus endpoint's address can be listened on now (ConfigError naming ``metrics.listen``:
    a port in use, an address this host does not have); the running daemon's own endpoint passes."""
    listen = cfg.metrics.listen
    if listen is None:
        return
    from livetok.daemon.prometheus import check_listen, listen_error, parse_listen

    host, port = parse_listen(listen)
    try:
        check_listen(host, port)
    except OSError as err:
        raise ConfigError(f"{cfg.where('metrics', 'listen')}: {listen_error(listen, err)}") from None


def check_tokenizers(cfg: LivetokConfig) -> list[str]:
    """The plug-in tokenizers' options (no torch), then their models and codebooks loaded, checked and
    probed as ``run`` does at its start: one line naming ``tokenizers.N.KEY`` (exit 78, or 65 for a
    model or codebook file). Returns ``NAME(kind, stream, codebook id)`` for each."""
    from livetok.tokenizers.registry import check_plugins, load_plugins

    if not check_plugins(cfg):
        return []
    return [f"{n}({p.kind}, {p.modality}/{p.spec.name}, {p.codebook_id})" for n, p in load_plugins(cfg).items()]


def preflight(cfg: LivetokConfig, notes: list[str] | None = None) -> str:
    """All of the above; returns the codebook id. ``notes``: check-config's (see the module's docstring)."""
    check_sources(cfg)
    check_sinks(cfg, notes)
    check_bus(cfg)
    check_metrics(cfg)
    return check_codebooks(cfg)
