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

_TEMPLATE = """\
# livetok: streaming media tokenizer daemon (docs/service.md explains every line).
# Written by `livetok install-service`; re-running it rewrites this file. Local changes belong in a
# drop-in (`systemctl edit livetok`), which survives that.
[Unit]
Description=livetok streaming media tokenizer
{documentation}Wants=network-online.target
After=network-online.target sound.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start} run -c {config}
ExecReload=/bin/kill -HUP $MAINPID
WatchdogSec=30
TimeoutStartSec=90
TimeoutStopSec=20
Restart=on-failure
RestartSec=2
# 78: a bad configuration; restarting cannot fix it
RestartPreventExitStatus=78
SyslogIdentifier=livetok

# Who: a user allocated at start, no account to manage; video and audio for cameras and microphones.
DynamicUser=yes
SupplementaryGroups=video audio
# Where: /etc/livetok (read), /var/lib/livetok (state, file sinks), /var/cache/livetok: numba's
# compiled kernels ($CACHE_DIRECTORY/numba; the installation is read-only to the service, and a cache
# in PrivateTmp would be compiled again at every start).
ConfigurationDirectory=livetok
StateDirectory=livetok
CacheDirectory=livetok
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
ProtectHome=yes
PrivateTmp=yes
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


def render_unit(executable: str, docs: str | None = None) -> str:
    """The unit text for the livetok executable at ``executable`` (an absolute path); ``docs``: the
    absolute path of docs/service.md in the source tree it came from, when there is one."""
    if not executable.startswith("/"):
        raise ValueError(f"{executable}: ExecStart= needs an absolute path")
    documentation = ""
    if docs is not None and docs.startswith("/") and not any(c.isspace() or c in "%$" for c in docs):
        documentation = f"Documentation=file://{docs}\n"
    return _TEMPLATE.format(exec_start=unit_quote(executable), config=CONFIG_PATH, credential=CREDENTIAL_NAME,
                            credential_path=CREDENTIAL_PATH, documentation=documentation)


if __name__ == "__main__":  # python -m livetok.service.unit > systemd/livetok.service
    print(render_unit(REFERENCE_EXECUTABLE, REFERENCE_DOCS), end="")
