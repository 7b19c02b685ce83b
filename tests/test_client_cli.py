"""``livetok tail`` and ``livetok record`` as subprocesses (the installed entry point) against Mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from broker import BrokerOptions, Mosquitto, MosquittoFactory, free_port
from busgen import TestPublisher, json_lines, packet, run_cli, step, wait_for

from livetok.commands.probe import packet_json, step_json
from livetok.errors import DecodeError
from livetok.wire import LtkWriter, Modality, Scale, TokenPacket, encode_packet, read_ltk

LIVETOK = str(Path(sys.executable).with_name("livetok"))
ROOT = Path(__file__).resolve().parent.parent


class Feeder:
    """Publishes ``items`` over and over (seq continuing) until stopped, so that a command started
    as a subprocess gets messages whenever its subscription becomes active. Bounded: 20 s at most."""

    def __init__(self, url: str, make: object, interval_s: float = 0.01, **kw: object) -> None:
        self.url, self.make, self.interval_s, self.kw = url, make, interval_s, kw
        self.sent: list[object] = []
        self.run_id = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with TestPublisher(self.url, **self.kw) as pub:  # type: ignore[arg-type]
            self.run_id = pub.run_id
            await pub.send_meta()
            seq = 0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not self._stop.is_set() and loop.time() < deadline:
                item = self.make(seq)  # type: ignore[operator]
                await pub.send(item)
                self.sent.append(item)
                seq += 1
                await asyncio.sleep(self.interval_s)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(25)


def mixed(seq: int) -> object:
    """Alternately an audio packet, a video packet and a step."""
    kind = seq % 3
    if kind == 0:
        return packet(seq // 3)
    if kind == 1:
        return packet(seq // 3, modality=Modality.VIDEO, scale=Scale.COARSE)
    return step(seq // 3)


def recorded(path: Path) -> int:
    """Records in a token file being written (0 while it does not exist yet)."""
    try:
        return len(read_ltk(path).packets)
    except DecodeError:
        return 0


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(err.splitlines()) == 1 and err.startswith("livetok: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)


@pytest.mark.slow
def test_tail_prints_one_readable_line_per_message(mosquitto: Mosquitto) -> None:
    with Feeder(mosquitto.url, mixed):
        proc = run_cli("tail", mosquitto.url, "--count", "9")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 9
    steps = [ln for ln in lines if "/steps" in ln]
    audio = [ln for ln in lines if "/audio/fine" in ln]
    video = [ln for ln in lines if "/video/coarse" in ln]
    assert len(steps) == len(audio) == len(video) == 3
    assert "livetok/host1/cam0/audio/fine  #" in audio[0] and "keyframe  1x4 [" in audio[0] and "lat " in audio[0]
    assert "49x2 [" in video[0] and " ...]" in video[0]
    assert "80 ms  skew ?  audio/finex4 audio/coarsex1 video/finex1 video/coarsex1" in steps[0]
    assert proc.stderr.strip().splitlines()[-1].startswith("livetok: 9 messages in ")


@pytest.mark.slow
def test_tail_json_is_probe_tokens_shape_plus_topic(mosquitto: Mosquitto) -> None:
    with Feeder(mosquitto.url, mixed) as feed:
        proc = run_cli("tail", mosquitto.url, "--json", "--count", "6")
    assert proc.returncode == 0, proc.stderr
    rows = list(json_lines(proc.stdout))
    assert len(rows) == 6
    sent = {(type(i).__name__, i.seq, getattr(i, "modality", None)): i for i in feed.sent}  # type: ignore[attr-defined]
    for row in rows:
        assert row["run_id"] == feed.run_id
        topic = row.pop("topic")
        row.pop("run_id")
        if row["kind"] == "step":
            assert topic == "livetok/host1/g0/steps"
            assert row == step_json(sent[("AlignedStep", row["seq"], None)])  # type: ignore[arg-type]
        else:
            mod = Modality[row["modality"].upper()]
            assert topic == f"livetok/host1/cam0/{row['modality']}/{row['stream']}"
            p = sent[("TokenPacket", row["seq"], mod)]
            assert isinstance(p, TokenPacket) and row == packet_json(p)


@pytest.mark.slow
def test_record_writes_what_was_published_and_stops_cleanly_on_sigterm(mosquitto: Mosquitto, tmp_path: Path) -> None:
    out = tmp_path / "rec.ltk"
    with Feeder(mosquitto.url, mixed) as feed:
        proc = subprocess.Popen([LIVETOK, "record", mosquitto.url, "-o", str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert wait_for(lambda: recorded(out) >= 12, 20)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
        finally:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    got = read_ltk(out)
    assert not got.errors and len(got.packets) >= 12
    # exactly what was published, in order, from wherever the subscription started
    first = next(i for i, item in enumerate(feed.sent) if item == got.packets[0])
    assert got.packets == feed.sent[first:first + len(got.packets)]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"livetok: recorded {len(got.packets)} messages (") and f"to {out}" in last
    assert "gaps 0 (0 missing), duplicates 0" in last


class StderrLines:
    """Collects a child's stderr lines in a thread, so a test can wait (bounded) for one."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stderr is not None
        stream = proc.stderr
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    def join(self) -> str:
        self._thread.join(10)
        return "".join(self.lines)


