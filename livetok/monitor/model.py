"""What the monitor knows: the latest stats document and availability of each daemon instance, a
bounded history per series for the sparklines, and the verdict on each stream. Pure: the caller
passes the clock, so everything here is tested without a broker or a terminal.

A stream (one source of one instance) is shown in red, with the reason, when it is

* **stalled**: its instance sent no stats for ``stale_intervals`` stats intervals, or the source is
  not ``running`` (connecting, backoff, stopped), or it tokenized no video frame (``fps`` 0; not
  at a token rate of fewer than 2 frames an interval, where that is the rate) or no audio block in
  the last interval; or its daemon said ``stopped`` / went ``offline``;
* **late**: its capture-to-publish p99 is above ``late_video_ms`` / ``late_audio_ms`` (the worse of
  the fine and coarse scales; capture-to-emit when the daemon has no bus sink), or a named stream's
  (a plug-in tokenizer's, ``latency_ms`` key ``audio/units``) is, against its modality's limit;
* **out of sync**: the A/V skew of its group (audio minus video, from sync markers) is beyond
  ``skew_ms`` either way.

An instance whose latest message on its stats topic is **junk** (not JSON, or JSON that is not a
stats document: not an object with a ``sources`` object) is red too, saying so, with how many such
messages came; its last good numbers, if any, stay on the screen as history. An empty message (a
retained document cleared) is not junk.

The stats interval of an instance is read from the document (``stats_interval_s``) when it carries
one, else taken as the median spacing of its documents' ``time_unix_ns``, else the daemon's default
(5 s) until two documents have been seen.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

DEFAULT_INTERVAL_S = 5.0  # the daemon's mqtt.stats_interval_s default
SPARSE_FRAMES = 2.0  # token frames per stats interval below which 0 frames/s is no stall (sparse)
AVAILABILITY_PROBLEMS = {"stopped": "daemon stopped", "offline": "daemon offline (connection lost)"}


@dataclass(frozen=True)
class Thresholds:
    """When a stream is red. ``late_*_ms``: capture-to-publish p99 (ms); ``skew_ms``: |A/V skew| (ms);
    ``stale_intervals``: stats intervals without a document; ``history``: samples kept per series."""

    late_video_ms: float = 100.0
    late_audio_ms: float = 150.0
    skew_ms: float = 40.0
    stale_intervals: float = 3.0
    history: int = 120


@dataclass(frozen=True)
class Percentiles:
    p50: float | None
    p95: float | None
    p99: float | None
    measured_at: str  # "publish" (capture to the broker's connection) or "emit" (capture to the event loop)


@dataclass
class StreamView:
    """One source (or group) of one instance, as drawn: numbers from the latest document, histories, verdict."""

    instance: str
    source: str
    state: str | None
    fps: float | None
    audio_per_s: float | None
    video: Percentiles | None
    audio: Percentiles | None
    skew_ms: float | None
    skew_history: list[float]
    drift_ppm: float | None
    drift_history: list[float]
    dropped_capture: int
    dropped_sinks: int
    last_error: str
    problems: list[str] = field(default_factory=list)
    kind: str = "source"  # or "group": an aligned group not named after a source (its skew only)
    named: dict[str, Percentiles] = field(default_factory=dict)  # "audio/units" -> a named stream's latency
    token_fps: float | None = None  # the source's token rate (frames/s), where set
    nominal_fps: float | None = None  # the camera's own rate (frames/s) as its stream says, where known

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class InstanceView:
    """One daemon: its availability, bus state, age of its stats, and its streams."""

    name: str
    availability: str | None
    run_id: str | None
    uptime_s: float | None
    stats_age_s: float | None
    interval_s: float
    bus: dict[str, Any] | None
    streams: list[StreamView]
    problems: list[str] = field(default_factory=list)
    note: str = ""  # a state that is not a problem (yet): "waiting for stats"
    junk: int = 0  # messages on its stats topic that were not stats documents

    @property
    def ok(self) -> bool:
        return not self.problems and all(s.ok for s in self.streams)

    @property
    def rated(self) -> bool:
        """Some source of it has a token rate (``token_fps``): the board shows it beside the camera's."""
        return any(s.token_fps is not None for s in self.streams)

    @property
    def named_streams(self) -> list[str]:
        """Every named stream (``audio/units``) any of its sources reports, sorted: a column each."""
        return sorted({k for s in self.streams for k in s.named})


