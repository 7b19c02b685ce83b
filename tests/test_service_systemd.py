"""The installed unit under a real systemd (252 on Debian 12), booted in a throwaway container by
``systemd-sandbox.sh`` (``../shared``'s, else the copy in ``scripts/``): nothing is faked.

From this checkout, as it is (its venv's ``python`` may link into a home directory, as root's pyenv
does here), inside the container: ``livetok install-service -c FILE``, the broker password in the
credential file, ``check-config`` before the first start (the file sink's directory does not exist
yet), a Mosquitto on loopback that accepts only users with a password and lets only ``cam1`` (the
credential's user) publish; then ``systemctl start`` to READY, tokens on the bus, the file sink in
the state directory, ``systemctl reload`` (returns after the daemon's "applied" line; a refused one
fails and changes nothing), the watchdog restarting a SIGSTOPped daemon, ``systemctl stop`` (exit
0), a second start appending to the token file, a bad configuration (78, no restart, the line at
priority 3), and an executable that cannot run (203, no restart loop).

The one change to the installed unit: a runtime drop-in ``WatchdogSec=5`` so the watchdog fires in
5 s, not 30. The times (to READY, stop, reload, watchdog restart) are printed (``-s`` shows them):
figures, not assertions.

It needs root and overlayfs (the container's root is an overlay of ``/``): without them it is
skipped, saying why, even under ``CI=true`` (a machine that cannot boot a container is not a
livetok failure). A missing tool (systemd, nsenter, Mosquitto; systemd-nspawn, or apt-get to fetch
it) fails it under ``CI=true`` (scripts/setup.sh installs them) and skips it otherwise.
Marked ``systemd``: ``pytest -m 'not systemd'`` leaves it out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from requires import missing, not_on_this_machine, require

from livetok.wire import Modality, Scale, TokenPacket, read_ltk

pytestmark = [pytest.mark.systemd, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
EXE = Path(os.path.abspath(sys.executable)).parent / "livetok"
UNIT = "livetok.service"
BROKER_PORT = 1883  # inside the container's own network namespace: nothing else listens there
PASSWORD = "cam1-pw-in-the-credential"
READER_PASSWORD = "reader-pw"
WATCHDOG_S = 5
TIMES: dict[str, float] = {}


def sandbox_script() -> Path:
    for candidate in (os.environ.get("LIVETOK_SYSTEMD_SANDBOX"), ROOT.parent / "shared" / "systemd-sandbox.sh",
                      ROOT / "scripts" / "systemd-sandbox.sh"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise AssertionError("no systemd-sandbox.sh (scripts/systemd-sandbox.sh is committed)")


def can_boot() -> None:
    """Skip (always) when this machine cannot boot a container; fail under CI=true when a tool is missing."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        not_on_this_machine("booting a systemd container needs root (systemd-nspawn, overlayfs, namespaces)")
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        filesystems = ""
    if "overlay" not in filesystems.split():
        not_on_this_machine("no overlayfs in this kernel: the container's root is an overlay of /")
    if not Path("/lib/systemd/systemd").is_file():
        missing("systemd is not installed (/lib/systemd/systemd, which the container boots; scripts/setup.sh "
                "installs it)")
    for tool in ("nsenter", "unshare", "mosquitto", "mosquitto_passwd", "mosquitto_sub"):
        require(tool)
    if shutil.which("systemd-nspawn") is None and shutil.which("apt-get") is None:
        missing("systemd-nspawn (systemd-container) is not installed, nor apt-get to fetch it")


