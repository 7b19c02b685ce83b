"""What the daemon tells systemd while it runs: READY, the STATUS line and the watchdog pings.

* ``READY=1`` means capturing (:meth:`Supervisor.until_capturing`): every source has delivered
  (each modality a group uses), or its first attempt failed and said so in a line (a failed open,
  a stall: the source then retries with backoff), or its first attempt's time ran out
  (:func:`first_attempt_s`; said in a line); and the bus's first connection attempt ended
  (connected, or failed and said so). One NOTICE line says how long each took after capture started.
* ``STATUS=`` one line, every :data:`STATUS_S` and at each state change: sources up of total,
  messages per second, the worst capture-to-publish (or emit) p99 and where, the A/V skew, the bus.
  A rendering of the run's snapshot (:class:`~livetok.pipeline.snapshot.RunSnapshot`), like the
  stats document and the Prometheus exposition: the supervisor never reads the pipeline itself.
* ``WATCHDOG=1`` every half of ``WATCHDOG_USEC``, and only while both the event loop and the
  tokenizer threads (the engine's and the video encoder's) make progress: the pings come from a
  task on the loop (a blocked loop sends none), and a job that has run longer than a ping interval
  stops them, so a hung tokenizer (a stuck GPU call, a deadlock) makes systemd restart the service.
  One line says so when it happens.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from livetok import config as dc
from livetok.daemon.notify import Notifier
from livetok.pipeline.snapshot import RunSnapshot, SinkSnap, SourceSnap
from livetok.runtime.log import NOTICE
from livetok.runtime.log import get as get_logger
from livetok.runtime.stopping import StopControl
from livetok.streams.types import SourceState

STATUS_S = 5.0
READY_POLL_S = 0.02  # how often the start-up looks at the sources' counters (written by their threads)
FIRST_ATTEMPT_S = 5.0  # a device, microphone, file or generator: opened and delivering within this (s)
READY_MARGIN_S = 1.0  # after a source's own timeouts: time for its thread to count and say the fault
_log = get_logger("daemon")


def first_attempt_s(source: object) -> float:
    """How long a source's first attempt may take before it has failed by its own rules: a stream's
    open timeout plus one read timeout (then it counts a stall and says so), a camera's read timeout
    plus :data:`FIRST_ATTEMPT_S` to open; anything else :data:`FIRST_ATTEMPT_S`."""
    if isinstance(source, dc.StreamSource):
        return source.open_timeout_s + source.read_timeout_s
    if isinstance(source, dc.V4l2Source):
        return FIRST_ATTEMPT_S + source.read_timeout_s
    return FIRST_ATTEMPT_S


@dataclass
class Arrival:
    """One source's start: when each modality first arrived, or how its first attempt ended (s after capture start)."""

    name: str
    video: float | None = None
    audio: float | None = None
    failed: str = ""  # its first attempt's fault (the source said it in a line), or "" while none
    failed_at: float | None = None
    waiting_at: float | None = None  # a listening source open and waiting for its sender (nothing failed)

    def settled(self, src: SourceSnap, at: float) -> bool:
        if src.video and self.video is None and src.frames:
            self.video = at
        if src.audio and self.audio is None and src.blocks:
            self.audio = at
        delivered = (not src.video or self.video is not None) and (not src.audio or self.audio is not None)
        if not delivered and self.waiting_at is None and src.state is SourceState.WAITING:
            self.waiting_at = at  # started as promised: its socket is open; a sender may come at any time
        if not delivered and not self.failed and (src.errors or src.stalls or src.state is SourceState.BACKOFF
                                                  or src.finished):
            self.failed = src.last_error or ("ended" if src.finished else "failed")
            self.failed_at = at
        return delivered or bool(self.failed) or self.waiting_at is not None

    def describe(self) -> str:
        got = [f"{m} {t:.2f} s" for m, t in (("video", self.video), ("audio", self.audio)) if t is not None]
        if self.failed:
            got.append(f"first attempt failed at {self.failed_at:.2f} s ({self.failed})")
        elif self.waiting_at is not None and not got:
            got.append(f"listening since {self.waiting_at:.2f} s, waiting for its sender")
        return f"{self.name}: " + (", ".join(got) or "nothing yet")


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: /proc/self/stat against CLOCK_BOOTTIME)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError):
        return None