class _Instance:
    def __init__(self, history: int, first_mono_s: float) -> None:
        self.first_mono_s = first_mono_s  # when any message of it was first received
        self.doc: dict[str, Any] | None = None
        self.seen_mono_s: float | None = None  # when the latest document was made, on our monotonic clock
        self.availability: str | None = None
        self.times: deque[int] = deque(maxlen=16)  # time_unix_ns of recent documents
        self.skew: dict[str, deque[float]] = {}
        self.drift: dict[str, deque[float]] = {}
        self.history = history
        self.junk = 0  # messages on the stats topic that were not stats documents
        self.junk_latest = ""  # what the latest message was, when it was junk

    def interval_s(self) -> float:
        declared = _number(self.doc.get("stats_interval_s")) if self.doc else None
        if declared is not None and declared > 0:
            return declared
        steps = [(b - a) / 1e9 for a, b in zip(self.times, list(self.times)[1:], strict=False) if b > a]
        return statistics.median(steps) if steps else DEFAULT_INTERVAL_S

    def append(self, table: dict[str, deque[float]], key: str, value: float | None) -> None:
        if value is not None:
            table.setdefault(key, deque(maxlen=self.history)).append(value)


class Board:
    """Every instance seen on the bus. Feed it with :meth:`stats` and :meth:`available`; read
    :meth:`view` (what to draw, with verdicts) at any time."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self._instances: dict[str, _Instance] = {}

    def _get(self, name: str, now_mono_s: float) -> _Instance:
        if name not in self._instances:
            self._instances[name] = _Instance(self.thresholds.history, now_mono_s)
        return self._instances[name]

    def stats(self, instance: str, doc: Any, received_mono_s: float, received_unix_s: float,
              retained: bool = False, raw: str | None = None) -> None:
        """A stats message: ``doc`` its parsed JSON (None when it was not JSON), ``raw`` its text.
        Empty (``doc`` None, ``raw`` empty or not given): the retained document was cleared.
        ``retained``: the broker's stored copy, sent on subscribing, which may be old."""
        inst = self._get(instance, received_mono_s)
        if doc is None and not raw:
            inst.doc, inst.junk_latest = None, ""
            return
        if not (isinstance(doc, dict) and isinstance(doc.get("sources"), dict)):
            inst.junk += 1
            inst.junk_latest = _junk(doc, raw)
            return
        made_ns = doc.get("time_unix_ns")
        made_ns = made_ns if isinstance(made_ns, int) and not isinstance(made_ns, bool) else None
        if made_ns is not None and inst.times and made_ns <= inst.times[-1]:
            return  # the same document again (a retained copy after a reconnect) or an older one
        # A retained copy may be old: date it by the daemon's clock (hosts in NTP sync). A live one is
        # dated by its arrival, so a monitor whose clock is off does not see live daemons as silent.
        age = received_unix_s - made_ns / 1e9 if made_ns is not None and retained else 0.0
        inst.doc, inst.junk_latest = doc, ""
        inst.seen_mono_s = received_mono_s - max(0.0, age)
        if made_ns is not None:
            inst.times.append(made_ns)
        for name, src in _mapping(doc.get("sources")).items():
            inst.append(inst.drift, name, _number(_mapping(src).get("drift_ppm")))
        for name, grp in _mapping(doc.get("groups")).items():
            inst.append(inst.skew, name, _number(_mapping(grp).get("skew_ms")))

    def available(self, instance: str, text: str, received_mono_s: float) -> None:
        """``online`` / ``stopped`` / ``offline``; empty: the retained state was cleared."""
        self._get(instance, received_mono_s).availability = text or None

    def view(self, now_mono_s: float) -> list[InstanceView]:
        return [self._view(name, inst, now_mono_s) for name, inst in sorted(self._instances.items())]

    def _view(self, name: str, inst: _Instance, now: float) -> InstanceView:
        th = self.thresholds
        doc = inst.doc or {}
        interval = inst.interval_s()
        age = None if inst.seen_mono_s is None else max(0.0, now - inst.seen_mono_s)
        shared: list[str] = []
        if inst.availability in AVAILABILITY_PROBLEMS:
            shared.append(AVAILABILITY_PROBLEMS[inst.availability])
        if inst.junk_latest:
            shared.append(f"junk on the stats topic: {inst.junk_latest}"
                          + (f" ({inst.junk} junk messages so far)" if inst.junk > 1 else ""))
        # Silence is measured from the latest document, or from when the instance was first heard of.
        silent = now - (inst.seen_mono_s if inst.seen_mono_s is not None else inst.first_mono_s)
        note = ""
        if silent > th.stale_intervals * interval:
            shared.append(f"stalled: no stats for {silent:.0f} s")
        elif inst.doc is None and not inst.junk_latest:
            note = "waiting for stats" if inst.seen_mono_s is None else "stats cleared"
        bus = doc.get("bus") if isinstance(doc.get("bus"), dict) else None
        view = InstanceView(name, inst.availability, _text(doc.get("run_id")), _number(doc.get("uptime_s")), age,
                            interval, bus, [], list(shared), note, inst.junk)
        if bus is not None and bus.get("connected") is False and not shared:
            view.problems.append("bus disconnected")
        groups = _mapping(doc.get("groups"))
        sources = _mapping(doc.get("sources"))
        for source, raw in sorted(sources.items()):
            view.streams.append(self._stream(name, inst, source, _mapping(raw), _mapping(groups.get(source)), shared))
        # A group is shown on its camera's row when named after it (the default groups are); one
        # named otherwise (groups: in the config) gets a row of its own for its skew.
        for group, raw in sorted(groups.items()):
            if group not in sources:
                view.streams.append(self._stream(name, inst, group, {}, _mapping(raw), shared, kind="group"))
        return view

    def _stream(self, instance: str, inst: _Instance, source: str, src: dict[str, Any], group: dict[str, Any],
                shared: list[str], kind: str = "source") -> StreamView:
        th = self.thresholds
        lat = _mapping(src.get("latency_ms"))
        dropped = _mapping(src.get("dropped"))
        s = StreamView(
            instance=instance, source=source, state=_text(src.get("state")), fps=_number(src.get("fps")),
            audio_per_s=_number(src.get("audio_blocks_per_s")), video=_worst(lat, "video"),
            audio=_worst(lat, "audio"), skew_ms=_number(group.get("skew_ms")),
            skew_history=list(inst.skew.get(source, ())), drift_ppm=_number(src.get("drift_ppm")),
            drift_history=list(inst.drift.get(source, ())),
            dropped_capture=_total(dropped.get("capture")), dropped_sinks=_total(dropped.get("sinks")),
            last_error=_text(src.get("last_error")) or "", problems=list(shared), kind=kind, named=_named(lat),
            token_fps=_number(src.get("token_fps")), nominal_fps=_number(src.get("nominal_fps")))
        if shared:  # the daemon is gone or silent: its last numbers are history, not verdicts
            return s
        if s.state == "waiting":  # a listening source whose sender has not started (or paused): no fault here
            s.problems.append("waiting: listening, no sender")
        elif s.state is not None and s.state != "running":
            s.problems.append(f"stalled: source {s.state}" + (f" ({s.last_error})" if s.last_error else ""))
        if s.fps == 0 and s.state != "waiting" and not sparse(s.token_fps, inst.interval_s()):
            s.problems.append("stalled: 0 video frames/s")
        if s.audio_per_s == 0 and s.state != "waiting":
            s.problems.append("stalled: 0 audio blocks/s")
        limits = {"video": th.late_video_ms, "audio": th.late_audio_ms}
        for what, pct in (("video", s.video), ("audio", s.audio), *s.named.items()):
            limit = limits[what.partition("/")[0]]
            if pct is not None and pct.p99 is not None and pct.p99 > limit:
                s.problems.append(f"late: {what} p99 {pct.p99:.0f} ms > {limit:g}")
        if s.skew_ms is not None and abs(s.skew_ms) > th.skew_ms:
            s.problems.append(f"out of sync: A/V skew {s.skew_ms:+.0f} ms, beyond ±{th.skew_ms:g}")
        return s


