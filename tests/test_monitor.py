"""``livetok monitor``: the board's verdicts (pure), its flags and errors, and the dashboard as a
person sees it: in tmux against a real Mosquitto and a live daemon, the screen captured and read.

Every process a test starts (broker, daemon, tmux server) is ended by that test, and every wait is
bounded (``wait_for``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from broker import Mosquitto, free_port
from busgen import TestPublisher, wait_for
from requires import require

from livetok.cli import main
from livetok.monitor.model import Board, Thresholds
from livetok.monitor.render import BARS, snapshot_json, sparkline

ROOT = Path(__file__).resolve().parent.parent
NOW_NS = 1_800_000_000_000_000_000


def stats_doc(t_ns: int = NOW_NS, *, fps: float | None = 29.97, audio_rate: float | None = 50.0,
              video_p99: float = 15.0, audio_p99: float = 34.0, skew: float | None = 2.0, state: str = "running",
              publish: bool = True, connected: bool = True, source: str = "cam0", **extra: Any) -> dict[str, Any]:
    """A stats document in the shape docs/bus.md gives (and the daemon publishes)."""
    def pct(p99: float) -> dict[str, float]:
        return {"p50": round(p99 / 2, 1), "p95": round(p99 * 0.8, 1), "p99": p99}

    lat = {f"{m}/{s}": {"emit": pct(p99 - 1), "publish": pct(p99) if publish else None}
           for m, p99 in (("video", video_p99), ("audio", audio_p99)) for s in ("fine", "coarse")}
    return {"run_id": "5f0c3a9e12d4b7a8", "time_unix_ns": t_ns, "uptime_s": 125.3,
            "sources": {source: {"state": state, "fps": fps, "audio_blocks_per_s": audio_rate, "latency_ms": lat,
                                 "drift_ppm": 12.4, "slewing_ms": 0.0,
                                 "dropped": {"capture": {"video": 1, "audio": 0}, "sinks": {"mqtt": 3}},
                                 "queue": {"video": 0, "audio": 1}, "reconnects": 0, "stalls": 0, "errors": 0,
                                 "last_error": ""}},
            "groups": {source: {"steps": 1562, "late": 0, "missing": 0, "late_packets": 0, "pending_steps": 1,
                                "skew_ms": skew, "latency_ms": {"step": pct(120.0)}}},
            "sinks": {}, "bus": {"connected": connected, "reconnects": 2, "buffered": 5, "dropped": 0, "refused": 1},
            **extra}


def one_stream(board: Board, now_s: float) -> Any:
    (inst,) = board.view(now_s)
    (stream,) = inst.streams
    return inst, stream


# -- the board (no broker, no terminal) ---------------------------------------------------------------


def test_a_healthy_stream_is_ok_with_its_numbers() -> None:
    board = Board()
    board.available("host1", "online", 0.0)
    board.stats("host1", stats_doc(), 1.0, NOW_NS / 1e9)
    inst, s = one_stream(board, 1.5)
    assert inst.ok and s.ok and inst.availability == "online"
    assert (s.fps, s.audio_per_s, s.skew_ms, s.drift_ppm) == (29.97, 50.0, 2.0, 12.4)
    assert s.video is not None and (s.video.p99, s.video.measured_at) == (15.0, "publish")
    assert (s.dropped_capture, s.dropped_sinks) == (1, 3)
    assert inst.bus is not None and inst.bus["buffered"] == 5


@pytest.mark.parametrize(("change", "reason"), [
    ({"video_p99": 101.0}, "late: video p99 101 ms > 100"),
    ({"audio_p99": 151.0}, "late: audio p99 151 ms > 150"),
    ({"skew": 41.0}, "out of sync: A/V skew +41 ms, beyond ±40"),
    ({"skew": -55.0}, "out of sync: A/V skew -55 ms, beyond ±40"),
    ({"fps": 0.0}, "stalled: 0 video frames/s"),
    ({"audio_rate": 0.0}, "stalled: 0 audio blocks/s"),
    ({"state": "backoff"}, "stalled: source backoff"),
    ({"state": "waiting", "fps": 0.0}, "waiting: listening, no sender"),
])
def test_late_stalled_or_out_of_sync_is_red_with_the_reason(change: dict[str, Any], reason: str) -> None:
    board = Board()
    board.stats("host1", stats_doc(**change), 1.0, NOW_NS / 1e9)
    _, s = one_stream(board, 1.5)
    assert s.problems == [reason]


@pytest.mark.parametrize(("token_fps", "interval_s", "stalled"), [
    (0.1, 5.0, False),  # one token frame every 10 s: every other 5 s document counts none
    (0.3, 5.0, False),  # 1.5 a document: a window of 0.9 interval may still hold one, or none
    (0.5, 5.0, True),  # 2.5 a document: none is a stall
    (1.0, 1.0, False),
    (None, 5.0, True),
])
def test_zero_frames_in_an_interval_of_a_low_token_rate_is_no_stall(token_fps: float | None, interval_s: float,
                                                                   stalled: bool) -> None:
    """A source tokenizing one frame every 10 s (``token_fps: 0.1``) has ``fps`` 0 in every other stats
    document of a 5 s interval: that is its rate, not a stall (it was red half the time); a camera
    that stops delivering is its state's (stalled, backoff), as always."""
    doc = stats_doc(fps=0.0, stats_interval_s=interval_s)
    doc["sources"]["cam0"] |= {"token_fps": token_fps, "nominal_fps": 30.0}
    board = Board()
    board.stats("host1", doc, 1.0, NOW_NS / 1e9)
    _, s = one_stream(board, 1.5)
    assert s.token_fps == token_fps and s.problems == (["stalled: 0 video frames/s"] if stalled else [])