class Sandbox:
    """One booted container; ``run`` executes a command in it as root."""

    def __init__(self, state: Path) -> None:
        self.script = sandbox_script()
        self.state = state
        self.env = {**os.environ, "SANDBOX_DIR": str(state), "SANDBOX_NAME": f"livetok-test-{os.getpid()}"}

    def start(self) -> None:
        # the checkout, and wherever its venv and interpreter live (another mount is not in the overlay)
        dirs = sorted({str(ROOT), os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)})
        dirs = [d for d in dirs if not any(d != o and d.startswith(o + "/") for o in dirs)]
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "livetok" / "systemd-sandbox-pkg"
        if shutil.which("systemd-nspawn") is None:  # the fetched nspawn is kept between runs
            cache.mkdir(parents=True, exist_ok=True)
            self.state.mkdir(parents=True, exist_ok=True)
            (self.state / "pkg").symlink_to(cache)
        done = subprocess.run([str(self.script), "start", *dirs], env=self.env, capture_output=True, text=True,
                              timeout=180, check=False)
        assert done.returncode == 0 and "is-system-running: running" in done.stderr, done.stderr

    def stop(self) -> None:
        subprocess.run([str(self.script), "stop"], env=self.env, capture_output=True, text=True, timeout=120,
                       check=False)

    def run(self, *cmd: str, stdin: str | None = None, ok: bool = True, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(self.script), "exec", *cmd], env=self.env, input=stdin, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if ok:
            assert done.returncode == 0, f"{cmd}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        self.run("install", "-D", "-m", mode, "/dev/stdin", path, stdin=text)

    def show(self, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", UNIT, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str = UNIT) -> list[dict[str, str]]:
        out = self.run("journalctl", "-u", unit, "-o", "json", "--no-pager").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def upper(self, path: str) -> Path:
        """A file the guest wrote, as the host sees it (the overlay's upper layer)."""
        return self.state / "upper" / path.lstrip("/")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    can_boot()
    box = Sandbox(tmp_path / "sandbox")
    t0 = time.monotonic()
    try:
        box.start()
        TIMES["boot"] = time.monotonic() - t0
        yield box
    finally:
        box.stop()


def config(sources: str) -> str:
    return (f"sources:\n{sources}"
            "sinks:\n  - {kind: file, path: /var/lib/livetok/tokens.ltk}\n"
            f"mqtt:\n  host: 127.0.0.1\n  port: {BROKER_PORT}\n  username: cam1\n"
            "  password_credential: mqtt-password\n  instance: svc\n  stats_interval_s: 1\n")


CAM = "  - {kind: synthetic, name: cam, size: 160x120, fps: 10}\n"
CAM2 = "  - {kind: synthetic, name: cam2, size: 160x120, fps: 5}\n"


def start_broker(box: Sandbox) -> None:
    """Mosquitto in the container: passwords required; cam1 may publish under livetok/, reader may read."""
    d = "/etc/livetok-test"
    box.write(f"{d}/mosquitto.conf", f"listener {BROKER_PORT} 127.0.0.1\nallow_anonymous false\n"
              f"password_file {d}/passwd\nacl_file {d}/acl\npersistence false\nlog_dest stdout\n"
              "connection_messages true\nlog_type all\n")
    box.write(f"{d}/acl", "user cam1\ntopic readwrite livetok/#\n\nuser reader\ntopic read livetok/#\n")
    box.run("mosquitto_passwd", "-c", "-b", f"{d}/passwd", "cam1", PASSWORD)
    box.run("mosquitto_passwd", "-b", f"{d}/passwd", "reader", READER_PASSWORD)
    box.run("chown", "mosquitto:mosquitto", f"{d}/passwd", f"{d}/acl")
    box.run("systemd-run", "--unit=livetok-test-broker", "--service-type=exec", "mosquitto", "-c",
            f"{d}/mosquitto.conf")
    for _ in range(100):  # bounded: until it accepts a login
        if box.run("mosquitto_pub", "-h", "127.0.0.1", "-p", str(BROKER_PORT), "-u", "reader", "-P",
                   READER_PASSWORD, "-t", "probe", "-n", ok=False).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the broker in the container did not come up")


def monotonic_s(entry: dict[str, str]) -> float:
    return int(entry["__MONOTONIC_TIMESTAMP"]) / 1e6


def lines(box: Sandbox, text: str) -> list[dict[str, str]]:
    return [e for e in box.journal() if text in str(e.get("MESSAGE", ""))]


def start_to_ready(box: Sandbox, label: str) -> None:
    t0 = time.monotonic()
    box.run("systemctl", "start", UNIT)
    show = box.show("ActiveState", "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    assert show["ActiveState"] == "active"
    TIMES[f"{label}: systemctl start (s)"] = time.monotonic() - t0
    TIMES[f"{label}: exec to READY, systemd's timestamps (s)"] = (
        int(show["ActiveEnterTimestampMonotonic"]) - int(show["ExecMainStartTimestampMonotonic"])) / 1e6


def stop_exits_0(box: Sandbox, label: str) -> None:
    said = len(lines(box, "run: stopped by SIGTERM"))
    t0 = time.monotonic()
    box.run("systemctl", "stop", UNIT)
    TIMES[f"{label}: systemctl stop (s)"] = time.monotonic() - t0
    show = box.show("ExecMainStatus", "Result", "ActiveState")
    assert show == {"ExecMainStatus": "0", "Result": "success", "ActiveState": "inactive"}, show
    # exit 0 after its own clean stop (a death by SIGTERM would count as success for systemd too)
    assert len(lines(box, "run: stopped by SIGTERM")) == said + 1


def tokens_on_the_bus(box: Sandbox, source: str) -> list[str]:
    out = box.run("mosquitto_sub", "-h", "127.0.0.1", "-p", str(BROKER_PORT), "-u", "reader", "-P",
                  READER_PASSWORD, "-t", f"livetok/svc/{source}/+/+", "-C", "5", "-W", "30", "-F", "%t").stdout
    return out.split()


def install(box: Sandbox) -> None:
    box.write("/root/livetok-svc.yaml", config(CAM))
    out = box.run(str(EXE), "install-service", "-c", "/root/livetok-svc.yaml").stdout
    assert "installed /etc/livetok/config.yaml (from /root/livetok-svc.yaml)\n" in out  # nothing left to set
    box.write("/etc/livetok/mqtt-password", PASSWORD + "\n", mode="0600")
    box.write(f"/run/systemd/system/{UNIT}.d/watchdog.conf", f"[Service]\nWatchdogSec={WATCHDOG_S}\n")
    box.run("systemctl", "daemon-reload")
    # before the first start: /var/lib/livetok does not exist, and the check passes saying why
    assert box.run("test", "-e", "/var/lib/livetok", ok=False).returncode != 0
    check = box.run("env", "CREDENTIALS_DIRECTORY=/etc/livetok", str(EXE), "check-config", "-c",
                    "/etc/livetok/config.yaml", ok=False)
    assert check.returncode == 0, check.stderr
    assert "/var/lib/livetok does not exist yet; systemd creates it" in check.stdout


def reload_returns_after_apply(box: Sandbox) -> None:
    pid = box.show("MainPID")["MainPID"]
    box.write("/etc/livetok/config.yaml", config(CAM + CAM2))
    t0 = time.monotonic()
    box.run("systemctl", "reload", UNIT)
    TIMES["systemctl reload, applied (s)"] = time.monotonic() - t0
    applied = lines(box, "reload: applied (sources started: cam2)")
    reloaded = [e for e in box.journal() if str(e.get("MESSAGE", "")).startswith("Reloaded ")]
    assert applied and reloaded, "no 'reload: applied' line before systemctl reload returned"
    assert monotonic_s(applied[-1]) < monotonic_s(reloaded[-1])  # systemd said Reloaded after the daemon applied
    assert tokens_on_the_bus(box, "cam2")
    # a refused reload: systemctl reload fails, the daemon runs on with its configuration
    box.write("/etc/livetok/config.yaml", "sources: [not closed\n")
    t0 = time.monotonic()
    refused = box.run("systemctl", "reload", UNIT, ok=False)
    TIMES["systemctl reload, refused (s)"] = time.monotonic() - t0
    assert refused.returncode != 0
    assert lines(box, "not valid YAML") and box.show("MainPID", "ActiveState") == {"MainPID": pid,
                                                                                   "ActiveState": "active"}
    box.write("/etc/livetok/config.yaml", config(CAM + CAM2))


def watchdog_restarts(box: Sandbox) -> None:
    pid = box.show("MainPID")["MainPID"]
    t0 = time.monotonic()
    box.run("kill", "-STOP", pid)
    end = t0 + WATCHDOG_S + 60
    while time.monotonic() < end:  # bounded: the watchdog fires, systemd restarts it, READY again
        show = box.show("MainPID", "ActiveState", "NRestarts", "ActiveEnterTimestampMonotonic")
        if show["MainPID"] not in ("0", pid) and show["ActiveState"] == "active":
            break
        time.sleep(0.2)
    assert show["ActiveState"] == "active" and show["NRestarts"] == "1", show
    fired = lines(box, "Watchdog timeout")
    assert fired
    TIMES["SIGSTOP to watchdog kill (s)"] = monotonic_s(fired[-1]) - t0
    TIMES["SIGSTOP to READY again (s)"] = int(show["ActiveEnterTimestampMonotonic"]) / 1e6 - t0


def bad_configuration_is_78_without_restart(box: Sandbox) -> None:
    box.write("/etc/livetok/config.yaml", config("  - {kind: synthetic, name: cam, fps: -3}\n"))
    assert box.run("systemctl", "start", UNIT, ok=False).returncode != 0
    show = box.show("ExecMainStatus", "ActiveState", "SubState", "NRestarts", "Result")
    assert show["ExecMainStatus"] == "78" and show["Result"] == "exit-code", show
    assert (show["ActiveState"], show["SubState"]) == ("failed", "failed"), show  # not "auto-restart"
    errors = [e for e in lines(box, "sources.0.fps") if e.get("SYSLOG_IDENTIFIER") == "livetok"]
    assert errors and all(e["PRIORITY"] == "3" for e in errors), errors
    shown = box.run("journalctl", "-u", UNIT, "-p", "err", "-o", "cat", "--no-pager").stdout
    assert "sources.0.fps" in shown


def exec_failure_does_not_loop(box: Sandbox) -> None:
    box.write(f"/run/systemd/system/{UNIT}.d/zz-broken.conf", "[Service]\nExecStart=\nExecStart=/nonexistent/livetok\n")
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "reset-failed", UNIT, ok=False)
    assert box.run("systemctl", "start", UNIT, ok=False).returncode != 0
    show = box.show("ExecMainStatus", "ActiveState", "SubState", "NRestarts")
    assert show == {"ExecMainStatus": "203", "ActiveState": "failed", "SubState": "failed", "NRestarts": "0"}, show


@pytest.mark.timeout(900)  # may fetch systemd-container with apt-get first
def test_the_installed_unit_under_systemd(sandbox: Sandbox) -> None:
    t0 = time.monotonic()
    box = sandbox
    install(box)
    start_broker(box)
    start_to_ready(box, "first start")
    topics = tokens_on_the_bus(box, "cam")
    assert topics and all(t.startswith("livetok/svc/cam/") for t in topics), topics
    logins = [e for e in box.journal("livetok-test-broker.service") if "u'cam1'" in str(e.get("MESSAGE", ""))]
    assert logins  # the daemon logged in as the credential's user (only cam1 may publish there)
    reload_returns_after_apply(box)
    watchdog_restarts(box)
    stop_exits_0(box, "after the watchdog restart")
    tokens = box.upper("/var/lib/private/livetok/tokens.ltk")  # DynamicUser: the state directory's real place
    first = tokens.read_bytes()
    assert first and read_ltk(tokens).packets
    start_to_ready(box, "second start")
    assert tokens_on_the_bus(box, "cam")
    stop_exits_0(box, "second stop")
    both = tokens.read_bytes()
    assert len(both) > len(first) and both[: len(first)] == first  # appended, not replaced
    starts = [p for p in read_ltk(tokens).packets if isinstance(p, TokenPacket) and p.source == "cam"
              and (p.modality, p.scale) == (Modality.VIDEO, Scale.FINE) and p.seq == 0]
    assert len(starts) == 3  # the first run, the watchdog's restart, the second start: three runs in one file
    bad_configuration_is_78_without_restart(box)
    exec_failure_does_not_loop(box)
    TIMES["test, boot excluded (s)"] = time.monotonic() - t0
    print("\nsystemd sandbox times:\n" + "\n".join(f"  {k}: {v:.2f}" for k, v in TIMES.items()))
