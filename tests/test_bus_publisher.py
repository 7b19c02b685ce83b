"""The daemon's MQTT publisher against a real Mosquitto and real failures: restarts, kills, network
cuts and black holes through a TCP proxy, oversize messages, refused publishes, bad logins and
certificates, shared subscriptions, and a client we did not write (mosquitto_sub).

Ground truth in every test is the daemon's own file sink, written beside the bus: every message the
bus should carry is in it. The subscriber is :class:`livetok.client.Subscriber`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from broker import BrokerOptions, Mosquitto, MosquittoFactory, free_port
from netproxy import NetProxy
from requires import require

from livetok.bus.properties import CONTENT_TYPE
from livetok.client import Subscriber
from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking
from livetok.daemon.runner import RunReport
from livetok.runtime.stopping import StopControl
from livetok.wire import AlignedStep, TokenPacket, decode_packet, read_ltk

pytestmark = pytest.mark.slow  # every test here runs a live daemon, broker, stream or subprocess

Key = tuple[str, str, int]  # (stream topic tail, kind, seq)


def daemon_config(tmp_path: Path, port: int, *, mqtt: dict[str, Any] | None = None, fps: float = 15,
                  instance: str = "host1", name: str = "cam") -> LivetokConfig:
    return LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": name, "size": "320x240", "fps": fps}],
        "sinks": [{"kind": "file", "path": str(tmp_path / f"{instance}.ltk")}],
        "mqtt": {"host": "127.0.0.1", "port": port, "instance": instance, "keepalive_s": 2,
                 "connect_timeout_s": 2, **(mqtt or {})},
    })


class DaemonThread:
    """``livetok run`` in a thread of this process (the tokenizers load once per test session)."""

    def __init__(self, cfg: LivetokConfig, seconds: float) -> None:
        self.cfg, self.seconds = cfg, seconds  # seconds: the run's length, or its bound when stopped on an event
        self.report: RunReport | None = None
        self.error: BaseException | None = None
        self.control = StopControl()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.report = run_blocking(self.cfg, self.seconds, self.control)
        except BaseException as err:  # handed to the test
            self.error = err

    def stop(self) -> RunReport:
        """End the run now (as its duration would) and join it."""
        self.control.request("duration")
        return self.join()

    def start(self) -> DaemonThread:
        self.thread.start()
        return self

    def join(self) -> RunReport:
        self.thread.join(self.seconds + 60)
        assert not self.thread.is_alive(), "the daemon did not stop"
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


def truth(path: Path) -> set[Key]:
    """Every message the daemon made, from its file sink."""
    out: set[Key] = set()
    for p in read_ltk(path).packets:
        if isinstance(p, TokenPacket):
            out.add((f"{p.source}/{p.modality.name.lower()}/{p.scale.name.lower()}", "packet", p.seq))
        elif isinstance(p, AlignedStep):
            out.add((f"{p.group}/steps", "step", p.seq))
    return out


class Collector:
    """A subscriber in its own thread and loop, collecting every data message it yields."""

    def __init__(self, url: str, **kw: Any) -> None:
        self.url, self.kw = url, kw
        self.keys: list[Key] = []
        self.messages: list[Any] = []
        self.sub: Subscriber | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        try:
            async with Subscriber(self.url, **self.kw) as sub:
                self.sub = sub
                self._ready.set()
                while not self._stop.is_set():
                    msg = await sub.get(timeout_s=0.2)
                    if msg is None:
                        continue
                    self.messages.append(msg)
                    if msg.packet is not None:
                        tail = f"{msg.packet.source}/{msg.packet.modality.name.lower()}/{msg.packet.scale.name.lower()}"
                        self.keys.append((tail, "packet", msg.packet.seq))
                    elif msg.step is not None:
                        self.keys.append((f"{msg.step.group}/steps", "step", msg.step.seq))
        except BaseException as err:
            self.error = err
            self._ready.set()

    def has_tails(self, made: set[Key]) -> bool:
        """Every stream's last message in ``made`` has arrived: what was delivered is all here."""
        last: dict[tuple[str, str], int] = {}
        for tail, kind, seq in made:
            last[(tail, kind)] = max(seq, last.get((tail, kind), -1))
        got = set(self.keys)
        return all((tail, kind, seq) in got for (tail, kind), seq in last.items())

    def start(self) -> Collector:
        self.thread.start()
        assert self._ready.wait(30), "subscriber did not connect"
        if self.error is not None:
            raise self.error
        return self

    def stop(self, quiet_s: float = 2.0, limit_s: float = 30.0, until: Callable[[], bool] | None = None) -> Collector:
        """Stop once ``until()`` holds and then nothing more came for ``quiet_s`` (a duplicate or a
        straggler would), or, without ``until``, once nothing came for ``quiet_s``; bounded by ``limit_s``."""
        end = time.monotonic() + limit_s
        while until is not None and not until() and time.monotonic() < end:
            time.sleep(0.05)
        n = -1
        while time.monotonic() < end and n != len(self.messages):
            n = len(self.messages)
            time.sleep(quiet_s)
        self._stop.set()
        self.thread.join(10)
        if self.error is not None:
            raise self.error
        return self

    @property
    def stats(self) -> Any:
        assert self.sub is not None
        return self.sub.stats


