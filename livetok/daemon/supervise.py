"""What the daemon tells systemd while it runs: the STATUS line and the watchdog pings.

* ``STATUS=`` one line, every :data:`STATUS_S` and at each state change: sources up of total,
  messages per second, the worst capture-to-publish (or emit) p99 and where, the A/V skew, the bus.
* ``WATCHDOG=1`` every half of ``WATCHDOG_USEC``, and only while both the event loop and the
  tokenizer threads (the engine's and the video encoder's) make progress: the pings come from a
  task on the loop (a blocked loop sends none), and a job that has run longer than a ping interval
  stops them, so a hung tokenizer (a stuck GPU call, a deadlock) makes systemd restart the service.
  One line says so when it happens.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING, Any

from livetok.daemon.log import get as get_logger
from livetok.daemon.notify import Notifier
from livetok.streams.types import SourceState

if TYPE_CHECKING:
    from livetok.daemon.runner import Daemon

STATUS_S = 5.0
_log = get_logger("daemon")


class Supervisor:
    """Status and watchdog for one daemon (a no-op without ``$NOTIFY_SOCKET``)."""

    def __init__(self, daemon: Daemon, notifier: Notifier) -> None:
        self.daemon = daemon
        self.notifier = notifier
        self._last_count = 0
        self._last_ns = 0
        self.pings = 0
        self.withheld = 0  # pings not sent because the worker was stuck

    def status_line(self) -> str:
        d = self.daemon
        up = sum(1 for s in d.sources if s.stats.state is SourceState.RUNNING)
        now = time.monotonic_ns()
        count = sum(d.books.emitted.values())
        rate = (count - self._last_count) / ((now - self._last_ns) / 1e9) if self._last_ns else 0.0
        self._last_count, self._last_ns = count, now
        parts = [f"sources {up}/{len(d.sources)} up", f"{rate:.0f} msg/s"]
        worst = self.worst_p99(d.metrics.snapshot())
        if worst is not None:
            parts.append(f"worst p99 {worst[0]:.0f} ms ({worst[1]})")
        skews = [g.get("skew_ms") for g in d.stats_groups().values() if g.get("skew_ms") is not None]
        if skews:
            parts.append("skew " + ", ".join(f"{s:+.0f} ms" for s in skews[:3]))
        bus = next((s for s in d.sinks if s.latency_kind == "publish"), None)
        if bus is not None:
            parts.append("bus " + ("connected" if bus.gauges().get("connected") else "DISCONNECTED"))
        return "; ".join(parts)

    @staticmethod
    def worst_p99(snapshot: dict[str, Any]) -> tuple[float, str] | None:
        """The largest capture-to-publish p99 (or capture-to-emit, without a bus) and its stream."""
        series: dict[str, Any] = snapshot.get("series_ms", {})
        best: tuple[float, str] | None = None
        for prefix in ("latency.publish.", "latency.emit."):
            for key, s in series.items():
                if not key.startswith(prefix) or key.count(".") < 4:
                    continue
                p99 = s.get("p99")
                if p99 is None or (isinstance(p99, float) and math.isnan(p99)):
                    continue
                stream = "/".join(key.split(".")[-3:])
                if best is None or p99 > best[0]:
                    best = (p99, stream)
            if best is not None:
                return best
        return None

    async def status_loop(self) -> None:
        while True:
            self.notifier.status(self.status_line())
            await asyncio.sleep(STATUS_S)

    async def watchdog_loop(self) -> None:
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            return
        stuck_said = False
        while True:
            stuck = max(self.daemon.worker.stuck_for_s(), self.daemon.video_encoder.stuck_for_s())
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