@pytest.mark.slow
def test_recording_a_daemon_run_gives_exactly_what_its_file_sink_wrote(mosquitto: Mosquitto, tmp_path: Path) -> None:
    rec_out, file_out = tmp_path / "rec.ltk", tmp_path / "file.ltk"
    rec = subprocess.Popen([LIVETOK, "record", mosquitto.url, "-o", str(rec_out)], stderr=subprocess.PIPE, text=True)
    err = StderrLines(rec)
    try:
        assert wait_for(lambda: any("livetok: subscribed to" in line for line in err.lines), 20), err.lines
        run = run_cli("run", "--source", "synthetic", "--sink", f"mqtt://127.0.0.1:{mosquitto.port}",
                      "--sink", f"file:{file_out}", "--duration", "3", timeout_s=240)
        assert run.returncode == 0, run.stderr[-3000:]
        written = read_ltk(file_out)
        assert not written.errors and len(written.packets) > 100
        assert wait_for(lambda: recorded(rec_out) >= len(written.packets), 20)
        rec.send_signal(signal.SIGTERM)
        rec.wait(15)
    finally:
        rec.kill()
        rec.wait(5)
    assert rec.returncode == 0, err.join()
    got = read_ltk(rec_out)
    assert not got.errors
    # the same packets and steps, byte for byte, in the same order
    assert [encode_packet(p) for p in got.packets] == [encode_packet(p) for p in written.packets]
    assert "gaps 0 (0 missing), duplicates 0" in err.join()


@pytest.mark.slow
def test_record_for_a_duration(mosquitto: Mosquitto, tmp_path: Path) -> None:
    out = tmp_path / "dur.ltk"
    with Feeder(mosquitto.url, lambda s: packet(s)):
        proc = run_cli("record", mosquitto.url, "-o", str(out), "--duration", "1.5", "livetok/+/cam0/audio/+")
    assert proc.returncode == 0, proc.stderr
    pkts = read_ltk(out).packets
    assert pkts and all(isinstance(p, TokenPacket) for p in pkts)
    assert [p.seq for p in pkts] == list(range(pkts[0].seq, pkts[0].seq + len(pkts)))