def bus(report: RunReport) -> dict[str, Any]:
    return report.sinks["mqtt"]


def check_books(report: RunReport) -> None:
    assert report.accounting["balanced"] == 1, report.accounting
    b = bus(report)
    assert b["written"] + b["dropped"] + b["failed"] == report.accounting["sinks"]["mqtt"]["offered"]


def persistent(client_id: str, url: str) -> dict[str, Any]:
    return {"client_id": client_id, "persistent": True, "qos": 1, "connect_attempts": 20}


# -- the basics --------------------------------------------------------------------------------------

def test_every_message_arrives_with_its_properties(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sub = Collector(mosquitto.url, qos=1).start()
    report = DaemonThread(daemon_config(tmp_path, mosquitto.port), 3.0).start().join()
    made = truth(tmp_path / "host1.ltk")
    sub.stop(quiet_s=0.5, until=lambda: set(sub.keys) >= made)
    check_books(report)
    streams = {"cam/audio/fine", "cam/audio/coarse", "cam/video/fine", "cam/video/coarse", "cam/steps"}
    assert {k[0] for k in made} == streams  # every stream carried messages (however many a busy machine made)
    assert set(sub.keys) == made and len(sub.keys) == len(made)
    assert bus(report)["written"] == len(made) and bus(report)["connects"] == 1
    s = sub.stats.total
    assert s.gaps == 0 and s.duplicates == 0 and s.missing == 0
    run_ids = {m.run_id for m in sub.messages}
    assert len(run_ids) == 1 and len(next(iter(run_ids))) == 16
    meta = sub.sub.meta[("host1", "cam")] if sub.sub else None  # type: ignore[index]
    assert meta is not None and meta.run_id in run_ids and meta.codebook_id
    assert {k for k in meta.streams} == {"audio/fine", "audio/coarse", "video/fine", "video/coarse"}
    assert sub.sub is not None and sub.sub.available.get("host1") == "stopped"  # the clean exit


def test_mosquitto_sub_receives_payloads_that_decode_as_the_spec_says(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A client we did not write: mosquitto_sub prints each message's topic, v5 properties and payload
    as hex; every payload decodes to the packet named by its topic."""
    tool, pub = require("mosquitto_sub"), require("mosquitto_pub")
    out = tmp_path / "sub.txt"

    def printed() -> list[str]:
        return out.read_text().splitlines()

    with open(out, "w") as f:
        proc = subprocess.Popen([tool, "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-q", "1",
                                 "-t", "livetok/host1/#", "-F", "%t %C %P %x", "-W", "60"], stdout=f)
        try:
            def subscribed() -> bool:  # it prints what we publish: its subscription is in place
                subprocess.run([pub, "-h", "127.0.0.1", "-p", str(mosquitto.port), "-t", "livetok/host1/probe",
                                "-m", "x"], check=True, timeout=10)
                time.sleep(0.05)
                return any(ln.startswith("livetok/host1/probe ") for ln in printed())
            _wait(subscribed, "saw mosquitto_sub subscribed", 30.0)
            DaemonThread(daemon_config(tmp_path, mosquitto.port), 3.0).start().join()
            sent = sum(isinstance(p, TokenPacket) for p in read_ltk(tmp_path / "host1.ltk").packets)
            _wait(lambda: sum(ln.split(" ")[0].count("/") == 4 for ln in printed()) >= sent,
                  "printed every token message", 30.0)
        finally:
            proc.terminate()
            proc.wait(10)
    lines = printed()
    tokens = [ln for ln in lines if ln.split(" ")[0].count("/") == 4]
    assert len(tokens) == sent > 0  # every token packet the daemon made, once
    for line in tokens:
        topic, rest = line.split(" ", 1)
        props, payload = rest.rsplit(" ", 1)
        p = decode_packet(bytes.fromhex(payload))
        _, instance, source, modality, scale = topic.split("/")
        assert instance == "host1"
        assert isinstance(p, TokenPacket) and p.source == source
        assert (p.modality.name.lower(), p.scale.name.lower()) == (modality, scale)
        assert CONTENT_TYPE in props and "run_id" in props


# -- broker restarts and crashes -------------------------------------------------------------------

def _wait(predicate: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, f"never {what}"
        time.sleep(0.05)


def _while_running(cfg: LivetokConfig, sub: Collector, fault: Callable[[], None]) -> RunReport:
    """The daemon publishing (the subscriber has 200 messages), then ``fault()``, then the subscriber
    back and 200 messages more, then the end of the run (60 s at most)."""
    d = DaemonThread(cfg, 60.0).start()
    _wait(lambda: len(sub.keys) >= 200, "got 200 messages before the fault")
    before = len(sub.keys)
    fault()
    _wait(lambda: len(sub.keys) >= before + 200, "got 200 messages after the fault")
    return d.stop()


def test_graceful_broker_restart_loses_nothing(tmp_path: Path, mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory(persistence=True)
    sub = Collector(broker.url, **persistent("restart-sub", broker.url)).start()
    report = _while_running(daemon_config(tmp_path, broker.port), sub, lambda: broker.restart(down_s=1.5))
    made = truth(tmp_path / "host1.ltk")
    sub.stop(quiet_s=0.5, until=lambda: made <= set(sub.keys))
    check_books(report)
    b = bus(report)
    assert b["reconnects"] >= 1 and b["dropped"] == 0 and b["failed"] == 0
    assert made <= set(sub.keys), f"{len(made - set(sub.keys))} missing"
    assert sub.stats.total.missing == 0


@pytest.mark.parametrize("autosave", [True, False])
def test_broker_kill(tmp_path: Path, mosquitto_factory: MosquittoFactory, autosave: bool) -> None:
    """SIGKILL: with autosave_on_changes nothing is lost; without it, what the broker had
    acknowledged and not saved is lost — and the subscriber's missing count is exactly that."""
    opts = BrokerOptions(persistence=True, autosave_on_changes=autosave, autosave_interval=1 if autosave else None)
    broker = mosquitto_factory(opts)
    sub = Collector(broker.url, **persistent("kill-sub", broker.url)).start()

    def kill() -> None:
        broker.kill()
        time.sleep(1.0)
        broker.start()

    report = _while_running(daemon_config(tmp_path, broker.port), sub, kill)
    made = truth(tmp_path / "host1.ltk")
    sub.stop(quiet_s=0.5, until=lambda: sub.has_tails(made))
    check_books(report)
    lost = made - set(sub.keys)
    b = bus(report)
    assert b["dropped"] == 0 and b["failed"] == 0  # the daemon lost nothing it could know of
    if autosave:
        assert not lost
    # Whatever the broker lost shows in the subscriber's books, exactly (a stream's tail lost after its
    # last received message would show only at the next one: the daemon kept publishing after the kill).
    assert sub.stats.total.missing == len(lost)


# -- network faults through a proxy ----------------------------------------------------------------

@pytest.mark.timeout(300)  # 50 fault cycles: 30-50 s
def test_network_cuts_and_black_holes(tmp_path: Path, mosquitto_factory: MosquittoFactory) -> None:
    """50 fault cycles — 46 dropped connections and 4 black holes (no FIN: found by keepalive) — while
    publishing: nothing lost beyond what the daemon's books report as dropped, duplicates at most the
    in-flight window per reconnect. Each cut comes once the daemon publishes through its new
    connection (every cut cuts one); each black hole lasts until the daemon, its keepalive expired,
    opens a new connection."""
    broker = mosquitto_factory(persistence=True)
    sub = Collector(broker.url, **persistent("cut-sub", broker.url)).start()
    proxy = NetProxy(broker.port)
    cycles = {"cut": 0, "hole": 0}

    def publishing() -> None:  # connected through the proxy, and 1 kB of publishes since the last fault
        mark = proxy.bytes_up
        _wait(lambda: proxy.connections >= 1 and proxy.bytes_up > mark + 1000, "published again", 30.0)

    def faults() -> None:
        for i in range(50):
            publishing()
            if i % 12 == 11:
                accepted = proxy.accepted
                proxy.blackhole()
                _wait(lambda: proxy.accepted > accepted, "gave up the black hole (keepalive 2 s)", 30.0)  # noqa: B023
                proxy.cut()
                proxy.restore()
                cycles["hole"] += 1
            else:
                cycles["cut"] += proxy.cut() > 0
        publishing()
    try:
        cfg = daemon_config(tmp_path, proxy.port, mqtt={"buffer_messages": 100_000})
        d = DaemonThread(cfg, 240.0).start()
        faults()
        report = d.stop()
    finally:
        proxy.close()
    made = truth(tmp_path / "host1.ltk")
    b = bus(report)
    sub.stop(quiet_s=0.5, until=lambda: len(made - set(sub.keys)) <= b["dropped"] + b["failed"])
    check_books(report)
    got = set(sub.keys)
    assert cycles == {"cut": 46, "hole": 4}  # every cut cut a live connection
    assert b["reconnects"] >= 50
    lost = made - got
    assert len(lost) == b["dropped"] + b["failed"], (len(lost), b)
    assert sub.stats.total.duplicates <= b["reconnects"] * b["receive_maximum"]


# -- limits and refusals ---------------------------------------------------------------------------

def test_oversize_is_refused_before_sending(tmp_path: Path, mosquitto_factory: MosquittoFactory) -> None:
    """The broker advertises max_packet_size 1024 in its CONNACK: video fine packets (~1.7 KB) and long steps
    are refused and counted before they are sent; the connection never drops; the rest arrives."""
    broker = mosquitto_factory(extra=("max_packet_size 1024",))
    sub = Collector(broker.url, qos=1).start()
    report = DaemonThread(daemon_config(tmp_path, broker.port), 3.0).start().join()
    made = truth(tmp_path / "host1.ltk")
    # Video fine packets (~1.7 KB) never fit; audio and coarse video always do; a step's size follows
    # how many packets it names, so a short one may fit: each step is either received or refused.
    fine_video = {k for k in made if k[0].endswith("video/fine")}
    small = {k for k in made if k[1] == "packet"} - fine_video
    sub.stop(quiet_s=0.5, until=lambda: small <= set(sub.keys))
    check_books(report)
    b = bus(report)
    assert b["connects"] == 1 and b["reconnects"] == 0
    assert b["refused"] == b["failed"] > 0
    got = set(sub.keys)
    assert got <= made and not got & fine_video and small <= got
    assert len(got) == len(sub.keys) and b["failed"] == len(made - got)


def test_configured_max_packet_bytes_for_a_broker_that_does_not_say(tmp_path: Path,
                                                                     mosquitto_factory: MosquittoFactory) -> None:
    """Mosquitto's message_size_limit is not advertised: sending over it drops the connection (a
    poison loop under paho). With mqtt.max_packet_bytes set to it, such messages are refused."""
    broker = mosquitto_factory(message_size_limit=1200)
    report = DaemonThread(daemon_config(tmp_path, broker.port, mqtt={"max_packet_bytes": 1200}), 3.0).start().join()
    check_books(report)
    b = bus(report)
    assert b["reconnects"] == 0 and b["failed"] > 0 and b["written"] > 0


def test_acl_denied_publishes_are_counted_as_refused(tmp_path: Path, mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory(users={"daemon": "s3cret-pw"},
                               acl={"daemon": ["readwrite livetok/host1/cam/audio/#", "readwrite livetok/host1/+/meta",
                                               "readwrite livetok/host1/available", "readwrite livetok/host1/stats"]})
    pw = broker.password_file("daemon", tmp_path)
    cfg = daemon_config(tmp_path, broker.port, mqtt={"username": "daemon", "password_file": str(pw)})
    report = DaemonThread(cfg, 3.0).start().join()
    check_books(report)
    b = bus(report)
    made = truth(tmp_path / "host1.ltk")
    audio = {k for k in made if "/audio/" in k[0]}
    assert b["written"] == len(audio) and b["failed"] == b["refused"] == len(made) - len(audio)


def _run_cli(args: list[str], seconds: float = 4.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "livetok.cli", "run", "--source", "synthetic", "--duration",
                           str(seconds), *args], capture_output=True, text=True, timeout=120)


def test_wrong_password_is_one_line_retried_and_never_printed(tmp_path: Path,
                                                               mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory(users={"daemon": "right-password"})
    pw = tmp_path / "pw"
    pw.write_text("wrong-password-XYZ\n")
    r = _run_cli(["--sink", broker.url_for("daemon"), "--password-file", str(pw),
                  "--sink", f"file:{tmp_path / 'x.ltk'}"])
    assert r.returncode == 69 and "Traceback" not in r.stderr  # a bounded run whose bus never connected
    assert "wrong-password-XYZ" not in r.stdout + r.stderr and "right-password" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines()
             if ln.startswith("livetok: sink mqtt:") and "refused the connection" in ln]
    assert len(lines) == 1 and "user 'daemon'" in lines[0], r.stderr
    assert '"sink.mqtt.connect_failures": ' in r.stderr
    failures = int(r.stderr.split('"sink.mqtt.connect_failures": ')[1].split(",")[0])
    assert failures >= 2  # retried


@pytest.mark.parametrize("case", ["wrong CA", "hostname mismatch"])
def test_tls_failures_are_one_clear_line(tmp_path: Path, mosquitto_factory: MosquittoFactory, case: str) -> None:
    broker = mosquitto_factory(tls=True, san=("DNS:elsewhere.example",) if case == "hostname mismatch"
                               else ("IP:127.0.0.1", "DNS:localhost"))
    assert broker.certs is not None and broker.tls_port is not None
    ca = broker.certs.ca
    if case == "wrong CA":
        other = mosquitto_factory(tls=True)
        assert other.certs is not None
        ca = other.certs.ca
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"mqtt:\n  host: 127.0.0.1\n  port: {broker.tls_port}\n  connect_timeout_s: 2\n"
                   f"  tls: {{enabled: true, ca_file: '{ca}'}}\n")
    r = _run_cli(["-c", str(cfg), "--sink", f"file:{tmp_path / 'x.ltk'}"], 3.0)
    assert r.returncode == 69 and "Traceback" not in r.stderr  # a bounded run whose bus never connected
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("livetok: sink mqtt:") and "TLS" in ln]
    assert len(lines) == 1, r.stderr
    assert ("not accepted" in lines[0]) and (
        "mismatch" in lines[0].lower() or "ip address" in lines[0].lower() or case == "wrong CA")