def test_thresholds_are_the_flags() -> None:
    board = Board(Thresholds(late_video_ms=10, late_audio_ms=30, skew_ms=1.5))
    board.stats("host1", stats_doc(), 1.0, NOW_NS / 1e9)
    _, s = one_stream(board, 1.5)
    assert s.problems == ["late: video p99 15 ms > 10", "late: audio p99 34 ms > 30",
                          "out of sync: A/V skew +2 ms, beyond ±1.5"]


def test_no_stats_for_three_intervals_is_stalled() -> None:
    board = Board()
    for i in range(4):  # one document a second: the interval is learnt from their time_unix_ns
        board.stats("host1", stats_doc(NOW_NS + i * 1_000_000_000), 10.0 + i, NOW_NS / 1e9 + i)
    inst, s = one_stream(board, 13.0 + 2.9)
    assert inst.interval_s == 1.0 and s.ok
    inst, s = one_stream(board, 13.0 + 3.1)
    assert s.problems == ["stalled: no stats for 3 s"] and not inst.ok


def test_an_old_retained_document_is_stale_at_once_and_a_live_one_is_not() -> None:
    board = Board()  # the default interval (5 s) until two documents have been seen
    board.stats("old", stats_doc(NOW_NS), 100.0, NOW_NS / 1e9 + 60, retained=True)
    board.stats("skewed-clock", stats_doc(NOW_NS), 100.0, NOW_NS / 1e9 + 60, retained=False)
    old, skewed = board.view(100.5)
    assert old.problems == ["stalled: no stats for 60 s"]
    assert skewed.ok  # a live message is fresh whatever the clocks say


def test_the_daemon_stopped_or_lost_is_red() -> None:
    board = Board()
    board.stats("host1", stats_doc(), 1.0, NOW_NS / 1e9)
    board.available("host1", "stopped", 1.2)
    inst, s = one_stream(board, 1.5)
    assert inst.problems == ["daemon stopped"] and s.problems == ["daemon stopped"]
    board.available("host1", "offline", 1.3)
    assert one_stream(board, 1.5)[1].problems == ["daemon offline (connection lost)"]


