"""The daemon under systemd's eyes: the sd_notify protocol read from a socket the test binds
(READY after warm-up, EXTEND_TIMEOUT_USEC before it, STATUS, WATCHDOG at the cadence WATCHDOG_USEC
asks for, RELOADING with MONOTONIC_USEC on SIGHUP, STOPPING), the pings stopping while the
tokenizer worker hangs, SIGHUP reloads (a changed source list; an invalid file), and exit 78
before READY on a bad configuration. Faked: only systemd itself (no running systemd here) — the
socket is the protocol's real transport."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker import Mosquitto

from livetok.config import LivetokConfig
from livetok.daemon.main import run_async
from livetok.daemon.notify import Notifier
from livetok.pipeline import engine as engine_module
from livetok.pipeline.results import EngineOutput
from livetok.runtime import lane as lane_module
from livetok.runtime.stopping import StopControl
from livetok.wire import Flag, TokenPacket, read_ltk

pytestmark = pytest.mark.slow  # every test here runs a live daemon, broker, stream or subprocess


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's; collects (monotonic s, fields)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self._take(data)

    def _take(self, data: bytes) -> None:
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append((time.monotonic(), fields))

    def drain(self) -> list[dict[str, str]]:
        """Every message, once the sender is done (its datagrams are all queued here): the reader
        stopped, the rest read without waiting."""
        self._stop.set()
        self.thread.join(5)
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self._take(self.sock.recv(65536))
        return [f for _, f in self.messages]

    def wait_for(self, key: str, value: str | None = None, after: int = 0, timeout_s: float = 60.0) -> int:
        """Index of the first message from ``after`` on that has ``key`` (= ``value``)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for i, (_, f) in enumerate(self.messages[after:], after):
                if key in f and (value is None or f[key] == value):
                    return i
            time.sleep(0.05)
        raise AssertionError(f"no {key}={value} after message {after}: {[f for _, f in self.messages][-5:]}")

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