# -- scale-out -------------------------------------------------------------------------------------

def test_three_daemons_two_shared_consumers(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Three daemons (own instances) and a shared subscription of two consumers: every message of
    every daemon is delivered once, to exactly one of the two."""
    a = Collector(mosquitto.url, share="models", qos=1).start()
    b = Collector(mosquitto.url, share="models", qos=1).start()
    cfgs = [daemon_config(tmp_path, mosquitto.port, instance=f"host{i}", fps=5) for i in range(3)]
    threads = [DaemonThread(c, 3.0).start() for c in cfgs]
    reports = [t.join() for t in threads]
    made: list[tuple[str, Key]] = []
    for i in range(3):
        made += [(f"host{i}", k) for k in truth(tmp_path / f"host{i}.ltk")]
    a.stop(quiet_s=0.5, until=lambda: len(a.keys) + len(b.keys) >= len(made))
    b.stop(quiet_s=0.5)
    for r in reports:
        check_books(r)
    got_a = [(m.instance, k) for m, k in zip([m for m in a.messages if m.packet or m.step], a.keys, strict=True)]
    got_b = [(m.instance, k) for m, k in zip([m for m in b.messages if m.packet or m.step], b.keys, strict=True)]
    assert len(got_a) + len(got_b) == len(made)  # once each
    assert set(got_a).isdisjoint(got_b)  # to exactly one consumer
    assert set(got_a) | set(got_b) == set(made)
    assert got_a and got_b  # both consumers took a share


def test_a_stalled_consumer_costs_the_daemon_nothing(tmp_path: Path, mosquitto_factory: MosquittoFactory) -> None:
    """A persistent consumer goes away while the daemon publishes: the broker queues for it, the
    daemon's buffer stays (nearly) empty, and the consumer gets everything when it is back."""
    broker = mosquitto_factory(persistence=True, max_queued_messages=100_000)
    first = Collector(broker.url, **persistent("stalled", broker.url)).start()
    first.stop(quiet_s=0.1, limit_s=0.1)  # gone, its session kept
    report = DaemonThread(daemon_config(tmp_path, broker.port), 4.0).start().join()
    made = truth(tmp_path / "host1.ltk")
    back = Collector(broker.url, **persistent("stalled", broker.url)).start()
    back.stop(quiet_s=0.5, until=lambda: back.has_tails(made))
    check_books(report)
    b = bus(report)
    assert b["queue_max_depth"] <= b["receive_maximum"] + 50  # a handful waiting for acks, no backlog
    assert set(back.keys) | set(first.keys) >= made and back.stats.total.missing == 0


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_every_publish_is_checked_against_the_limit(tmp_path: Path, mosquitto_factory: MosquittoFactory,
                                                    protocol: str) -> None:
    """Not only tokens: the stats document (here ~2 KB every 0.5 s), meta and availability are checked
    too. v5: the broker's max_packet_size, from its CONNACK; 3.1.1: message_size_limit, told to the
    daemon by mqtt.max_packet_bytes. What does not fit is refused before sending, counted, said once;
    the connection never drops and nothing reaches stderr but event lines."""
    broker = mosquitto_factory(extra=("max_packet_size 1500",)) if protocol == "5" else \
        mosquitto_factory(message_size_limit=1400)
    limit = "" if protocol == "5" else ", max_packet_bytes: 1400"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources:\n  - {kind: synthetic, name: cam, size: 160x120, fps: 10}\n"
        f"sinks:\n  - {{kind: file, path: '{tmp_path / 'x.ltk'}'}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}, instance: lim, protocol: '{protocol}', keepalive_s: 2,"
        f" stats_interval_s: 0.5{limit}}}\n")
    sub = Collector(broker.url, qos=1).start()
    r = subprocess.run([sys.executable, "-m", "livetok.cli", "run", "-c", str(cfg), "--duration", "5"],
                       capture_output=True, text=True, timeout=180)
    sub.stop(quiet_s=0.5, until=lambda: any(m.packet is not None for m in sub.messages))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "RuntimeError" not in r.stderr, r.stderr
    gauges = json.loads(r.stderr[r.stderr.index("{"):])["gauges"]
    assert gauges["sink.mqtt.connects"] == 1 and gauges["sink.mqtt.reconnects"] == 0, r.stderr
    assert gauges["sink.mqtt.control_refused"] >= 5, gauges  # the stats document, each time
    lines = [ln for ln in r.stderr.splitlines() if "/stats" in ln and "maximum packet size" in ln]
    assert len(lines) == 1, r.stderr  # said once, not at every interval
    assert sub.messages and any(m.packet is not None for m in sub.messages)


