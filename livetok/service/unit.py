"""The systemd unit of the livetok daemon, rendered for one livetok executable.

``systemd/livetok.service`` in the source tree is this text for ``/opt/livetok/.venv/bin/livetok``
(a test keeps the two equal); ``livetok install-service`` writes it for the livetok it runs from.
Every line is explained in docs/service.md, with what it forbids and what it would break.
"""

from __future__ import annotations

# Paths as the service sees them at run time (never prefixed by install-service's --root).
CONFIG_PATH = "/etc/livetok/config.yaml"
CREDENTIAL_NAME = "mqtt-password"  # the config's mqtt.password_credential
CREDENTIAL_PATH = f"/etc/livetok/{CREDENTIAL_NAME}"
UNIT_NAME = "livetok.service"
REFERENCE_EXECUTABLE = "/opt/livetok/.venv/bin/livetok"  # the one systemd/livetok.service names
REFERENCE_DOCS = "/opt/livetok/docs/service.md"
# The directories systemd creates for the service at its start (StateDirectory=, CacheDirectory=,
# RuntimeDirectory= livetok): check-config accepts a file sink in the first before they exist.
STATE_DIRECTORY = "/var/lib/livetok"
CACHE_DIRECTORY = "/var/cache/livetok"
RUNTIME_DIRECTORY = "/run/livetok"
# Exit statuses a restart cannot fix (systemd.exec(5) "Process exit codes"; numbers, which every
# systemd accepts in RestartPreventExitStatus=): 78 EX_CONFIG (livetok: a bad configuration),
# 203 EXEC (the executable or its interpreter cannot be run), 226 NAMESPACE (a path of the sandbox,
# e.g. a BindReadOnlyPaths= source, is missing), 243 CREDENTIALS (the credential file is missing).
NO_RESTART_STATUSES = (78, 203, 226, 243)

