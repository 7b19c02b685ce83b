"""Drawing the board: one rich table per daemon instance, one row per source; red rows say why.

The same renderables serve the live screen (colours) and ``--once`` (plain text, no escape codes);
:func:`snapshot_json` is ``--once --json``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from livetok.monitor.model import InstanceView, Percentiles, StreamView, Thresholds

BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 16  # characters; the kept history (default 120 samples) is averaged into this many
AVAILABILITY_STYLE = {"online": "green", "stopped": "bold red", "offline": "bold red"}


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """The last values as bars, low to high between their own minimum and maximum (a flat series
    is a flat line); more values than ``width`` are averaged in equal runs, oldest on the left."""
    if not values:
        return ""
    if len(values) > width:
        n = len(values)
        values = [sum(values[i * n // width:(i + 1) * n // width]) / max(1, (i + 1) * n // width - i * n // width)
                  for i in range(width)]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        return BARS[len(BARS) // 2 - 1] * len(values)
    return "".join(BARS[min(len(BARS) - 1, int((v - lo) / (hi - lo) * len(BARS)))] for v in values)


def _num(value: float | None, digits: int = 1, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _pct(p: Percentiles | None) -> str:
    if p is None:
        return "-"
    text = "/".join(_num(v) for v in (p.p50, p.p95, p.p99))
    return text + (" e" if p.measured_at == "emit" else "")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return f"{seconds:.1f} s ago" if seconds < 60 else f"{seconds / 60:.0f} min ago"


def _header(v: InstanceView) -> Text:
    t = Text()
    t.append(v.name, style="bold")
    t.append("  ")
    t.append(v.availability or "availability unknown", style=AVAILABILITY_STYLE.get(v.availability or "", "yellow"))
    if v.run_id:
        t.append(f"  run {v.run_id}")
    if v.uptime_s is not None:
        t.append(f"  up {v.uptime_s:.0f} s")
    t.append(f"  stats {_ago(v.stats_age_s)} (every {v.interval_s:.1f} s)")
    b = v.bus
    if b is not None:
        connected = b.get("connected") is True
        t.append("  bus ")
        t.append("connected" if connected else "disconnected", style="green" if connected else "bold red")
        t.append("".join(f", {k} {b.get(k, '-')}" for k in ("reconnects", "buffered", "dropped", "refused")))
    if v.note:
        t.append(f"  {v.note}", style="yellow")
    for p in v.problems:
        t.append(f"  {p}", style="bold red")
    return t


def _row(s: StreamView) -> list[RenderableType]:
    red = "bold red" if s.problems else ""
    status = Text("\n".join(s.problems), style="bold red") if s.problems else Text("ok", style="green")
    drops = f"{s.dropped_capture}/{s.dropped_sinks}"
    name = s.source if s.kind == "source" else f"{s.source} (group)"
    state = Text(s.state or "-", style="" if s.state == "running" or s.kind == "group" else "yellow")
    return [Text(name, style=red), state,
            _num(s.fps), _num(s.audio_per_s), _pct(s.video), _pct(s.audio), _num(s.skew_ms, signed=True),
            sparkline(s.skew_history), _num(s.drift_ppm), sparkline(s.drift_history),
            Text(drops, style="yellow" if s.dropped_capture or s.dropped_sinks else ""), status]


def instance_table(v: InstanceView) -> Table:
    table = Table(title=_header(v), title_justify="left", box=box.SIMPLE_HEAD, expand=False, pad_edge=False)
    for name, justify in (("stream", "left"), ("state", "left"), ("fps", "right"), ("audio/s", "right"),
                          ("video ms p50/p95/p99", "right"), ("audio ms p50/p95/p99", "right"),
                          ("A/V skew ms", "right"), ("skew trend", "left"), ("drift ppm", "right"),
                          ("drift trend", "left"), ("drops cap/sink", "right"), ("status", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "status",  # type: ignore[arg-type]
                         overflow="fold" if name == "status" else "ellipsis")
    for s in v.streams:
        table.add_row(*_row(s), style="red" if s.problems else None)
    if not v.streams:
        table.add_row(Text("(no sources)" if v.stats_age_s is not None else "(no stats)", style="dim"),
                      *[""] * 11)
    return table


def legend(th: Thresholds) -> Text:
    return Text(
        "latency: capture to publish, ms, the worse of fine and coarse (e: capture to emit, no bus sink); "
        "skew: audio minus video from sync markers; drops: capture queue / sinks (since start). Red: late "
        f"(p99 > {th.late_video_ms:g} ms video, {th.late_audio_ms:g} ms audio), out of sync "
        f"(|skew| > {th.skew_ms:g} ms), stalled (no stats for {th.stale_intervals:g} intervals, 0 fps, "
        "source not running), daemon stopped or offline.", style="dim")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def board(views: list[InstanceView], th: Thresholds, status: str) -> RenderableType:
    """Everything on the screen: a status line, a table per instance, the legend."""
    streams = sum(len(v.streams) for v in views)
    red = sum(1 for v in views for s in v.streams if s.problems) + sum(1 for v in views if not v.streams
                                                                         and v.problems)
    top = Text(f"livetok monitor  {status}  {time.strftime('%H:%M:%S')}  {_count(len(views), 'instance')}, "
               f"{_count(streams, 'stream')}, ")
    top.append(f"{red} red", style="bold red" if red else "green")
    parts: list[RenderableType] = [top]
    if not views:
        parts.append(Text("no livetok daemon has published here yet (waiting)", style="yellow"))
    parts += [instance_table(v) for v in views]
    parts.append(legend(th))
    return Group(*parts)


def snapshot_json(views: list[InstanceView], th: Thresholds) -> dict[str, Any]:
    """``--once --json``: every instance and stream with its numbers and problems; ``ok`` when none is red."""
    return {"ok": all(v.ok for v in views), "thresholds": dataclasses.asdict(th),
            "instances": [{**dataclasses.asdict(v), "ok": v.ok,
                           "streams": [{**dataclasses.asdict(s), "ok": s.ok} for s in v.streams]} for v in views]}