# -- the exit code of a run whose bus never connected (issue 13 item 7) ----------------------------

@pytest.mark.parametrize("fault", ["dead port", "wrong password", "black hole"])
def test_a_bounded_run_whose_bus_never_connected_exits_69(tmp_path: Path, mosquitto_factory: MosquittoFactory,
                                                           capsys: pytest.CaptureFixture[str], fault: str) -> None:
    """Capture and the file sink go on; the bus's messages are dropped and counted; the run says so
    in one line and exits 69, so a script or a supervisor can tell."""
    from livetok.cli import main

    out = tmp_path / "x.ltk"
    mqtt = "connect_timeout_s: 2"
    proxy = None
    if fault == "dead port":
        port = free_port()
    elif fault == "wrong password":
        broker = mosquitto_factory(users={"daemon": "right-password"})
        pw = tmp_path / "pw"
        pw.write_text("wrong-password\n")
        port, mqtt = broker.port, f"{mqtt}, username: daemon, password_file: '{pw}'"
    else:
        proxy = NetProxy(mosquitto_factory().port)
        proxy.blackhole()  # the TCP connection is accepted, the CONNECT never answered
        port = proxy.port
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources:\n  - {kind: synthetic, name: cam, size: 160x120, fps: 10}\n"
                   f"sinks:\n  - {{kind: file, path: '{out}'}}\n"
                   f"mqtt: {{host: 127.0.0.1, port: {port}, instance: dead, {mqtt}}}\n")
    try:
        code = main(["run", "-c", str(cfg), "--duration", "3"])
    finally:
        if proxy is not None:
            proxy.close()
    err = capsys.readouterr().err
    assert code == 69, err
    last = [ln for ln in err.splitlines() if ln.startswith("livetok: error:")]
    assert len(last) == 1 and "the MQTT bus never connected" in last[0], err
    assert "wrong-password" not in err and "Traceback" not in err
    books = json.loads(err[err.index("{"):err.rindex("}") + 1])["accounting"]
    assert books["balanced"] == 1
    bus = books["sinks"]["mqtt"]
    assert bus["written"] == 0 and bus["dropped"] == bus["offered"] > 0
    assert books["sinks"]["file0"]["written"] > 0 and read_ltk(out).packets  # capture went on