@pytest.mark.slow
def test_tail_through_a_login(mosquitto_factory: MosquittoFactory, tmp_path: Path) -> None:
    broker = mosquitto_factory(BrokerOptions(users={"model": "pw-1", "daemon": "pw-2"}))
    pw = broker.password_file("model", tmp_path)
    with Feeder(broker.url, lambda s: packet(s), username="daemon", password="pw-2"):
        proc = run_cli("tail", broker.url_for("model"), "--password-file", str(pw), "--count", "2")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2
    (tmp_path / "bad").write_text("nope\n")
    proc = run_cli("tail", broker.url_for("model"), "--password-file", str(tmp_path / "bad"))
    one_line_error(proc, 69, "not authorized", "password")
    assert "nope" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("args", "code", "needles"), [
    (["record", "mqtt://127.0.0.1:{port}", "-o", "/nonexistent-dir/x.ltk"], 73, ["/nonexistent-dir/x.ltk"]),
    (["tail", "mqtt://127.0.0.1:{dead}", "--connect-attempts", "2"], 69, ["Connection refused", "2 attempts"]),
    (["tail", "mqtt://alice:Pa55w0rd@127.0.0.1:{port}"], 78, ["password", "file"]),
    (["tail", "http://127.0.0.1:{port}"], 78, ["mqtt://"]),
    (["tail", "mqtt://127.0.0.1:{port}", "livetok/#/steps"], 78, ["bad topic filter"]),
    (["record", "mqtt://127.0.0.1:{port}", "-o", "{tmp}/x.ltk", "--duration", "-1"], 78, ["--duration"]),
    (["tail", "mqtt://127.0.0.1:{port}", "--persistent"], 78, ["client id"]),
])
def test_bad_input_is_one_line(mosquitto: Mosquitto, tmp_path: Path, args: list[str], code: int,
                               needles: list[str]) -> None:
    argv = [a.format(port=mosquitto.port, dead=free_port(), tmp=tmp_path) for a in args]
    proc = run_cli(*argv)
    one_line_error(proc, code, *needles)
    assert "Pa55w0rd" not in proc.stderr and proc.stdout == ""


@pytest.mark.slow
def test_stats_and_meta_topics_show_in_tail(mosquitto: Mosquitto) -> None:
    async def publish_meta_and_stats() -> None:
        async with TestPublisher(mosquitto.url) as pub:
            await pub.send_meta()
            await pub.send_available("online")
            await pub.send_raw("livetok/host1/stats", json.dumps({"bus": {"connected": True}}).encode(), retain=True)

    asyncio.run(publish_meta_and_stats())  # all retained: tail sees them whenever it subscribes
    proc = run_cli("tail", mosquitto.url, "livetok/host1/#", "--json", "--count", "3")
    assert proc.returncode == 0, proc.stderr
    rows = {r["kind"]: r for r in json_lines(proc.stdout)}
    assert set(rows) == {"meta", "available", "stats"}
    assert rows["meta"]["meta"]["source"] == "cam0" and rows["available"]["text"] == "online"
    assert rows["stats"]["stats"] == {"bus": {"connected": True}}


def test_the_client_stays_light(tmp_path: Path) -> None:
    """A model server must not need the daemon's stack: no torch, torchaudio, PyAV or numba."""
    code = (
        "import sys\n"
        "import livetok.client, livetok.vocab, livetok.bus, livetok.bus.connect, livetok.commands.tail, livetok.cli\n"
        "from livetok.cli import main\n"
        f"rc = main(['record', 'mqtt://127.0.0.1:1', '-o', '{tmp_path / 'none.ltk'}', '--connect-attempts', '1'])\n"
        "v = livetok.vocab.Vocabulary.from_codebook_file()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchaudio', 'av', 'numba'))\n"
        "print(rc, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "69 []", out.stdout + out.stderr
    assert not (tmp_path / "none.ltk").exists()  # a record that never connected leaves no file


# -- record's output: the daemon's file sink's rules (livetok/commands/recordfile.py) --------------------------


def some_ltk(path: Path, n: int = 3) -> bytes:
    """A token file of ``n`` packets; its bytes."""
    with LtkWriter(path) as w:
        for i in range(n):
            w.write(packet(i))
    return path.read_bytes()


MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(range(256)) * 4


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name)


@pytest.mark.slow
@pytest.mark.parametrize("existing", ["ltk", "mp4", "none"])
@pytest.mark.parametrize("broker", ["wrong port", "dead broker"])
def test_a_record_that_never_connects_changes_nothing(mosquitto: Mosquitto, tmp_path: Path, existing: str,
                                                      broker: str) -> None:
    """Before: exit 69 and the existing file (a .ltk or an .mp4) cut to an 8-byte header."""
    out = tmp_path / f"run.{'mp4' if existing == 'mp4' else 'ltk'}"
    before = some_ltk(out) if existing == "ltk" else None
    if existing == "mp4":
        out.write_bytes(MP4_HEAD)
        before = MP4_HEAD
    if broker == "dead broker":
        url = mosquitto.url
        mosquitto.kill()
    else:
        url = f"mqtt://127.0.0.1:{free_port()}"
    proc = run_cli("record", url, "-o", str(out), "--connect-attempts", "1")
    if existing == "mp4":  # refused before the bus is tried: it is not a token file
        one_line_error(proc, 73, str(out), "not a .ltk token file", "refusing")
    else:
        one_line_error(proc, 69, "Connection refused")
    assert (out.read_bytes() if out.exists() else None) == before and hidden(tmp_path) == []