class Supervisor:
    """Status and watchdog for one daemon (a no-op without ``$NOTIFY_SOCKET``). ``snapshot``: takes
    the run's snapshot now (polled during the start-up without its metrics); ``stuck``: how long a
    tokenizer thread's job has been running (s)."""

    def __init__(self, notifier: Notifier, snapshot: Callable[..., RunSnapshot], stuck: Callable[[], float]) -> None:
        self.notifier = notifier
        self.snapshot = snapshot
        self.stuck = stuck
        self._last_count = 0
        self._last_ns = 0
        self.pings = 0
        self.withheld = 0  # pings not sent because the worker was stuck

    async def until_capturing(self, cfg: dc.LivetokConfig, stop: StopControl, limit_s: float | None = None) -> str:
        """Wait (on the loop; the run's tasks go on) until capture has started as READY=1 promises,
        at most the longest first attempt of a source or the bus plus :data:`READY_MARGIN_S`, a stop,
        or ``limit_s`` (a run's --duration); say it in one line, and return it."""
        t0 = time.monotonic()
        snap = self.snapshot(series=False)
        by_name = {s.name: s for s in cfg.sources}
        limits = {src.name: first_attempt_s(by_name.get(src.name)) + READY_MARGIN_S for src in snap.sources}
        bus_limit = cfg.bus_settings().connect_timeout_s + READY_MARGIN_S
        longest = max([*limits.values(), bus_limit if snap.bus is not None else 0.0])
        self.notifier.extend_timeout(longest + 10.0)  # systemd waits for this start-up to end
        arrivals = {src.name: Arrival(src.name) for src in snap.sources}
        bus_at: float | None = None
        while not stop.requested:
            at = time.monotonic() - t0
            if limit_s is not None and at >= limit_s:
                break
            snap = self.snapshot(series=False)
            waiting = [src for src in snap.sources if not arrivals[src.name].settled(src, at) and at < limits[src.name]]
            bus = snap.bus
            if bus is not None and bus_at is None and (bus.gauges.get("connected")
                                                       or bus.gauges.get("connect_failures")):
                bus_at = at
            if not waiting and (bus is None or bus_at is not None or at >= bus_limit):
                break
            await asyncio.sleep(READY_POLL_S)
        return self._say_ready(arrivals, limits, self.snapshot(series=False).bus, bus_at, time.monotonic() - t0)

    def _say_ready(self, arrivals: dict[str, Arrival], limits: dict[str, float], bus: SinkSnap | None,
                   bus_at: float | None, took: float) -> str:
        for a in arrivals.values():
            if (a.video is None and a.audio is None and not a.failed and a.waiting_at is None
                    and took >= limits[a.name]):
                _log.warning("%s: nothing captured within its first attempt (%.1f s); ready without it, it keeps "
                             "trying", a.name, limits[a.name] - READY_MARGIN_S)
        parts = [a.describe() for a in arrivals.values()]
        if bus is not None:
            state = "connected" if bus.gauges.get("connected") else "not connected"
            parts.append(f"bus {state}" + (f" at {bus_at:.2f} s" if bus_at is not None else ""))
        age = process_age_s()
        line = (f"ready: capturing {took:.2f} s after the sources started"
                + (f" ({age:.2f} s after the process did)" if age is not None else "")
                + "; first data " + "; ".join(parts))
        _log.log(NOTICE, "%s", line)
        return line

    def status_line(self, snap: RunSnapshot) -> str:
        up = sum(1 for s in snap.sources if s.state is SourceState.RUNNING)
        waiting = sum(1 for s in snap.sources if s.state is SourceState.WAITING)
        now = snap.taken_ns
        rate = (snap.emitted - self._last_count) / ((now - self._last_ns) / 1e9) if 0 < self._last_ns < now else 0.0
        self._last_count, self._last_ns = snap.emitted, now
        parts = [f"sources {up}/{len(snap.sources)} up" + (f", {waiting} waiting for a sender" if waiting else ""),
                 f"{rate:.0f} msg/s"]
        worst = self.worst_p99(snap)
        if worst is not None:
            parts.append(f"worst p99 {worst[0]:.0f} ms ({worst[1]})")
        skews = [s for s in (snap.skew_ms(g) for g in snap.groups) if s is not None]
        if skews:
            parts.append("skew " + ", ".join(f"{s:+.0f} ms" for s in skews[:3]))
        bus = snap.bus
        if bus is not None:
            parts.append("bus " + ("connected" if bus.gauges.get("connected") else "DISCONNECTED"))
        return "; ".join(parts)

    @staticmethod
    def worst_p99(snap: RunSnapshot) -> tuple[float, str] | None:
        """The largest capture-to-publish p99 (or capture-to-emit, without a bus) and its stream."""
        for kind, size in (("publish", 6), ("emit", 5)):
            best: tuple[float, str] | None = None
            for key, s in snap.series.items():
                if isinstance(key, str) or len(key) != size or key[:2] != ("latency", kind) or not s.count:
                    continue
                if math.isnan(s.p99):
                    continue
                stream = "/".join(key[-3:])
                if best is None or s.p99 > best[0]:
                    best = (s.p99, stream)
            if best is not None:
                return best
        return None

    async def status_loop(self, latest: Callable[[], RunSnapshot | None]) -> None:
        """STATUS= every :data:`STATUS_S`, from the latest snapshot."""
        while True:
            snap = latest()
            if snap is not None:
                self.notifier.status(self.status_line(snap))
            await asyncio.sleep(STATUS_S)

    async def watchdog_loop(self) -> None:
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            return
        stuck_said = False
        while True:
            stuck = self.stuck()
            if stuck > interval:
                self.withheld += 1
                if not stuck_said:
                    stuck_said = True
                    _log.error("a tokenizer thread has been stuck for %.1f s: watchdog pings withheld "
                               "(systemd restarts the service after WatchdogSec)", stuck)
            else:
                if stuck_said:
                    stuck_said = False
                    _log.warning("the tokenizer worker is making progress again; watchdog pings resumed")
                self.notifier.watchdog()
                self.pings += 1
            await asyncio.sleep(interval / 2)  # twice as often as asked: a busy loop's lag cannot make one late
