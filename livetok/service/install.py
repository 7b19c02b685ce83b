"""``livetok install-service`` and ``livetok uninstall-service``.

install-service writes, under ``--root`` (default ``/``; another root is a staging tree for tests and
packaging, and nothing is reloaded there):

* ``etc/systemd/system/livetok.service``: the unit (:mod:`livetok.service.unit`), its ExecStart the
  ``livetok`` script beside the Python running this command (the environment it is run from), mode
  0644; rewritten on every install, so an upgrade is ``scripts/setup.sh`` then install-service again.
  Before anything is written, :mod:`livetok.service.reach` checks that the service's user can run
  that script, its interpreter and its libraries, and which of them under a home directory the unit
  must bind read-only; one that cannot work is refused in one line (78);
* ``etc/livetok/config.yaml``: from ``-c FILE`` (validated first), else the source tree's documented
  ``config.yaml``; **kept** when one is already there;
* ``etc/livetok/mqtt-password``: the MQTT password, loaded by ``LoadCredential=``; created empty with
  mode 0600 when absent, **never** overwritten or truncated.

The service runs as a ``DynamicUser`` (no account is created). When systemd runs here (and the
root is ``/``), ``systemctl daemon-reload`` is run; otherwise the commands to run are printed.
Every failure is one line: 73 for a file or directory that cannot be written, 78 for a bad
``-c FILE`` or an environment without a livetok executable, 69 when systemctl fails.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from livetok.errors import ConfigError, LivetokError, OutputError
from livetok.outputs import atomic_output, describe_oserror
from livetok.service.reach import service_reach, source_tree
from livetok.service.unit import CONFIG_PATH, CREDENTIAL_NAME, CREDENTIAL_PATH, UNIT_NAME, render_unit

SYSTEMD_RUNTIME = Path("/run/systemd/system")  # exists when systemd is PID 1 (sd_booted())
SYSTEMCTL = "systemctl"
SYSTEMCTL_TIMEOUT_S = 90.0
STATE_DIRS = (("/var/lib/livetok", "token files"), ("/var/lib/private/livetok", "token files"),
              ("/var/cache/livetok", "numba's cache"), ("/var/cache/private/livetok", "numba's cache"))


class SystemctlError(LivetokError):
    """systemctl failed (or is missing) while systemd runs: the files are in place, systemd does not know yet."""

    exit_code = 69  # EX_UNAVAILABLE


@dataclass(frozen=True)
class Layout:
    """Where install-service writes, under ``root``."""

    root: Path

    def _at(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    @property
    def unit_dir(self) -> Path:
        return self._at("/etc/systemd/system")

    @property
    def unit(self) -> Path:
        return self.unit_dir / UNIT_NAME

    @property
    def config(self) -> Path:
        return self._at(CONFIG_PATH)

    @property
    def credential(self) -> Path:
        return self._at(CREDENTIAL_PATH)

    @property
    def is_host(self) -> bool:
        return self.root.resolve() == Path("/")


def systemd_running(layout: Layout) -> bool:
    """Whether to talk to systemd: the root is this machine's and systemd is PID 1 here."""
    return layout.is_host and SYSTEMD_RUNTIME.is_dir()


def livetok_executable() -> Path:
    """The ``livetok`` script of the environment this runs from (beside ``sys.executable``; not
    resolved: a venv's python is a symlink to the system's, its livetok is not)."""
    exe = Path(os.path.abspath(sys.executable)).parent / "livetok"
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        raise ConfigError(f"no livetok executable at {exe} (beside {sys.executable}): install livetok in this "
                          "environment first (bash scripts/setup.sh), then run its own livetok install-service")
    return exe


def _cannot(path: Path, err: OSError, what: str = "write") -> OutputError:
    hint = " (run as root: sudo livetok install-service ...)" if err.errno in (errno.EACCES, errno.EPERM) else ""
    return OutputError(f"cannot {what} {path}: {describe_oserror(err)}{hint}")


def _check_writable(layout: Layout) -> None:
    """The error a write would give, before any check or write: the first existing directory on the
    way to the unit's must be writable (not root: ``permission denied (run as root ...)``)."""
    probe = layout.unit_dir
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.is_dir() and not os.access(probe, os.W_OK | os.X_OK):
        raise _cannot(probe, PermissionError(errno.EACCES, os.strerror(errno.EACCES)))