def test_the_sink_state_follows_the_connection(tmp_path: Path, mosquitto_factory: MosquittoFactory,
                                               caplog: pytest.LogCaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`ok` only while connected: `connecting` when the broker was never reached, `disconnected` after
    a loss (it said `ok` throughout). The run ends once the sink has said it lost the connection, with
    a 1 s shutdown deadline (not 10: what the bus still holds is counted as dropped either way)."""
    import livetok.pipeline.runner as runner_module

    monkeypatch.setattr(runner_module, "SHUTDOWN_S", 1.0)
    report = DaemonThread(daemon_config(tmp_path, free_port()), 2.0).start().join()
    assert bus(report)["state"] == "connecting" and bus(report)["connects"] == 0
    broker = mosquitto_factory()
    sub = Collector(broker.url, qos=1).start()
    caplog.set_level(logging.WARNING, logger="livetok")
    d = DaemonThread(daemon_config(tmp_path, broker.port, instance="lost"), 60.0).start()
    _wait(lambda: bool(sub.keys), "connected and publishing")
    broker.stop()
    sub._stop.set()  # its own reconnect attempts end with it
    _wait(lambda: any("lost the connection" in r.getMessage() for r in caplog.records), "said the loss")
    report = d.stop()
    assert bus(report)["state"] == "disconnected" and bus(report)["connects"] == 1
    check_books(report)