_TEMPLATE = """\
# livetok: streaming media tokenizer daemon (docs/service.md explains every line).
# Written by `livetok install-service`; re-running it rewrites this file. Local changes belong in a
# drop-in (`systemctl edit livetok`), which survives that.
[Unit]
Description=livetok streaming media tokenizer
{documentation}Wants=network-online.target
After=network-online.target sound.target
# A service that keeps failing stops being restarted: at most 10 starts in 10 minutes (then
# `systemctl reset-failed livetok`). The default (5 in 10 s) never trips at RestartSec=2.
StartLimitIntervalSec=600
StartLimitBurst=10

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start} run -c {config}
# SIGHUP, then wait until the daemon says the new configuration is applied or refused (non-zero):
# `systemctl reload` returns only then (Type=notify-reload, which does this, needs systemd 253).
ExecReload={exec_start} reload --pid $MAINPID
WatchdogSec=30
TimeoutStartSec=90
TimeoutStopSec=20
Restart=on-failure
RestartSec=2
# What restarting cannot fix: 78 a bad configuration, 203/EXEC, 226/NAMESPACE, 243/CREDENTIALS
RestartPreventExitStatus={no_restart}
SyslogIdentifier=livetok
# Lines without a <N> priority prefix are errors: the daemon prefixes every event line itself, so an
# unprefixed line is a command-line error (a bad configuration at start, exit 78) or a crash.
SyslogLevel=err

# Who: a user allocated at start, no account to manage; video and audio for cameras and microphones.
DynamicUser=yes
SupplementaryGroups=video audio
# Where: /etc/livetok (read), /var/lib/livetok (state, file sinks), /var/cache/livetok: numba's
# compiled kernels ($CACHE_DIRECTORY/numba; the installation is read-only to the service, and a cache
# in PrivateTmp would be compiled again at every start).
ConfigurationDirectory=livetok
StateDirectory=livetok
CacheDirectory=livetok
# /run/livetok: the reload answers (`livetok reload` waits for them)
RuntimeDirectory=livetok
RuntimeDirectoryMode=0700
WorkingDirectory=/var/lib/livetok
LoadCredential={credential}:{credential_path}
Environment=PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
UMask=0077

# Devices: cameras (video4linux) and ALSA only.
DevicePolicy=closed
DeviceAllow=char-video4linux rw
DeviceAllow=char-alsa rw

# Hardening. MemoryDenyWriteExecute= stays off: numba's LLVM JIT and torch's oneDNN kernels need
# memory that becomes executable (tested: both fail under the kernel's equivalent, PR_SET_MDWE).
CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes
ProtectSystem=strict
{protect_home}PrivateTmp=yes
PrivateUsers=yes
PrivateMounts=yes
ProtectHostname=yes
ProtectClock=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
KeyringMode=private
SystemCallArchitectures=native
# @system-service includes @resources: torch's OpenMP threads call sched_setaffinity and mbind.
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""


def unit_quote(arg: str) -> str:
    """One ExecStart= word: ``%`` and ``$`` escaped (systemd expands both), quoted when it holds
    white space, a quote or a backslash. ValueError for a character a unit file cannot carry."""
    if any(c in arg for c in "\n\r\0"):
        raise ValueError(f"{arg!r}: a path with a line break or NUL cannot be written into a unit file")
    word = arg.replace("%", "%%").replace("$", "$$")
    if any(c.isspace() or c in "\"'\\;" for c in word):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def bind_path(path: str) -> str:
    """One BindReadOnlyPaths= entry: an absolute path, ``%`` escaped. ValueError for what the
    setting cannot carry unquoted (white space, quotes, backslashes, ``:`` which separates a
    source from a destination)."""
    if not path.startswith("/"):
        raise ValueError(f"{path}: a bind mount needs an absolute path")
    if any(c.isspace() or c in "\"'\\:\0" for c in path):
        raise ValueError(f"{path}: a path with white space, a quote, a backslash or ':' cannot be bound read-only "
                         "by the unit")
    return path.replace("%", "%%")


def protect_home(binds: tuple[str, ...]) -> str:
    """``ProtectHome=yes``; with paths under /home, /root or /run/user the service must reach (its
    interpreter, its checkout), an empty read-only tmpfs there with exactly those bound read-only.
    Paths under /tmp or /var/tmp are bound read-only into the service's private ones likewise."""
    home = [b for b in binds if any(b == t or b.startswith(t + "/") for t in ("/home", "/root", "/run/user"))]
    if not binds:
        return "ProtectHome=yes\n"
    if home:
        lines = ["# livetok or its Python lives under a home directory: an empty, read-only /home, /root and",
                 "# /run/user, with only these bound read-only (checked by install-service)",
                 "ProtectHome=tmpfs"]
    else:
        lines = ["ProtectHome=yes"]
    if len(home) < len(binds):
        lines += ["# livetok or its Python lives under /tmp or /var/tmp: bound read-only into the private ones"]
    lines += [f"BindReadOnlyPaths={bind_path(b)}" for b in binds]
    return "\n".join(lines) + "\n"


def render_unit(executable: str, docs: str | None = None, binds: tuple[str, ...] = ()) -> str:
    """The unit text for the livetok executable at ``executable`` (an absolute path); ``docs``: the
    absolute path of docs/service.md in the source tree it came from, when there is one; ``binds``:
    directories under a home directory the service must reach (:mod:`livetok.service.reach`)."""
    if not executable.startswith("/"):
        raise ValueError(f"{executable}: ExecStart= needs an absolute path")
    documentation = ""
    if docs is not None and docs.startswith("/") and not any(c.isspace() or c in "%$" for c in docs):
        documentation = f"Documentation=file://{docs}\n"
    return _TEMPLATE.format(exec_start=unit_quote(executable), config=CONFIG_PATH, credential=CREDENTIAL_NAME,
                            credential_path=CREDENTIAL_PATH, documentation=documentation,
                            no_restart=" ".join(str(s) for s in NO_RESTART_STATUSES),
                            protect_home=protect_home(binds))


if __name__ == "__main__":  # python -m livetok.service.unit > systemd/livetok.service
    print(render_unit(REFERENCE_EXECUTABLE, REFERENCE_DOCS), end="")