@pytest.mark.slow
def test_record_refuses_what_it_must_not_append_to(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """An existing file that is not a whole .ltk of this version, or that another writer holds: one
    line, 73, before connecting, and the file as it was."""
    import fcntl

    good = some_ltk(tmp_path / "good.ltk")
    cases = {"damaged.ltk": good[:-3], "v2.ltk": good[:4] + b"\x02" + good[5:], "text.ltk": b"hello\n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    for name, needle in (("damaged.ltk", "last record is damaged"), ("v2.ltk", "version 2"),
                         ("text.ltk", "not a .ltk token file")):
        proc = run_cli("record", mosquitto.url, "-o", str(tmp_path / name), "--duration", "1")
        one_line_error(proc, 73, name, needle)
        assert (tmp_path / name).read_bytes() == cases[name]
    with (tmp_path / "good.ltk").open("rb") as held:  # as a daemon's file sink holds its file
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = run_cli("record", mosquitto.url, "-o", str(tmp_path / "good.ltk"), "--duration", "1")
    one_line_error(proc, 73, "in use by another process")
    proc = run_cli("record", mosquitto.url, "-o", str(tmp_path), "--duration", "1")
    one_line_error(proc, 73, "is a directory")
    assert (tmp_path / "good.ltk").read_bytes() == good and hidden(tmp_path) == []


@pytest.mark.slow
def test_a_successful_record_appends_to_an_existing_ltk(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Before: the existing file was replaced by the new recording (the daemon's sink appends)."""
    out = tmp_path / "run.ltk"
    before = some_ltk(out, 5)
    with Feeder(mosquitto.url, lambda s: packet(s, modality=Modality.VIDEO, scale=Scale.COARSE)):
        proc = run_cli("record", mosquitto.url, "-o", str(out), "--count", "6")
    assert proc.returncode == 0, proc.stderr
    after = out.read_bytes()
    got = read_ltk(out)
    assert after[:len(before)] == before and not got.errors
    assert [p.modality for p in got.packets] == [Modality.AUDIO] * 5 + [Modality.VIDEO] * 6
    assert "recorded 6 messages (6 packets, 0 steps) to " in proc.stderr and hidden(tmp_path) == []


@pytest.mark.slow
def test_a_record_that_receives_nothing_leaves_no_file_or_an_untouched_one(mosquitto: Mosquitto,
                                                                           tmp_path: Path) -> None:
    new, old = tmp_path / "new.ltk", tmp_path / "old.ltk"
    before = some_ltk(old)
    for out in (new, old):
        proc = run_cli("record", mosquitto.url, "-o", str(out), "--duration", "0.5")
        assert proc.returncode == 0, proc.stderr
    assert not new.exists() and old.read_bytes() == before and hidden(tmp_path) == []


@pytest.mark.slow
def test_a_record_interrupted_while_connecting_leaves_nothing(mosquitto: Mosquitto, tmp_path: Path,
                                                             netproxy_factory: Any) -> None:
    """SIGHUP (a closed terminal) while the broker does not answer: one line, 129, no temporary file."""
    proxy = netproxy_factory(mosquitto.port)
    proxy.blackhole()
    out = tmp_path / "rec.ltk"
    proc = subprocess.Popen([LIVETOK, "record", proxy.url, "-o", str(out), "--connect-attempts", "1"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: proxy.connections >= 1, 30)  # connecting, the temporary file made
        assert hidden(tmp_path) != []
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait(5)
    assert (proc.returncode, err) == (129, "livetok: interrupted (SIGHUP)\n")
    assert not out.exists() and hidden(tmp_path) == []
