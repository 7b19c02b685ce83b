"""``livetok monitor`` with named streams (plug-in tokenizers'): a latency column each, their own
late verdicts, the built-in columns unchanged (pure: the board and its rendering, no broker)."""

from __future__ import annotations

import io
import json

from rich.console import Console
from test_monitor import NOW_NS, stats_doc

from livetok.monitor.model import Board, Percentiles
from livetok.monitor.render import board as draw
from livetok.monitor.render import snapshot_json


def named_doc(units_p99: float = 60.0, clip_p99: float = 30.0) -> dict:
    doc = stats_doc()
    lat = doc["sources"]["cam0"]["latency_ms"]
    lat["audio/units"] = {"emit": None, "publish": {"p50": 20.0, "p95": 40.0, "p99": units_p99}}
    lat["video/clip"] = {"emit": {"p50": 10.0, "p95": 20.0, "p99": clip_p99}, "publish": None}
    return doc


def text(board: Board, width: int) -> str:
    console = Console(file=io.StringIO(), color_system=None, force_terminal=False, width=width, emoji=False)
    with console.capture() as captured:
        console.print(draw(board.view(1.5), board.thresholds, "mqtt://x", width))
    return captured.get()


def test_a_column_per_named_stream_and_the_builtin_ones_unchanged() -> None:
    board = Board()
    board.stats("host1", named_doc(), 1.0, NOW_NS / 1e9)
    (inst,) = board.view(1.5)
    (s,) = inst.streams
    assert inst.named_streams == ["audio/units", "video/clip"]
    assert s.named == {"audio/units": Percentiles(20.0, 40.0, 60.0, "publish"),
                       "video/clip": Percentiles(10.0, 20.0, 30.0, "emit")}
    assert s.audio == Percentiles(17.0, 27.2, 34.0, "publish")  # fine and coarse only, as before
    assert s.ok
    wide = text(board, 400)
    assert "audio/units ms p50/p95/p99" in wide and "video/clip ms p50/p95/p99" in wide
    assert "20.0/40.0/60.0" in wide and "10.0/20.0/30.0 e" in wide
    narrow = text(board, 80)
    assert "audio/units ms" in narrow and max(len(line) for line in narrow.splitlines()) <= 80


def test_a_late_named_stream_is_red_against_its_modalitys_limit() -> None:
    board = Board()
    board.stats("host1", named_doc(units_p99=180.0, clip_p99=120.0), 1.0, NOW_NS / 1e9)
    (s,) = board.view(1.5)[0].streams
    assert s.problems == ["late: audio/units p99 180 ms > 150", "late: video/clip p99 120 ms > 100"]
    doc = json.loads(json.dumps(snapshot_json(board.view(1.5), board.thresholds)))
    stream = doc["instances"][0]["streams"][0]
    assert stream["named"]["audio/units"]["p99"] == 180.0 and stream["ok"] is False


def test_sources_without_named_streams_show_a_dash() -> None:
    board = Board()
    doc = named_doc()
    doc["sources"]["mic1"] = stats_doc(source="mic1")["sources"]["mic1"]
    board.stats("host1", doc, 1.0, NOW_NS / 1e9)
    rows = [line for line in text(board, 400).splitlines() if line.lstrip().startswith("mic1")]
    assert len(rows) == 1 and rows[0].split().count("-") >= 2
