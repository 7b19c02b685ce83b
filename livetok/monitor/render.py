"""Drawing the board: per daemon instance a header and one row per source; red rows say why.

A named stream (a plug-in tokenizer's: ``audio/units``) gets a latency column of its own, after
the built-in video and audio columns, in the instances that report one.

As much as the terminal's width holds (:data:`LAYOUTS`, widest first): on a wide one a single
table with the reasons in its status column; narrower, the reasons each on a line of their own
under the table; then the columns in two tables (rates and latency; sync and drops), then with
headers on two lines. Every header and value is drawn whole, never cut to an ellipsis: 80 columns
hold the narrowest layout.

The same renderables serve the live screen (colours) and ``--once`` (plain text, no escape codes);
:func:`snapshot_json` is ``--once --json``.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
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


def _ms(value: float | None) -> str:
    """A latency: one decimal below 100 ms, whole milliseconds above (the column stays narrow)."""
    return _num(value, 1 if value is None or abs(value) < 100 else 0)


def _pct(p: Percentiles | None) -> str:
    if p is None:
        return "-"
    text = "/".join(_ms(v) for v in (p.p50, p.p95, p.p99))
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
    return t


# -- layouts: as much as the terminal's width holds, every header and value whole ---------------------

@dataclass(frozen=True)
class Column:
    key: str
    header: str  # on one line
    stacked: str  # on two lines, for narrow terminals
    justify: str = "right"


COLUMNS = {c.key: c for c in (
    Column("stream", "stream", "stream", "left"),
    Column("state", "state", "state", "left"),
    Column("fps", "fps", "fps"),
    Column("rate", "token/cam fps", "token/cam\nfps"),
    Column("audio", "audio/s", "audio/s"),
    Column("video_ms", "video ms p50/p95/p99", "video ms\np50/p95/p99"),
    Column("audio_ms", "audio ms p50/p95/p99", "audio ms\np50/p95/p99"),
    Column("skew", "A/V skew ms", "A/V skew\nms"),
    Column("skew_trend", "skew trend", "skew\ntrend", "left"),
    Column("drift", "drift ppm", "drift\nppm"),
    Column("drift_trend", "drift trend", "drift\ntrend", "left"),
    Column("drops", "drops cap/sink", "drops\ncap/sink"),
    Column("status", "status", "status", "left"),
)}
NAMED = "named"  # in a layout: a column per named stream of the instance drawn, where it stands
EVERY = (*tuple(COLUMNS)[:7], NAMED, *tuple(COLUMNS)[7:])
RATES = ("stream", "state", "fps", "rate", "audio", "video_ms", "audio_ms", NAMED, "status")
SYNC = ("stream", "skew", "skew_trend", "drift", "drift_trend", "drops")
RATES_ONLY = tuple(k for k in RATES if k != NAMED)
NAMED_ONLY = ("stream", NAMED)  # the named streams' latencies in a table of their own (narrow terminals)
# The narrowest: the token rate (where a source has one) moves to the sync table, which has room for it.
RATES_NARROW = tuple(k for k in RATES_ONLY if k != "rate")
SYNC_RATED = ("stream", "rate", *SYNC[1:])


@dataclass(frozen=True)
class Layout:
    """``tables``: the columns of each table drawn per instance; ``stacked``: two-line headers;
    ``inline``: the red reasons in the status column (else ``red`` there, and each reason on a
    line of its own under the table); ``spark``: sparkline width (characters)."""

    tables: tuple[tuple[str, ...], ...]
    stacked: bool = False
    inline: bool = False
    spark: int = SPARK_WIDTH


LAYOUTS = (  # widest first: the first whose tables fit the width is drawn
    Layout((EVERY,), inline=True),
    Layout((EVERY,)),
    Layout((RATES, SYNC)),
    Layout((RATES, SYNC), stacked=True),
    Layout((RATES, SYNC), stacked=True, spark=SPARK_WIDTH // 2),
    Layout((RATES_ONLY, NAMED_ONLY, SYNC), stacked=True, spark=SPARK_WIDTH // 2),
    Layout((RATES_NARROW, NAMED_ONLY, SYNC_RATED), stacked=True, spark=SPARK_WIDTH // 2),
)


def _named_column(key: str) -> Column:
    return Column(f"{NAMED}:{key}", f"{key} ms p50/p95/p99", f"{key} ms\np50/p95/p99")


def _columns(v: InstanceView, keys: tuple[str, ...]) -> list[Column]:
    """The columns of a table of ``v``: :data:`NAMED` stands for one per named stream it reports; the
    token rate's is there only when some source of ``v`` has one."""
    out: list[Column] = []
    for key in keys:
        if key == "rate" and not v.rated:
            continue
        out += [_named_column(k) for k in v.named_streams] if key == NAMED else [COLUMNS[key]]
    return out


def _rate(s: StreamView) -> str:
    """``5/30``: the token rate beside the camera's own (``-`` where not known); ``-`` without a token rate."""
    if s.token_fps is None:
        return "-"
    return f"{s.token_fps:g}/" + (f"{s.nominal_fps:g}" if s.nominal_fps is not None else "-")