def test_an_instance_heard_of_without_stats_waits_then_is_stalled() -> None:
    board = Board()
    board.available("host1", "online", 0.0)
    (inst,) = board.view(1.0)
    assert inst.ok and inst.note == "waiting for stats"
    (inst,) = board.view(16.0)
    assert inst.problems == ["stalled: no stats for 16 s"]


def test_emit_latency_when_nothing_was_published_and_the_declared_interval() -> None:
    board = Board()
    board.stats("host1", stats_doc(publish=False, stats_interval_s=2.0), 1.0, NOW_NS / 1e9)
    inst, s = one_stream(board, 1.5)
    assert s.video is not None and (s.video.measured_at, s.video.p99) == ("emit", 14.0)
    assert inst.interval_s == 2.0


def test_history_is_bounded_and_repeats_are_not_counted() -> None:
    board = Board(Thresholds(history=5))
    for i in range(12):
        board.stats("host1", stats_doc(NOW_NS + i, skew=float(i)), 1.0 + i, NOW_NS / 1e9)
    board.stats("host1", stats_doc(NOW_NS + 11, skew=99.0), 20.0, NOW_NS / 1e9)  # the retained copy again
    _, s = one_stream(board, 20.0)
    assert s.skew_history == [7.0, 8.0, 9.0, 10.0, 11.0] and len(s.drift_history) == 5


def test_a_group_not_named_after_a_source_has_a_row_for_its_skew() -> None:
    doc = stats_doc(skew=None)
    doc["sources"]["mic"] = {**doc["sources"]["cam0"], "fps": None}
    doc["groups"] = {"desk": {"skew_ms": -48.0}}  # groups: [{name: desk, video: cam0, audio: mic}]
    board = Board()
    board.stats("host1", doc, 1.0, NOW_NS / 1e9)
    (inst,) = board.view(1.5)
    assert [(s.source, s.kind) for s in inst.streams] == [("cam0", "source"), ("mic", "source"), ("desk", "group")]
    assert inst.streams[0].ok and inst.streams[2].problems == ["out of sync: A/V skew -48 ms, beyond ±40"]
    assert inst.streams[2].skew_history == [-48.0]


def test_garbage_documents_do_not_break_the_board() -> None:
    board = Board()
    board.stats("a", stats_doc(), 0.5, NOW_NS / 1e9)
    board.stats("a", None, 1.0, 0.0, raw="")  # an empty retained message: the stats cleared
    board.stats("b", {"sources": {"x": {"fps": "fast", "latency_ms": [1], "dropped": {"capture": {"v": None}}}},
                      "groups": {"x": {"skew_ms": float("nan")}}, "bus": "up", "time_unix_ns": "now"}, 1.0, 0.0)
    a, b = board.view(1.5)
    assert a.streams == [] and a.note == "stats cleared" and a.ok
    (s,) = b.streams
    assert (s.fps, s.video, s.skew_ms, s.dropped_capture) == (None, None, None, 0) and s.ok


@pytest.mark.parametrize(("doc", "raw", "why"), [
    (None, "not json", "not JSON, 8 bytes: 'not json'"),
    ([1, 2], "[1, 2]", "JSON list, not an object, 6 bytes: '[1, 2]'"),
    (None, "null", "JSON null, not an object, 4 bytes: 'null'"),
    ({"bus": {"connected": True}}, '{"bus": {"connected": true}}',
     "a JSON object without a 'sources' object, 28 bytes: '{\"bus\": {\"connected\": true}}'"),
])
def test_junk_on_the_stats_topic_is_red_not_waiting(doc: Any, raw: str, why: str) -> None:
    """Before: "waiting for stats", and ``ok: true`` in --json."""
    board = Board()
    board.available("host1", "online", 0.0)
    board.stats("host1", doc, 1.0, NOW_NS / 1e9, raw=raw)
    (inst,) = board.view(1.5)
    assert inst.problems == [f"junk on the stats topic: {why}"] and inst.note == "" and not inst.ok
    assert inst.junk == 1
    board.stats("host1", doc, 2.0, NOW_NS / 1e9, raw=raw)
    assert board.view(2.5)[0].problems == [f"junk on the stats topic: {why} (2 junk messages so far)"]
    snap = snapshot_json(board.view(2.5), board.thresholds)
    assert snap["ok"] is False and snap["instances"][0]["junk"] == 2


