"""``livetok run``'s daemon: the pipeline with the process around it.

:class:`Daemon` runs the :class:`~livetok.pipeline.runner.Pipeline` in one task group and adds what
makes it a service: the Prometheus endpoint (bound before anything captures), one
:class:`~livetok.pipeline.snapshot.RunSnapshot` per metrics interval rendered three ways (the
exposition, the stats document the bus publishes, the STATUS line), READY once capturing, the
watchdog, and SIGHUP: re-read the configuration, refuse it in one line or apply what changed
(:mod:`livetok.pipeline.reload`), and answer ``livetok reload``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

from livetok.config import LivetokConfig
from livetok.daemon.notify import Notifier, ReloadAnswers
from livetok.daemon.prometheus import Exporter, View, render
from livetok.daemon.statsdoc import StatsDocument
from livetok.daemon.supervise import Supervisor
from livetok.errors import LivetokError
from livetok.pipeline.books import Books, RunReport
from livetok.pipeline.metrics import Metrics
from livetok.pipeline.reload import ReloadPlan, plan
from livetok.pipeline.runner import Pipeline
from livetok.pipeline.snapshot import RunSnapshot
from livetok.runtime.log import NOTICE
from livetok.runtime.log import get as get_logger
from livetok.runtime.stopping import StopControl
from livetok.sinks import Sink
from livetok.tokenizers import Tokenizers

__all__ = ["Daemon", "RunReport", "run"]

_log = get_logger("daemon")
METRICS_S = 1.0  # a snapshot at least this often (s); more often when the stats interval is shorter


class Daemon:
    """Async context manager: the endpoint, the pipeline (warm-up, capture), and :meth:`run`."""

    def __init__(self, cfg: LivetokConfig, toks: Tokenizers, sinks: list[Sink], stop: StopControl,
                 run_id: str = "", notifier: Notifier | None = None,
                 reconfigure: Callable[[], LivetokConfig] | None = None) -> None:
        self.pipeline = Pipeline(cfg, toks, sinks, stop, run_id)
        self.run_id = run_id
        self.stop = stop
        self.notifier = notifier if notifier is not None else Notifier({})
        self.supervisor = Supervisor(self.notifier, self.pipeline.snapshot, self.pipeline.stuck_for_s)
        self.reconfigure = reconfigure  # re-reads and checks the configuration (SIGHUP); None: no reload
        self.reload_answers = ReloadAnswers()  # `livetok reload` (ExecReload=) waits for these
        self.exporter: Exporter | None = None  # the Prometheus endpoint, when metrics.listen is set
        self.reloads_done = 0  # SIGHUPs handled (applied or refused)
        self.stats = StatsDocument()
        self.latest: RunSnapshot | None = None  # the last snapshot rendered

    # What the run is doing, for the caller (and the tests): the pipeline's own.
    @property
    def cfg(self) -> LivetokConfig:
        return self.pipeline.cfg

    @property
    def books(self) -> Books:
        return self.pipeline.books

    @property
    def metrics(self) -> Metrics:
        return self.pipeline.metrics

    @property
    def sinks(self) -> list[Sink]:
        return self.pipeline.sinks

    @property
    def retired_sinks(self) -> list[Sink]:
        return self.pipeline.retired_sinks

    # -- start ------------------------------------------------------------------------------------
    async def __aenter__(self) -> Daemon:
        """The endpoint first (a port that cannot be used is refused before anything captures),
        then the pipeline: warm-up, capture."""
        try:
            if self.cfg.metrics.listen:
                self.exporter = Exporter(self.cfg.metrics.listen)
                self.exporter.start()
            await self.pipeline.__aenter__()
        except BaseException:
            self._close_exporter()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Whatever happened: capture threads stopped (a run that failed left them running), the
        endpoint closed, the worker threads let go."""
        try:
            await self.pipeline.__aexit__(*exc)
        finally:
            self._close_exporter()

    def _close_exporter(self) -> None:
        if self.exporter is not None:
            self.exporter.stop()
            self.exporter = None

    # -- the run ----------------------------------------------------------------------------------
    async def run(self, duration_s: float | None) -> RunReport:
        """Until stopped; then the shutdown. Returns the report (books balanced, or why not)."""
        p = self.pipeline
        if not p.started:
            p.report.stopped_by = f"{self.stop.reason} during start-up"
            return p.finish()
        try:
            async with asyncio.TaskGroup() as tg:
                producers = p.start_tasks(tg, {"metrics": self._metrics_once})
                self._observe(p.snapshot())  # the first rendering
                began = time.monotonic()  # --duration counts from capture's start, READY's wait included
                await self.supervisor.until_capturing(self.cfg, self.stop, duration_s)  # READY=1 means capturing
                service = self._start_service(tg)
                self.notifier.ready(self._status_now())
                left = None if duration_s is None else max(0.0, duration_s - (time.monotonic() - began))
                await self._wait_stop(left)
                p.report.stopped_by = self.stop.reason
                self.notifier.stopping(f"stopping ({self.stop.reason})")
                await p.shutdown(producers)
                for t in service:
                    t.cancel()
        except BaseExceptionGroup as group:  # the error itself, not "unhandled errors in a TaskGroup"
            raise _first(group) from group
        report = p.finish()  # the sinks' states as the run ended, like those the caller closes after
        await p.close_own_sinks()
        return report

    def _start_service(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Once capturing (READY): status, watchdog and reload, alive through the shutdown (the
        watchdog keeps pinging), cancelled at its end."""
        service = [
            tg.create_task(self._guard("status", self._status_loop), name="status"),
            tg.create_task(self._guard("watchdog", self.supervisor.watchdog_loop), name="watchdog"),
        ]
        if self.reconfigure is not None:
            service.append(tg.create_task(self.pipeline.loop("reload", self._reload_once), name="reload"))
        return service

    async def _guard(self, name: str, body: Callable[[], Any]) -> None:
        """A service task (status, watchdog): an unexpected error is said once and counted; it stops."""
        try:
            await body()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self.pipeline.error(f"errors.{name}", f"unexpected error in {name}: {err!r}")

    async def _wait_stop(self, duration_s: float | None) -> None:
        end = None if duration_s is None else time.monotonic() + duration_s
        while True:
            left = None if end is None else max(0.0, end - time.monotonic())
            if await self.stop.wait(min(left, 0.5) if left is not None else 0.5):
                return
            if end is not None and time.monotonic() >= end:
                self.stop.request("duration")
                return
            if self.pipeline.ended():
                self.stop.request("end of input (every source ended)")
                return

    # -- one snapshot per interval, three renderings ------------------------------------------------
    async def _metrics_once(self) -> bool:
        await self.pipeline.refresh()
        self._observe(self.pipeline.snapshot())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.pipeline.stopping.wait(), metrics_period(self.cfg))
        return True

    def _observe(self, snap: RunSnapshot) -> None:
        """Render ``snap``: the Prometheus exposition (served as is until the next), the stats
        document (posted to the sinks: the bus publishes it), and kept for the STATUS line."""
        self.latest = snap
        if self.exporter is not None:
            self.exporter.publish(render(View.of(snap)))
        if snap.bus is not None:  # the one sink that publishes it
            self.pipeline.post_stats(self.stats.render(snap, self.cfg.bus_settings().stats_interval_s))

    def _status_now(self) -> str:
        """The STATUS line of a snapshot taken now (READY, a reload's end)."""
        self._observe(self.pipeline.snapshot())
        assert self.latest is not None
        return self.supervisor.status_line(self.latest)

    async def _status_loop(self) -> None:
        await self.supervisor.status_loop(lambda: self.latest)

    # -- reload (SIGHUP) ----------------------------------------------------------------------------
    async def _reload_once(self) -> bool:
        await self.stop.wait_reload()
        if self.pipeline.stopping.is_set():
            self.reload_answers.answer(self.reload_answers.take(), "refused", "the daemon is stopping")
            return False
        requests = self.reload_answers.take()  # before the file is read: the answer covers what they asked
        outcome, line = await self.reload()
        self.reload_answers.answer(requests, outcome, line)
        return True

    async def reload(self) -> tuple[str, str]:
        """Re-read the configuration and apply what changed (livetok.pipeline.reload); an invalid one,
        or one that changes what cannot change while running, is refused in one line. Returns the
        outcome (``applied``, ``unchanged``, ``refused``) and that line."""
        assert self.reconfigure is not None
        self.notifier.reloading()
        _log.log(NOTICE, "reload: re-reading the configuration")
        try:
            new = await asyncio.to_thread(self.reconfigure)
        except LivetokError as err:
            result = ("refused", f"reload: {err}; keeping the running configuration")
            _log.error("%s", result[1])
            self.reloads_done += 1
            self.notifier.ready(self._status_now())
            return result
        p = plan(self.cfg, new)
        if p.fixed:
            result = ("refused", f"reload: {', '.join(p.fixed)} changed, which needs a restart (systemctl restart "
                      "livetok); keeping the running configuration")
            _log.error("%s", result[1])
        elif p.empty:
            result = ("unchanged", "reload: nothing changed")
            _log.log(NOTICE, "%s", result[1])
        else:
            try:
                await self._apply(p, new)
            except LivetokError as err:
                result = ("refused", f"reload: {err}; keeping the running configuration")
                _log.error("%s", result[1])
            else:
                result = ("applied", f"reload: applied ({p.describe()})")
                _log.log(NOTICE, "%s", result[1])
        self.reloads_done += 1
        self.notifier.ready(self._status_now())
        return result

    async def _apply(self, p: ReloadPlan, new: LivetokConfig) -> None:
        """The new sinks made (and, at a new path, opened) and the new endpoint bound first: one that
        cannot aborts with nothing touched. Then the endpoint moves and the pipeline changes."""
        prepared = await self.pipeline.prepare(p, new)
        try:
            exporter = _new_exporter(p, new)
        except BaseException:
            await self.pipeline.discard(prepared)
            raise
        if p.metrics:
            self._close_exporter()
            self.exporter = exporter
            if exporter is not None and self.latest is not None:
                exporter.publish(render(View.of(self.latest)))
        await self.pipeline.apply(p, new, prepared)


def metrics_period(cfg: LivetokConfig) -> float:
    """How often a snapshot is taken (s): :data:`METRICS_S`, or less so that it divides the bus's
    ``stats_interval_s`` (each stats document the bus publishes is then one taken just before)."""
    bus = cfg.bus
    if bus is None:
        return METRICS_S
    return bus.stats_interval_s / math.ceil(bus.stats_interval_s / METRICS_S)


def _new_exporter(p: ReloadPlan, new: LivetokConfig) -> Exporter | None:
    """The endpoint at the new ``metrics.listen``, listening (ConfigError when it cannot)."""
    if not p.metrics or not new.metrics.listen:
        return None
    exporter = Exporter(new.metrics.listen)
    exporter.start()
    return exporter


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error a task group collected, unnested (its one line is the one to read)."""
    err: BaseException = group
    while isinstance(err, BaseExceptionGroup):
        err = err.exceptions[0]
    return err


async def run(cfg: LivetokConfig, toks: Tokenizers, sinks: list[Sink], stop: StopControl,
              duration_s: float | None, run_id: str = "", notifier: Notifier | None = None,
              reconfigure: Callable[[], LivetokConfig] | None = None) -> RunReport:
    async with Daemon(cfg, toks, sinks, stop, run_id, notifier, reconfigure) as daemon:
        return await daemon.run(duration_s)