def sparse(token_fps: float | None, interval_s: float) -> bool:
    """A token rate so low that a stats interval may hold no token frame (the daemon's rate window is
    0.9 to 1 interval long): 0 frames/s is then its rate, not a stall (a lost camera shows in its state)."""
    return token_fps is not None and token_fps * interval_s < SPARSE_FRAMES


def _measured(entry: Any) -> tuple[dict[str, Any], str] | None:
    """A latency entry's capture-to-publish percentiles, else its capture-to-emit ones, with which."""
    entry = _mapping(entry)
    for kind in ("publish", "emit"):
        if isinstance(entry.get(kind), dict):
            return entry[kind], kind
    return None


def _named(lat: dict[str, Any]) -> dict[str, Percentiles]:
    """Each named stream's latency (keys ``audio/NAME``, ``video/NAME`` but fine and coarse)."""
    out: dict[str, Percentiles] = {}
    for key, entry in lat.items():
        modality, _, name = key.partition("/") if isinstance(key, str) else ("", "", "")
        if modality in ("audio", "video") and name and name not in ("fine", "coarse"):
            found = _measured(entry)
            if found is not None:
                d, kind = found
                out[key] = Percentiles(_number(d.get("p50")), _number(d.get("p95")), _number(d.get("p99")), kind)
    return out


