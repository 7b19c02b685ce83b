"""``livetok reload --pid PID``: the unit's ``ExecReload=``. SIGHUP to the daemon, then wait until it
says the new configuration is applied or refused, so that ``systemctl reload livetok`` returns only
then, on every systemd (the protocol: :mod:`livetok.daemon.notify`, "Reload answers").

Exit status: 0 applied (or nothing changed); 78 refused (the file is invalid or changes what needs a
restart; the daemon keeps running with its configuration, and its own line says why); 69 no daemon
with that PID, or no answer within ``--timeout`` (the daemon exited, or it runs without
``$RUNTIME_DIRECTORY``); 73 the request cannot be written. One line on stderr for each failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import time
from pathlib import Path
from typing import TextIO

from livetok.daemon.notify import ANSWER_SUFFIX, REQUEST_SUFFIX
from livetok.errors import ConfigError, LivetokError, OutputError
from livetok.outputs import describe_oserror
from livetok.runtime.log import stderr_is_journal

POLL_S = 0.02
TIMEOUT_S = 60.0  # below the unit's TimeoutStartSec=90, which bounds ExecReload= too


class ReloadError(LivetokError):
    """No daemon to reload, or no answer from it in time."""

    exit_code = 69  # EX_UNAVAILABLE


class ReloadRefused(LivetokError):
    """The daemon refused the new configuration and runs on with the old one."""

    exit_code = 78  # EX_CONFIG


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reload_and_wait(pid: int, timeout_s: float, directory: str | None, out: TextIO) -> int:
    """Ask daemon ``pid`` to reload and wait for its answer; see the module's docstring."""
    where = directory or os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if not where:
        raise ConfigError("no --runtime-dir given and $RUNTIME_DIRECTORY is not set (the unit's RuntimeDirectory= "
                          "sets it for ExecReload= and the daemon)")
    if not timeout_s > 0:
        raise ConfigError(f"--timeout {timeout_s}: expected a number of seconds above 0")
    token = f"reload-{os.getpid()}-{secrets.token_hex(4)}"
    request = Path(where) / (token + REQUEST_SUFFIX)
    answer = Path(where) / (token + ANSWER_SUFFIX)
    try:
        fd = os.open(request, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
    except OSError as err:
        raise OutputError(f"cannot write the reload request {request}: {describe_oserror(err)}") from None
    try:
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            raise ReloadError(f"no process {pid} to reload") from None
        except PermissionError:
            raise ReloadError(f"not allowed to signal process {pid}") from None
        result = _wait(answer, pid, timeout_s)
    finally:
        for p in (request, answer):
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
    if result.get("outcome") == "refused":
        raise ReloadRefused(str(result.get("line", "reload refused")))
    if not stderr_is_journal(out):  # under the unit, the daemon's own line is in the journal already
        print(f"livetok: {result.get('line', 'reload: done')}", file=out)
    return 0


def _wait(answer: Path, pid: int, timeout_s: float) -> dict[str, object]:
    end = time.monotonic() + timeout_s
    while True:
        try:
            data = json.loads(answer.read_bytes())
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as err:
            raise ReloadError(f"unreadable reload answer {answer}: {err}") from None
        else:
            return data if isinstance(data, dict) else {}
        if not _alive(pid):
            raise ReloadError(f"process {pid} exited before it answered the reload")
        if time.monotonic() >= end:
            raise ReloadError(f"process {pid} did not answer the reload within {timeout_s:g} s (the daemon's log says "
                              "why; it runs on)")
        time.sleep(POLL_S)