def daemon(config: Path, notify_path: Path, watchdog_usec: int = 2_000_000) -> subprocess.Popen[str]:
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": str(watchdog_usec),
           "PYTHONUNBUFFERED": "1"}
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen([sys.executable, "-m", "livetok.cli", "run", "-c", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_packets(path: Path, source: str, more_than: int = 0, timeout_s: float = 60.0) -> int:
    """How many token packets of ``source`` the (growing) file holds, once more than ``more_than``."""
    end = time.monotonic() + timeout_s
    while True:
        n = sum(isinstance(p, TokenPacket) and p.source == source for p in read_ltk(path).packets) \
            if path.exists() else 0
        if n > more_than:
            return n
        assert time.monotonic() < end, f"{source}: no more than {more_than} packets in {path} after {timeout_s} s"
        time.sleep(0.1)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return err


def test_ready_status_watchdog_reload_stopping(tmp_path: Path, notify: NotifySocket, mosquitto: Mosquitto) -> None:
    """One daemon through its life. SIGHUP with a changed source list: the unchanged source keeps its
    sequence numbers and the bus keeps its connection; SIGHUP with an invalid file: one line, the
    running configuration kept."""
    out = tmp_path / "run.ltk"
    cfg = tmp_path / "c.yaml"
    base = ("sources:\n  - {kind: synthetic, name: keep, size: 160x120, fps: 10}\n"
            "  - {kind: synthetic, name: %s, size: 160x120, fps: 10}\n"
            f"sinks:\n  - {{kind: file, path: '{out}'}}\n"
            f"mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, instance: svc}}\n")
    cfg.write_text(base % "old")
    proc = daemon(cfg, notify.path)
    try:
        extend = notify.wait_for("EXTEND_TIMEOUT_USEC")
        ready = notify.wait_for("READY", "1")
        assert extend < ready
        assert not any("WATCHDOG" in f for _, f in notify.messages[:ready])  # only once running
        assert "sources " in notify.messages[ready][1]["STATUS"]
        w1 = notify.wait_for("WATCHDOG", "1", after=ready)
        w2 = notify.wait_for("WATCHDOG", "1", after=w1 + 1)
        w3 = notify.wait_for("WATCHDOG", "1", after=w2 + 1)
        gaps = [notify.messages[b][0] - notify.messages[a][0] for a, b in ((w1, w2), (w2, w3))]
        assert all(g <= 2.0 for g in gaps), gaps  # within WATCHDOG_USEC: systemd's own limit
        status = notify.wait_for("STATUS", after=ready + 1)
        assert "msg/s" in notify.messages[status][1]["STATUS"]
        wait_for_packets(out, "old")
        cfg.write_text(base % "new")  # the second source replaced
        proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING", "1", after=status)
        assert int(notify.messages[reloading][1]["MONOTONIC_USEC"]) > 0
        notify.wait_for("READY", "1", after=reloading + 1)
        wait_for_packets(out, "new")
        cfg.write_text("sources: [not closed\n")
        proc.send_signal(signal.SIGHUP)
        again = notify.wait_for("RELOADING", "1", after=reloading + 1)
        notify.wait_for("READY", "1", after=again + 1)
        wait_for_packets(out, "new", more_than=wait_for_packets(out, "new"))  # still flowing after the refusal
        err = stop(proc)
        notify.wait_for("STOPPING", "1", after=again)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "reload: applied (sources stopped: old; sources started: new)" in err
    assert re.search(r"reload: \S*c\.yaml:\d+: not valid YAML.*; keeping the running configuration", err)
    assert "Traceback" not in err
    packets = [p for p in read_ltk(out).packets if isinstance(p, TokenPacket)]
    for source in ("keep", "old", "new"):
        for key in {(p.modality, p.scale) for p in packets if p.source == source}:
            seqs = [p.seq for p in packets if p.source == source and (p.modality, p.scale) == key]
            assert seqs == list(range(len(seqs))), (source, key)  # none lost, none repeated
            assert not any(p.flags & (Flag.GAP | Flag.DISCONTINUITY) for p in packets
                           if p.source == source and (p.modality, p.scale) == key and p.seq > 0), (source, key)
    keep = [p for p in packets if p.source == "keep"]
    old = [p for p in packets if p.source == "old"]
    new = [p for p in packets if p.source == "new"]
    assert keep and old and new and max(p.end_ns for p in old) < max(p.end_ns for p in keep)
    gauges = json.loads(err[err.index("{"):])["gauges"]
    assert gauges["sink.mqtt.connects"] == 1  # the bus was not touched by the reload


def test_bad_configuration_exits_78_before_ready(tmp_path: Path, notify: NotifySocket) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("sources:\n  - {kind: synthetic, name: s, fps: -3}\nsinks:\n  - {kind: file, path: /tmp/x.ltk}\n")
    proc = daemon(cfg, notify.path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 78 and "bad.yaml:2: sources.0.fps" in err
    assert not any("READY" in f for f in notify.drain())  # all it sent is here: it has exited


def test_watchdog_pings_stop_while_the_worker_hangs(tmp_path: Path, notify: NotifySocket,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process (the only way to hang the worker on purpose): a tick that blocks makes the watchdog
    withhold its pings; once the worker moves again they resume. Synchronised on what the daemon does,
    in the order it does it: the worker entering the hang, four watchdog checks that found it stuck
    longer than a ping interval (each withholds a ping), the release, a ping again."""
    hang, entered, release = threading.Event(), threading.Event(), threading.Event()
    stuck_checks = threading.Semaphore(0)
    timeline: list[str] = []  # appended by the daemon's loop (checks, pings) and this thread (release)
    tick = engine_module.Engine.tick
    stuck_for_s = lane_module.BlockingLane.stuck_for_s
    interval_s = 0.5  # half of WATCHDOG_USEC

    def maybe_hang(self: engine_module.Engine, now_ns: int) -> EngineOutput:
        if hang.is_set() and not release.is_set():
            entered.set()
            release.wait(30)
        return tick(self, now_ns)

    def seen_stuck(self: lane_module.BlockingLane) -> float:
        stuck = stuck_for_s(self)
        if stuck > interval_s:
            timeline.append("stuck")
            stuck_checks.release()
        return stuck

    monkeypatch.setattr(engine_module.Engine, "tick", maybe_hang)
    monkeypatch.setattr(lane_module.BlockingLane, "stuck_for_s", seen_stuck)
    cfg = LivetokConfig.model_validate({"sources": [{"kind": "synthetic", "name": "s", "size": "160x120", "fps": 5}],
                                        "sinks": [{"kind": "file", "path": str(tmp_path / "w.ltk")}]})
    notifier = Notifier({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"})
    assert notifier.watchdog_interval_s == interval_s
    ping = notifier.watchdog

    def counted_ping() -> bool:
        timeline.append("ping")
        return ping()

    monkeypatch.setattr(notifier, "watchdog", counted_ping)

    import uvloop

    stop = StopControl()
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(uvloop.run(run_async(cfg, None, stop, notifier=notifier))),
                         daemon=True)
    t.start()
    try:
        ready = notify.wait_for("READY", "1")
        before = notify.wait_for("WATCHDOG", "1", after=ready)
        hang.set()
        assert entered.wait(30), "the worker never reached the hanging tick"
        for _ in range(4):
            assert stuck_checks.acquire(timeout=30), "the watchdog stopped checking the worker"
        timeline.append("release")
        release.set()
        after = notify.wait_for("WATCHDOG", "1", after=len(notify.messages), timeout_s=10)
    finally:
        release.set()
        stop.request("test")
        t.join(60)
    assert not t.is_alive() and result, "the daemon did not stop"
    assert before >= ready and after > before  # pinging before the hang, and again once the worker moved
    first_stuck, released = timeline.index("stuck"), timeline.index("release")
    assert "ping" not in timeline[first_stuck:released], timeline  # none while the worker was stuck
    assert "ping" in timeline[released:]  # resumed
    assert notifier.sent == len(notify.drain())  # the socket got exactly what the daemon sent


def test_a_service_without_its_broker_keeps_retrying_says_so_and_exits_0(tmp_path: Path,
                                                                          notify: NotifySocket) -> None:
    """The other half of the bus contract (a bounded run exits 69): a service (no --duration) whose
    broker is down keeps capturing and retrying, its STATUS says the bus is down, and a stop is 0."""
    from broker import free_port

    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources:\n  - {kind: synthetic, name: cam, size: 160x120, fps: 10}\n"
                   f"sinks:\n  - {{kind: file, path: '{tmp_path / 'svc.ltk'}'}}\n"
                   f"mqtt: {{host: 127.0.0.1, port: {free_port()}, instance: svc, connect_timeout_s: 1}}\n")
    proc = daemon(cfg, notify.path)
    try:
        ready = notify.wait_for("READY", "1")
        first = notify.wait_for("STATUS", after=ready + 1)
        later = notify.wait_for("STATUS", after=first + 1)  # the next periodic one: 5 s of retrying
        assert "bus DISCONNECTED" in notify.messages[later][1]["STATUS"]
        err = stop(proc)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "livetok: error:" not in err and "Traceback" not in err
    gauges = json.loads(err[err.index("{"):])["gauges"]
    assert gauges["sink.mqtt.connects"] == 0 and gauges["sink.mqtt.connect_failures"] >= 2  # retried
    assert len(read_ltk(tmp_path / "svc.ltk").packets) > 10