def _cells(s: StreamView, layout: Layout) -> dict[str, RenderableType]:
    if s.problems:
        status = Text("\n".join(s.problems) if layout.inline else "red", style="bold red")
    else:
        status = Text("ok", style="green")
    drops = f"{s.dropped_capture}/{s.dropped_sinks}"
    name = s.source if s.kind == "source" else f"{s.source} (group)"
    state = Text(s.state or "-", style="" if s.state == "running" or s.kind == "group" else "yellow")
    return {"stream": Text(name, style="bold red" if s.problems else ""), "state": state, "fps": _num(s.fps),
            "rate": _rate(s),
            "audio": _num(s.audio_per_s), "video_ms": _pct(s.video), "audio_ms": _pct(s.audio),
            "skew": _num(s.skew_ms, signed=True), "skew_trend": sparkline(s.skew_history, layout.spark),
            "drift": _num(s.drift_ppm), "drift_trend": sparkline(s.drift_history, layout.spark),
            "drops": Text(drops, style="yellow" if s.dropped_capture or s.dropped_sinks else ""), "status": status,
            **{f"{NAMED}:{k}": _pct(p) for k, p in s.named.items()}}


def _table(v: InstanceView, keys: tuple[str, ...], layout: Layout) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False, show_edge=False)
    columns = _columns(v, keys)
    for c in columns:
        # Only a stream's name (any length) and the inline reasons may take more than one line.
        folds = c.key == "stream" or (c.key == "status" and layout.inline)
        table.add_column(c.stacked if layout.stacked else c.header, justify=c.justify,  # type: ignore[arg-type]
                         no_wrap=not folds, overflow="fold")
    for s in v.streams:
        cells = _cells(s, layout)
        table.add_row(*(cells.get(c.key, "-") for c in columns), style="red" if s.problems else None)
    return table


def _reasons(v: InstanceView) -> list[Text]:
    """Each stream's reasons (those not its instance's own), one line each, for under its table."""
    lines = []
    for s in v.streams:
        name = s.source if s.kind == "source" else f"{s.source} (group)"
        lines += [Text(f"{name}: {p}", style="bold red") for p in s.problems if p not in v.problems]
    return lines


def _fits(views: list[InstanceView], layout: Layout, width: int) -> bool:
    options = _MEASURE.options.update_width(1 << 20)
    return all(Measurement.get(_MEASURE, options, _table(v, keys, layout)).maximum <= width
               for v in views if v.streams for keys in _tables(v, layout))


def _tables(v: InstanceView, layout: Layout) -> list[tuple[str, ...]]:
    """The layout's tables that have something to show for ``v`` (a table of named streams only
    when it has some)."""
    return [keys for keys in layout.tables if keys != NAMED_ONLY or v.named_streams]


_MEASURE = Console(file=io.StringIO(), width=1 << 20, color_system=None)


def choose_layout(views: list[InstanceView], width: int) -> Layout:
    """The widest layout whose tables fit ``width`` columns (the narrowest when none does)."""
    return next((lay for lay in LAYOUTS if _fits(views, lay, width)), LAYOUTS[-1])


def instance_block(v: InstanceView, layout: Layout) -> RenderableType:
    """One daemon: its header line, its problems one a line, its table(s), its streams' reasons."""
    parts: list[RenderableType] = [_header(v), *(Text(p, style="bold red") for p in v.problems)]
    if not v.streams:
        parts.append(Text("(no sources)" if v.stats_age_s is not None else "(no stats)", style="dim"))
    else:
        parts += [_table(v, keys, layout) for keys in _tables(v, layout)]
    if not layout.inline:
        parts += _reasons(v)
    return Group(*parts)


def legend(th: Thresholds) -> Text:
    return Text(
        "latency: capture to publish, ms, the worse of fine and coarse, a named stream's on its own "
        "(e: capture to emit, no bus sink); "
        "skew: audio minus video from sync markers; drops: capture queue / sinks (since start). Red: late "
        f"(p99 > {th.late_video_ms:g} ms video, {th.late_audio_ms:g} ms audio), out of sync "
        f"(|skew| > {th.skew_ms:g} ms), stalled (no stats for {th.stale_intervals:g} intervals, 0 fps, "
        "source not running), daemon stopped or offline.", style="dim")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def board(views: list[InstanceView], th: Thresholds, status: str, width: int = 1 << 20) -> RenderableType:
    """Everything on the screen: a status line, a block per instance, the legend; laid out for a
    terminal ``width`` columns wide (:data:`LAYOUTS`)."""
    streams = sum(len(v.streams) for v in views)
    red = sum(1 for v in views for s in v.streams if s.problems) + sum(1 for v in views if not v.streams
                                                                         and v.problems)
    top = Text(f"livetok monitor  {status}  {time.strftime('%H:%M:%S')}  {_count(len(views), 'instance')}, "
               f"{_count(streams, 'stream')}, ")
    top.append(f"{red} red", style="bold red" if red else "green")
    parts: list[RenderableType] = [top]
    if not views:
        parts.append(Text("no livetok daemon has published here yet (waiting)", style="yellow"))
    layout = choose_layout(views, width)
    for v in views:
        parts += [Text(""), instance_block(v, layout)]
    parts.append(legend(th))
    return Group(*parts)


def snapshot_json(views: list[InstanceView], th: Thresholds) -> dict[str, Any]:
    """``--once --json``: every instance and stream with its numbers and problems; ``ok`` when none is red."""
    return {"ok": all(v.ok for v in views), "thresholds": dataclasses.asdict(th),
            "instances": [{**dataclasses.asdict(v), "ok": v.ok,
                           "streams": [{**dataclasses.asdict(s), "ok": s.ok} for s in v.streams]} for v in views]}
