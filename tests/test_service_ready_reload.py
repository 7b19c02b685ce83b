"""READY=1 means capturing, and ``livetok reload`` (the unit's ExecReload=) returns only once the
daemon has applied or refused its configuration. A real daemon process; only systemd is stood in
for: its notify socket is one the test binds (test_service_notify.NotifySocket), and
``$RUNTIME_DIRECTORY`` a temporary folder. tests/test_service_systemd.py does both under a real one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker import free_port
from test_service_notify import NotifySocket

from livetok.cli import main
from livetok.daemon.notify import ReloadAnswers

EXE = [sys.executable, "-m", "livetok.cli"]


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


class Daemon:
    """``livetok run -c CONFIG`` with a notify socket and a runtime directory; stderr to a file."""

    def __init__(self, tmp_path: Path, config: Path, notify: NotifySocket, runtime: bool = True) -> None:
        self.runtime = tmp_path / "run"
        self.runtime.mkdir(exist_ok=True)
        self.log = tmp_path / "daemon.log"
        env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "PYTHONUNBUFFERED": "1"}
        env.pop("WATCHDOG_USEC", None)
        env.pop("RUNTIME_DIRECTORY", None)
        if runtime:
            env["RUNTIME_DIRECTORY"] = str(self.runtime)
        self._err = self.log.open("w")
        self.proc = subprocess.Popen([*EXE, "run", "-c", str(config)], env=env, stdout=subprocess.DEVNULL,
                                     stderr=self._err, text=True)

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.proc.kill()
            self._err.close()

    def reload(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*EXE, "reload", "--pid", str(self.proc.pid), "--runtime-dir", str(self.runtime),
                               *extra], capture_output=True, text=True, timeout=120, check=False)


SYNTHETIC = "  - {kind: synthetic, name: %s, size: 160x120, fps: 10}\n"


def write_config(path: Path, sinks_dir: Path, *sources: str, extra: str = "") -> Path:
    path.write_text("sources:\n" + "".join(SYNTHETIC % s for s in sources)
                    + f"sinks:\n  - {{kind: file, path: '{sinks_dir / 'run.ltk'}'}}\n" + extra)
    return path


# -- READY ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ready_comes_once_every_source_delivers(tmp_path: Path, notify: NotifySocket) -> None:
    """Before: READY=1 with "sources 0/1 up" (sent as soon as the capture threads were started)."""
    d = Daemon(tmp_path, write_config(tmp_path / "c.yaml", tmp_path, "cam"), notify)
    try:
        ready = notify.wait_for("READY", "1")
        status = notify.messages[ready][1]["STATUS"]
    finally:
        assert d.stop() == 0
    assert status.startswith("sources 1/1 up"), status
    said = [line for line in d.text().splitlines() if "ready: capturing" in line]
    assert len(said) == 1 and "cam: video " in said[0] and "audio " in said[0], said


@pytest.mark.slow
def test_ready_waits_for_a_failed_first_attempt_and_says_it(tmp_path: Path, notify: NotifySocket) -> None:
    """A camera nobody serves and a broker nobody listens on: READY comes once the source's first
    attempt has failed (connection refused) and said so in a line, and the bus's first connection
    attempt has failed; not at once, and not never."""
    port, bus_port = free_port(), free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources:\n"
                   f"  - {{kind: stream, name: late, url: 'http://127.0.0.1:{port}/live.ts', format: mpegts, "
                   "open_timeout_s: 1, read_timeout_s: 1}\n"
                   f"sinks:\n  - {{kind: file, path: '{tmp_path / 'run.ltk'}'}}\n"
                   f"mqtt: {{host: 127.0.0.1, port: {bus_port}, connect_timeout_s: 2}}\n")
    d = Daemon(tmp_path, cfg, notify)
    try:
        notify.wait_for("READY", "1")
        text = d.text()  # the daemon logs before it sends READY
    finally:
        assert d.stop() == 0
    lines = text.splitlines()
    ready = next(i for i, line in enumerate(lines) if "ready: capturing" in line)
    assert any(line.startswith("livetok: late: ") for line in lines[:ready]), lines  # the fault, said first
    assert "late: first attempt failed at" in lines[ready] and "bus not connected" in lines[ready], lines[ready]


@pytest.mark.slow
def test_a_listening_source_without_a_sender_is_ready_and_says_it_waits(tmp_path: Path,
                                                                        notify: NotifySocket) -> None:
    """A UDP camera that starts after the daemon (issue 12): its socket is open, nothing has failed, so
    READY does not wait for it (before: it waited out the first attempt, then called it failed); the
    ready line and STATUS say the source waits for its sender."""
    port = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources:\n"
                   f"  - {{kind: stream, name: cam, url: 'udp://127.0.0.1:{port}', format: mpegts, "
                   "open_timeout_s: 1, read_timeout_s: 1}\n"
                   f"sinks:\n  - {{kind: file, path: '{tmp_path / 'run.ltk'}'}}\n")
    d = Daemon(tmp_path, cfg, notify)
    try:
        ready = notify.wait_for("READY", "1")
        status = notify.messages[ready][1]["STATUS"]
        text = d.text()
    finally:
        assert d.stop() == 0
    line = next(line for line in text.splitlines() if "ready: capturing" in line)
    assert "cam: listening since" in line and "waiting for its sender" in line, line
    assert "failed" not in line and "nothing captured" not in text, text
    assert status.startswith("sources 0/1 up, 1 waiting for a sender"), status


# -- reload -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_reload_returns_after_the_configuration_is_applied(tmp_path: Path, notify: NotifySocket) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path, "cam")
    d = Daemon(tmp_path, cfg, notify)
    try:
        notify.wait_for("READY", "1")
        write_config(cfg, tmp_path, "cam", "cam2")
        done = d.reload()
        after = d.text()  # at the moment the command returned
        assert done.returncode == 0, done.stderr
        assert "reload: applied (sources started: cam2)" in after
        assert done.stdout.strip() == "livetok: reload: applied (sources started: cam2)"
        again = d.reload()  # nothing changed: said, exit 0
        assert again.returncode == 0 and "reload: nothing changed" in again.stdout
        cfg.write_text("sources: [not closed\n")
        refused = d.reload()
        assert refused.returncode == 78
        assert refused.stderr.count("\n") == 1 and "not valid YAML" in refused.stderr
        assert "keeping the running configuration" in refused.stderr
        assert d.proc.poll() is None  # it runs on
        assert sorted(p.name for p in d.runtime.iterdir()) == []  # requests and answers cleaned up
    finally:
        assert d.stop() == 0


@pytest.mark.slow
def test_reload_without_an_answer_is_69(tmp_path: Path, notify: NotifySocket) -> None:
    """A daemon that cannot answer (no $RUNTIME_DIRECTORY) still reloads; the command says it got no
    answer in time. No such process: 69 at once."""
    cfg = write_config(tmp_path / "c.yaml", tmp_path, "cam")
    d = Daemon(tmp_path, cfg, notify, runtime=False)
    try:
        notify.wait_for("READY", "1")
        t0 = time.monotonic()
        done = d.reload("--timeout", "2")
        assert done.returncode == 69 and "did not answer the reload within 2 s" in done.stderr, done.stderr
        assert time.monotonic() - t0 < 60  # bounded by --timeout, whatever the machine's load
        notify.wait_for("RELOADING", "1")  # the SIGHUP did reach it
    finally:
        assert d.stop() == 0
    gone = subprocess.run([*EXE, "reload", "--pid", str(_dead_pid()), "--runtime-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert gone.returncode == 69 and "no process" in gone.stderr


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid  # reaped: nothing has this PID for the moment


def test_reload_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    assert main(["reload", "--pid", str(os.getpid())]) == 78
    assert "$RUNTIME_DIRECTORY is not set" in capsys.readouterr().err
    assert main(["reload", "--pid", str(os.getpid()), "--runtime-dir", str(tmp_path / "none")]) == 73
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the reload request" in err


def test_answers_cover_only_requests_made_before_the_file_was_read(tmp_path: Path) -> None:
    """The protocol's rule: requests are taken before the configuration is read; one made after is
    left for the next reload (which its own SIGHUP causes)."""
    answers = ReloadAnswers({"RUNTIME_DIRECTORY": f"{tmp_path}:/elsewhere"})
    (tmp_path / "reload-1-a.request").touch()
    taken = answers.take()
    (tmp_path / "reload-2-b.request").touch()  # arrives while the first reload runs
    answers.answer(taken, "applied", "reload: applied (x)")
    assert (tmp_path / "reload-1-a.answer").read_text() == '{"outcome": "applied", "line": "reload: applied (x)"}'
    assert not (tmp_path / "reload-1-a.request").exists()
    assert [p.name for p in answers.take()] == ["reload-2-b.request"]
    assert ReloadAnswers({}).take() == []  # not under systemd: inert