def _worst(lat: dict[str, Any], modality: str) -> Percentiles | None:
    """The worse of the fine and coarse scales, percentile by percentile: capture-to-publish, or
    capture-to-emit for a scale the bus has not measured (no bus sink, or nothing published yet)."""
    found = [m for m in (_measured(lat.get(f"{modality}/{scale}")) for scale in ("fine", "coarse")) if m is not None]
    if not found:
        return None

    def worst(p: str) -> float | None:
        values = [v for v in (_number(d.get(p)) for d, _ in found) if v is not None]
        return max(values) if values else None

    kind = "publish" if all(k == "publish" for _, k in found) else "emit"
    return Percentiles(worst("p50"), worst("p95"), worst("p99"), kind)


def _junk(doc: Any, raw: str | None) -> str:
    """What a message that is not a stats document was, in a few words, with its start."""
    if doc is None and raw is not None and raw.strip() != "null":
        what = "not JSON"
    elif isinstance(doc, dict):
        what = "a JSON object without a 'sources' object"
    else:
        what = f"JSON {'null' if doc is None else type(doc).__name__}, not an object"
    text = raw if raw is not None else repr(doc)
    shown = "".join(c if c.isprintable() else "?" for c in text[:32]) + ("..." if len(text) > 32 else "")
    return f"{what}, {len(text.encode())} bytes: {shown!r}"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _total(value: Any) -> int:
    if isinstance(value, dict):
        return sum(int(v) for v in value.values() if isinstance(v, int | float) and not isinstance(v, bool)
                   and math.isfinite(v))
    return 0