def test_junk_after_good_stats_keeps_the_numbers_as_history_and_good_stats_clear_it() -> None:
    board = Board()
    board.stats("host1", stats_doc(NOW_NS), 1.0, NOW_NS / 1e9, raw="{...}")
    board.stats("host1", None, 2.0, NOW_NS / 1e9, raw="\x00\x01garbage")
    inst, s = one_stream(board, 2.5)
    assert inst.problems == ["junk on the stats topic: not JSON, 9 bytes: '??garbage'"]
    assert s.fps == 29.97 and s.problems == inst.problems  # last good numbers, not a verdict on them
    board.stats("host1", stats_doc(NOW_NS + 10**9), 3.0, NOW_NS / 1e9, raw="{...}")
    inst, s = one_stream(board, 3.5)
    assert inst.ok and s.ok and inst.junk == 1


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([1.0, 1.0, 1.0]) == BARS[3] * 3
    line = sparkline([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    assert line[0] == BARS[0] and line[-1] == BARS[-1] and list(line) == sorted(line)
    assert len(sparkline([float(i % 7) for i in range(120)], width=16)) == 16


def test_snapshot_json_shape() -> None:
    board = Board()
    board.stats("host1", stats_doc(skew=60.0), 1.0, NOW_NS / 1e9)
    doc = json.loads(json.dumps(snapshot_json(board.view(1.5), board.thresholds)))
    assert doc["ok"] is False and doc["thresholds"]["skew_ms"] == 40.0
    (inst,) = doc["instances"]
    assert inst["name"] == "host1" and inst["streams"][0]["problems"] == ["out of sync: A/V skew +60 ms, beyond ±40"]


# -- the command: flags, errors, --once --------------------------------------------------------------


@pytest.mark.parametrize(("argv", "says"), [
    (["--late-video", "abc"], "--late-video abc: expected a number above 0"),
    (["--skew", "-3"], "--skew -3: expected a number above 0"),
    (["--history", "1.5"], "--history 1.5: expected a whole number above 0"),
    (["--stale", "inf"], "--stale inf"),
    (["--json"], "--json needs --once"),
    (["--once", "--wait", "0"], "--wait 0"),
])
def test_bad_flags_are_one_line_78(capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    assert main(["monitor", "mqtt://127.0.0.1:1", *argv]) == 78
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err


@pytest.mark.parametrize(("url", "says"), [
    ("http://broker", "must look like mqtt://"),
    ("mqtt://user:pw@broker", "contains a password"),
    ("mqtt://bro ker", "is not a host name"),
])
def test_a_bad_url_is_78(capsys: pytest.CaptureFixture[str], url: str, says: str) -> None:
    assert main(["monitor", url, "--once"]) == 78
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and "pw" not in err


def test_an_unreachable_broker_is_69(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["monitor", f"mqtt://127.0.0.1:{port}", "--once", "--connect-attempts", "2"]) == 69
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"127.0.0.1:{port}" in err and "gave up after 2 attempts" in err


def publish_retained(url: str, instance: str, doc: Any, available: str | None = "online") -> None:
    async def go() -> None:
        async with TestPublisher(url, instance=instance) as pub:
            if available is not None:
                await pub.send_available(available)
            await pub._client.publish(f"livetok/{instance}/stats", json.dumps(doc).encode(), qos=1,  # type: ignore[union-attr]
                                      retain=True)
    asyncio.run(go())


@pytest.mark.slow
def test_once_prints_the_board_as_plain_text(mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]) -> None:
    publish_retained(mosquitto.url, "fake1", stats_doc(time.time_ns(), video_p99=180.0, skew=55.0))
    publish_retained(mosquitto.url, "good1", stats_doc(time.time_ns(), source="door"))
    assert main(["monitor", mosquitto.url, "--once", "--wait", "10"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out  # plain text
    lines = out.splitlines()
    fake = next(i for i, line in enumerate(lines) if line.lstrip().startswith("cam0"))
    assert lines[fake].endswith("late: video p99 180 ms > 100")  # one reason a line, in the status column
    assert lines[fake + 1].strip() == "out of sync: A/V skew +55 ms, beyond ±40"
    good = next(line for line in out.splitlines() if line.lstrip().startswith("door"))
    assert re.search(r"door\s+running\s+30\.0\s+50\.0\s+7\.5/12\.0/15\.0\s+17\.0/27\.2/34\.0\s+\+2\.0", good), good
    assert good.rstrip().endswith("ok")
    assert "fake1  online" in out and "good1  online" in out and "2 instances, 2 streams, 1 red" in out


@pytest.mark.slow
def test_once_json_junk_on_a_stats_topic(mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]) -> None:
    """The adversarial round's case: junk published (retained) on a stats topic was shown as
    "waiting for stats", with ``ok: true``."""
    publish_retained(mosquitto.url, "junk1", "surprise")  # json.dumps: a JSON string, not an object
    async def raw_junk() -> None:
        async with TestPublisher(mosquitto.url, instance="junk2") as pub:
            await pub.send_raw("livetok/junk2/stats", b"\xff\xfe not even text", retain=True)
    asyncio.run(raw_junk())
    assert main(["monitor", mosquitto.url, "--once", "--json", "--wait", "10"]) == 0
    doc = json.loads(capsys.readouterr().out)
    one, two = doc["instances"]
    assert doc["ok"] is False and (one["ok"], two["ok"]) == (False, False) and one["note"] == two["note"] == ""
    assert one["problems"] == ["junk on the stats topic: JSON str, not an object, 10 bytes: '\"surprise\"'"]
    assert two["problems"][0].startswith("junk on the stats topic: not JSON, ") and two["junk"] == 1


@pytest.mark.slow
def test_once_json(mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]) -> None:
    publish_retained(mosquitto.url, "fake1", stats_doc(time.time_ns(), fps=0.0), available="stopped")
    assert main(["monitor", mosquitto.url, "--once", "--json", "--wait", "10"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (inst,) = doc["instances"]
    assert doc["ok"] is False and inst["availability"] == "stopped" and inst["problems"] == ["daemon stopped"]


def test_the_monitor_imports_no_torch() -> None:
    code = ("import sys, livetok.cli, livetok.monitor.app, livetok.monitor.render; "
            "print(sorted(m for m in ('torch', 'torchaudio', 'av', 'numba') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


# -- as a person sees it: tmux ------------------------------------------------------------------------


class Tmux:
    """A tmux server of its own (-L NAME), one ``width`` x ``height`` session running ``command``;
    killed at exit."""

    def __init__(self, command: list[str], width: int = 200, height: int = 50) -> None:
        self.tmux = require("tmux")
        self.socket = f"livetok-test-{uuid.uuid4().hex[:8]}"
        shell = " ".join(_quote(c) for c in command) + "; sleep 600"  # the pane stays to show an error
        # COLUMNS and LINES (set by pytest-xdist in its workers) would size the monitor instead of the pane
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TMUX", "COLUMNS", "LINES")}
        env["TERM"] = "xterm-256color"
        subprocess.run([self.tmux, "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-x", str(width), "-y",
                        str(height), "-s", "mon", shell], check=True, timeout=30, env=env, cwd=ROOT)

    def screen(self, escapes: bool = False) -> str:
        done = subprocess.run([self.tmux or "tmux", "-L", self.socket, "capture-pane", "-p", "-t", "mon",
                               *(["-e"] if escapes else [])], capture_output=True, text=True, timeout=30, check=False)
        return done.stdout

    def close(self) -> None:
        subprocess.run([self.tmux or "tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30,
                       check=False)


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


@pytest.fixture
def tmux_monitor(mosquitto: Mosquitto) -> Iterator[Tmux]:
    t = Tmux([sys.executable, "-m", "livetok.cli", "monitor", mosquitto.url, "--refresh", "0.5"])
    try:
        yield t
    finally:
        t.close()


_SGR = re.compile(r"\x1b\[([0-9;]*)m")


def is_red(line: str, text: str) -> bool:
    """Whether ``text`` in a ``capture-pane -e`` line is drawn in red (SGR 31/91 or palette 1/9)."""
    at = line.index(text)
    red = False
    for m in _SGR.finditer(line[:at]):
        params = [p for p in m.group(1).split(";") if p] or ["0"]
        i = 0
        while i < len(params):
            p = params[i]
            if p in ("0", "39"):
                red = False
            elif p in ("31", "91"):
                red = True
            elif p.isdigit() and (30 <= int(p) <= 37 or 90 <= int(p) <= 97):
                red = False
            elif p == "38" and i + 2 < len(params) and params[i + 1] == "5":
                red = params[i + 2] in ("1", "9", "160", "196")
                i += 2
            i += 1
    return red


def line_with(screen: str, text: str) -> str:
    return next((line for line in screen.splitlines() if text in line), "")


@pytest.mark.slow
def test_tmux_a_crafted_stream_out_of_sync_and_late_is_red(mosquitto: Mosquitto, tmux_monitor: Tmux) -> None:
    publish_retained(mosquitto.url, "fake1", stats_doc(time.time_ns(), video_p99=180.0, skew=55.0))
    late, out_of_sync = "late: video p99 180 ms > 100", "out of sync: A/V skew +55 ms, beyond ±40"
    assert wait_for(lambda: late in tmux_monitor.screen() and out_of_sync in tmux_monitor.screen(), 30, 0.2), \
        tmux_monitor.screen()
    colored = tmux_monitor.screen(escapes=True)
    assert is_red(line_with(colored, late), late) and is_red(line_with(colored, out_of_sync), out_of_sync)
    assert "fake1" in tmux_monitor.screen() and "1 red" in tmux_monitor.screen()
    # and a healthy one beside it is not red
    publish_retained(mosquitto.url, "good1", stats_doc(time.time_ns(), source="door"))
    assert wait_for(lambda: "good1" in tmux_monitor.screen(), 30, 0.2)
    colored = tmux_monitor.screen(escapes=True)
    assert not is_red(line_with(colored, "door"), "door")


@pytest.mark.slow
def test_tmux_a_live_daemon_then_stopped(mosquitto: Mosquitto, tmux_monitor: Tmux, tmp_path: Path) -> None:
    """The monitor in tmux against `livetok run` (synthetic source, stats every second): the instance,
    its source with numbers in every column, online; then the daemon stops: red, saying so."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text("mqtt:\n  stats_interval_s: 1\n  instance: live1\n")
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "livetok.cli", "run", "-c", str(cfg), "--source", "synthetic",
                               "--sink", mosquitto.url, "--duration", "90"], stdout=log, stderr=subprocess.STDOUT,
                              cwd=tmp_path)
    try:
        row = re.compile(r"synthetic\s+running\s+(\d+\.\d)\s+(\d+\.\d)\s+([\d.]+)/([\d.]+)/([\d.]+)\s+"
                         r"([\d.]+)/([\d.]+)/([\d.]+)\s+")

        def healthy() -> bool:
            m = row.search(tmux_monitor.screen())
            return m is not None and float(m.group(1)) > 20 and float(m.group(2)) > 40
        ok = wait_for(healthy, 90, 0.5)
        screen = tmux_monitor.screen()
        assert ok, screen + (tmp_path / "daemon.log").read_text()[-3000:]
        assert "live1  online" in screen and "bus connected" in screen
        m = row.search(screen)
        assert m is not None and all(float(g) > 0 for g in m.groups())
        assert line_with(screen, "synthetic").rstrip().endswith("ok")

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
        assert wait_for(lambda: "daemon stopped" in tmux_monitor.screen(), 30, 0.2), tmux_monitor.screen()
        colored = tmux_monitor.screen(escapes=True)
        assert is_red(line_with(colored, "live1"), "stopped")
        assert is_red(line_with(colored, "synthetic"), "daemon stopped")
        # no stats any more: after three intervals it says so too
        assert wait_for(lambda: "no stats for" in tmux_monitor.screen(), 30, 0.5), tmux_monitor.screen()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=30)
        log.close()


# every column's header, on one line and as a narrow terminal may stack it (docs/service.md)
HEADERS = {"stream": "", "state": "", "fps": "", "audio/s": "", "video ms p50/p95/p99": "video ms\np50/p95/p99",
           "audio ms p50/p95/p99": "audio ms\np50/p95/p99", "A/V skew ms": "A/V skew\nms",
           "skew trend": "skew\ntrend", "drift ppm": "drift\nppm", "drift trend": "drift\ntrend",
           "drops cap/sink": "drops\ncap/sink", "status": ""}


def stacked_header_whole(lines: list[str], header: str) -> bool:
    """A two-line column header is drawn whole: its second line right under its first, aligned on the
    right (a number's column) or on the left (a text's)."""
    if "\n" not in header:
        return False
    top, bottom = header.split("\n")
    for upper, lower in itertools.pairwise(lines):
        tops = [m.start() for m in re.finditer(re.escape(top), upper)]
        bottoms = [m.start() for m in re.finditer(re.escape(bottom), lower)]
        if any(a + len(top) == b + len(bottom) or a == b for a in tops for b in bottoms):
            return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize("width", [80, 120, 200])
def test_tmux_readable_at_80_and_120_columns_and_more_when_wider(mosquitto: Mosquitto, width: int) -> None:
    """Before: at 120 columns every header but two was cut to a letter and an ellipsis ("sta…", "…"
    for fps); at 160 a red reason ran down the right edge a syllable a line."""
    term = Tmux([sys.executable, "-m", "livetok.cli", "monitor", mosquitto.url, "--refresh", "0.5"], width, 50)
    try:
        publish_retained(mosquitto.url, "fake1", stats_doc(time.time_ns(), video_p99=180.0, skew=55.0))
        publish_retained(mosquitto.url, "good1", stats_doc(time.time_ns(), source="door"))
        late, out_of_sync = "late: video p99 180 ms > 100", "out of sync: A/V skew +55 ms, beyond ±40"
        assert wait_for(lambda: out_of_sync in term.screen() and "door" in term.screen(), 30, 0.2), term.screen()
        screen, colored = term.screen(), term.screen(escapes=True)
    finally:
        term.close()
    lines = screen.splitlines()
    assert "…" not in screen and max(len(line) for line in lines) <= width, screen
    values = [r"30\.0", r"50\.0", r"90\.0/144/180", r"17\.0/27\.2/34\.0", r"\+55\.0", r"12\.4", r"1/3"]
    if width == 200:  # one table: every header on one line, the values on one row, the reasons beside them
        head = next(line for line in lines if line.startswith("stream "))
        assert all(header in head for header in HEADERS), head
        row = next(line for line in lines if line.startswith("cam0 "))
        assert re.search(r"\s+".join(["cam0", "running", *values[:5], r"\S+", values[5], r"\S+", values[6], late]),
                         row), row
        assert next(line for line in lines if out_of_sync in line).strip() == out_of_sync
        return
    for header, stacked in HEADERS.items():  # 120: in two tables; 80: with headers on two lines
        whole = header in screen or (width == 80 and stacked_header_whole(lines, stacked))
        assert whole, (header, screen)
    assert re.search(r"\s+".join(["cam0", "running", *values[:4], "red"]), screen), screen
    assert re.search(r"\s+".join(["cam0", values[4], r"\S+", values[5], r"\S+", values[6]]), screen), screen
    assert re.search(r"door\s+running\s+30\.0\s+50\.0\s+7\.5/12\.0/15\.0\s+17\.0/27\.2/34\.0\s+ok", screen), screen
    for reason in (late, out_of_sync):  # each on a line of its own, in red
        line = next(line for line in lines if reason in line)
        assert line.strip() == f"cam0: {reason}", screen
        assert is_red(line_with(colored, reason), reason)


def rated_doc(token_fps: float | None = 5.0, nominal_fps: float | None = 29.97, **kw: Any) -> dict[str, Any]:
    """A stats document whose source has a token rate: 5 of its camera's 29.97 frames tokenized a second."""
    doc = stats_doc(time.time_ns(), fps=5.0, **kw)
    doc["sources"][kw.get("source", "cam0")].update(token_fps=token_fps, nominal_fps=nominal_fps)
    return doc


def test_the_token_rate_is_read_beside_the_cameras() -> None:
    board = Board()
    board.stats("host1", rated_doc(), 1.0, NOW_NS / 1e9)
    board.stats("host2", rated_doc(None, 30.0, source="door"), 1.0, NOW_NS / 1e9)
    board.stats("host3", rated_doc(1.0, None, source="rtsp"), 1.0, NOW_NS / 1e9)
    by_name = {v.name: v for v in board.view(1.5)}
    assert [(s.token_fps, s.nominal_fps) for v in by_name.values() for s in v.streams] == [(5.0, 29.97),
                                                                                          (None, 30.0), (1.0, None)]
    assert by_name["host1"].rated and not by_name["host2"].rated and by_name["host3"].rated
    streams = snapshot_json(board.view(1.5), Thresholds())["instances"][0]["streams"]
    assert (streams[0]["token_fps"], streams[0]["nominal_fps"]) == (5.0, 29.97)


@pytest.mark.slow
@pytest.mark.parametrize("width", [80, 200])
def test_tmux_the_token_rate_beside_the_cameras_at_80_columns(mosquitto: Mosquitto, width: int) -> None:
    """A source with ``token_fps`` shows ``token/cam fps`` as ``5/29.97``: next to its frames/s where
    the width allows, in its sync table at 80 columns (the rates table has no room left there); its
    header whole, nothing cut, within the width; an instance without a token rate has no such column."""
    term = Tmux([sys.executable, "-m", "livetok.cli", "monitor", mosquitto.url, "--refresh", "0.5"], width, 50)
    try:
        publish_retained(mosquitto.url, "rated1", rated_doc())
        publish_retained(mosquitto.url, "plain1", stats_doc(time.time_ns(), source="door"))
        assert wait_for(lambda: "5/29.97" in term.screen() and "door" in term.screen(), 30, 0.2), term.screen()
        screen = term.screen()
    finally:
        term.close()
    lines = screen.splitlines()
    assert "…" not in screen and max(len(line) for line in lines) <= width, screen
    if width == 80:
        assert re.search(r"cam0\s+running\s+5\.0\s+50\.0\s+7\.5/12\.0/15\.0", screen), screen
        assert re.search(r"cam0\s+5/29\.97\s+\+2\.0", screen), screen
    else:
        assert re.search(r"cam0\s+running\s+5\.0\s+5/29\.97\s+50\.0\s+7\.5/12\.0/15\.0", screen), screen
    assert re.search(r"door\s+running\s+30\.0\s+50\.0\s+7\.5/12\.0/15\.0", screen), screen  # no rate column
    assert "token/cam fps" in screen or (width == 80 and stacked_header_whole(lines, "token/cam\nfps")), screen
    assert sum(line.count("token/cam") for line in lines) == 1, screen  # on the rated instance's table only