def _mkdir(path: Path) -> None:
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create {path}: {probe} is not a directory")
    try:
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as err:
        raise _cannot(path, err, "create") from None
    if not path.is_dir():
        raise OutputError(f"cannot create {path}: it exists and is not a directory")


def _write(path: Path, data: bytes, mode: int) -> None:
    if path.is_dir():
        raise OutputError(f"cannot write {path}: a directory is in the way")
    try:
        with atomic_output(path) as tmp:
            tmp.write_bytes(data)
            tmp.chmod(mode)
    except OSError as err:
        raise _cannot(path, err) from None


def _create_credential(path: Path) -> bool:
    """Create the empty credential file (0600) unless something is already there; True if created.
    O_EXCL | O_NOFOLLOW: an existing file, or a link to one, is never opened for writing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    except OSError as err:
        raise _cannot(path, err, "create") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
    finally:
        os.close(fd)
    return True


def _systemctl(*args: str) -> None:
    cmd = [SYSTEMCTL, *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SystemctlError(f"{' '.join(cmd)} failed: {err}") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise SystemctlError(f"{' '.join(cmd)} failed: {why}")


def _config_source(config: str | None) -> Path:
    from livetok.config import load_config

    if config is None:
        tree = source_tree()
        if tree is None:
            raise ConfigError("no -c FILE given and this livetok does not run from a source tree with the "
                              "documented config.yaml: give -c FILE")
        return tree / "config.yaml"
    load_config(config)  # a bad file is refused before anything is written (ConfigError, its key and line)
    return Path(config)


def install_service(root: str, config: str | None, out: TextIO, err: TextIO) -> int:
    """``livetok install-service [-c FILE] [--root DIR]``; 0 when everything is in place."""
    layout = Layout(Path(root))
    exe = livetok_executable()
    source = _config_source(config)
    if not layout.root.is_dir():
        what = "does not exist" if not layout.root.exists() else "is not a directory"
        raise OutputError(f"--root {layout.root}: {what}")
    _check_writable(layout)
    reach = service_reach(exe)  # refused here, before anything is written, when the service could not start
    tree = source_tree()
    docs = tree / "docs" / "service.md" if tree is not None else None
    try:
        unit_text = render_unit(str(exe), str(docs) if docs is not None and docs.is_file() else None, reach.binds)
    except ValueError as e:
        raise ConfigError(f"cannot write the unit: {e}; install livetok under /opt (docs/service.md)") from None

    _mkdir(layout.unit_dir)
    _mkdir(layout.config.parent)
    before = layout.unit.read_text(errors="replace") if layout.unit.is_file() else None
    _write(layout.unit, unit_text.encode(), 0o644)
    state = "unchanged" if before == unit_text else "updated" if before is not None else "installed"
    print(f"{state} {layout.unit} (ExecStart={exe} run -c {CONFIG_PATH})", file=out)
    if reach.binds:
        print(f"  hidden from the service (ProtectHome=, PrivateTmp=), bound read-only for it: {' '.join(reach.binds)}",
              file=out)
    for b in reach.binds:
        if any(b == t or b.startswith(t + "/") for t in ("/tmp", "/var/tmp")):
            print(f"  warning: {b} is under a temporary directory, emptied at reboot: the service will fail to "
                  "start then (226/NAMESPACE); install livetok under /opt for a lasting service", file=out)

    if layout.config.exists() or layout.config.is_symlink():
        if not layout.config.is_file():
            raise OutputError(f"{layout.config} exists and is not a regular file")
        print(f"kept {layout.config} (already there; not overwritten)", file=out)
        _warn_if_invalid(layout.config, err)
    else:
        try:
            data = source.read_bytes()
        except OSError as e:
            raise ConfigError(f"{source}: cannot read it: {describe_oserror(e)}") from None
        _write(layout.config, data, 0o644)
        print(f"installed {layout.config} (from {source}){_still_to_set(layout.config)}", file=out)

    if _create_credential(layout.credential):
        print(f"created {layout.credential} (empty, mode 0600): the broker password goes in it, with "
              f"mqtt.username and mqtt.password_credential: {CREDENTIAL_NAME} in the config", file=out)
    else:
        print(f"kept {layout.credential} (already there; never overwritten)", file=out)
        _warn_if_exposed(layout.credential, err)

    if systemd_running(layout):
        _systemctl("daemon-reload")
        print("systemd reloaded. Check the configuration, then enable and start the service:", file=out)
    else:
        where = "a staging root" if not layout.is_host else "systemd is not running here"
        print(f"nothing reloaded ({where}). On the target machine, check the configuration, then run:", file=out)
        print("  systemctl daemon-reload", file=out)
    # the credential file is named after the credential: check-config finds it where the service will
    print(f"  sudo env CREDENTIALS_DIRECTORY={Path(CREDENTIAL_PATH).parent} {exe} check-config -c {CONFIG_PATH}",
          file=out)
    print("  systemctl enable --now livetok", file=out)
    print("  journalctl -u livetok -f          # its log; livetok monitor mqtt://BROKER to watch it", file=out)
    return 0


def _still_to_set(config: Path) -> str:
    """What the installed configuration still lacks for a service that does something: sources and
    a sink (the bus's host, or a file sink)."""
    from livetok.config import load_config

    cfg = load_config(config)
    missing = [] if cfg.sources else ["sources:"]
    if cfg.bus is None and not cfg.sinks:
        missing.append("mqtt.host")
    return f": set {' and '.join(missing)} there" if missing else ""


def _warn_if_invalid(config: Path, err: TextIO) -> None:
    from livetok.config import load_config

    try:
        load_config(config)
    except ConfigError as e:
        print(f"livetok: warning: the kept configuration is invalid, the service would exit 78: {e}", file=err)


def _warn_if_exposed(path: Path, err: TextIO) -> None:
    try:
        mode = path.lstat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o077:
        print(f"livetok: warning: {path} is readable by others (mode {mode:04o}): chmod 600 {path}", file=err)


def _enable_links(layout: Layout) -> list[Path]:
    """``systemctl enable``'s symlinks (``*.wants/livetok.service``), dangling or not (glob skips those)."""
    if not layout.unit_dir.is_dir():
        return []
    dirs = [d for d in layout.unit_dir.iterdir() if d.name.endswith((".wants", ".requires")) and d.is_dir()]
    return [d / UNIT_NAME for d in sorted(dirs) if (d / UNIT_NAME).is_symlink()]


def uninstall_service(root: str, out: TextIO, err: TextIO) -> int:
    """``livetok uninstall-service [--root DIR]``: the unit goes; configuration, credential and state stay."""
    layout = Layout(Path(root))
    if not layout.root.is_dir():
        raise OutputError(f"--root {layout.root}: does not exist or is not a directory")
    links = _enable_links(layout)
    if not layout.unit.exists() and not layout.unit.is_symlink() and not links:
        print(f"{UNIT_NAME} is not installed (no {layout.unit}); nothing removed", file=out)
        return 0
    running = systemd_running(layout)
    if running:
        _systemctl("disable", "--now", UNIT_NAME)  # stops it and removes its enable links
    for path in [layout.unit, *links]:
        try:
            if path.is_dir() and not path.is_symlink():
                raise OutputError(f"cannot remove {path}: it is a directory")
            path.unlink(missing_ok=True)
        except OSError as e:
            raise _cannot(path, e, "remove") from None
        print(f"removed {path}", file=out)
    if running:
        _systemctl("daemon-reload")
        print("systemd reloaded", file=out)
    else:
        print("nothing reloaded; on the target machine: systemctl disable --now livetok; systemctl daemon-reload",
              file=out)
    drop_in = layout.unit_dir / f"{UNIT_NAME}.d"
    kept = [f"{layout.config.parent} (configuration and credential)"]
    kept += [f"{drop_in} (drop-ins)"] if drop_in.exists() else []
    kept += [f"{layout.root / d.lstrip('/')} ({what})" for d, what in STATE_DIRS
             if (layout.root / d.lstrip("/")).exists()]
    print(f"left in place: {'; '.join(kept)}; remove them by hand when no longer wanted", file=out)
    return 0
