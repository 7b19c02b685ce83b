"""``livetok run``: sources -> engine (one worker thread) -> sinks (one task and channel each), on uvloop.

The daemon is one task group of named tasks:

* ``video-batcher`` takes frames from every camera's hand-over queue and gives the worker one batch;
* ``audio-feeder`` gives the worker the audio blocks;
* ``aligner-tick`` asks the worker every ``TICK_S`` for the steps that are complete or late;
* ``metrics`` refreshes the gauges every ``METRICS_S``;
* ``sink:NAME`` per sink: takes batches from the sink's channel and writes them.

Capture runs in the sources' threads; tokenization, alignment, wire stamping and encoding run in one
worker thread (:class:`~livetok.pipeline.engine.Engine` + :class:`~livetok.pipeline.outbound.WireStamper`);
the event loop only moves messages: it fans each one out to every sink's bounded channel, so a slow
or failing sink fills only its own channel. Metrics are written on the loop only.

Stopping (a signal, ``--duration``, or every source ended): producers finish the batch they hold,
sources stop, what they captured is drained through the engine, the engine is flushed, the channels
are closed and the sinks write what they hold and close — each stage within one shutdown deadline
(shortened by a second signal). Whatever the deadline cuts off is counted: the run's books
(:meth:`Daemon.books`) balance exactly, per source and modality and per sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from livetok.config import LivetokConfig
from livetok.daemon.notify import Notifier, ReloadAnswers
from livetok.daemon.prometheus import BusRow, CaptureRow, Exporter, SinkRow, SourceRow, View, render
from livetok.daemon.reload import ReloadPlan
from livetok.daemon.supervise import Supervisor
from livetok.errors import LivetokError
from livetok.pipeline.engine import Engine, EngineOutput
from livetok.pipeline.metrics import Metrics
from livetok.pipeline.outbound import Outgoing, WireStamper
from livetok.pipeline.outlets import Outlet, Outlets
from livetok.pipeline.sources import RunningSource, build_sources
from livetok.runtime.lane import BlockingLane, LanePool
from livetok.runtime.log import NOTICE
from livetok.runtime.log import get as get_logger
from livetok.runtime.stopping import Deadline, StopControl
from livetok.sinks.channel import SinkChannel
from livetok.sinks.file import Sink
from livetok.streams.handoff import Handoff
from livetok.streams.types import AudioCapture, SourceState, VideoCapture
from livetok.tokenizers import Tokenizers

_log = get_logger("daemon")
TICK_S = 0.02
# The video tokenizer's thread yields the CPU to capture, audio and the loop: a frame is 5-10 ms of
# work that can wait a little, an audio token's latency budget is its 15 ms window lookahead.
VIDEO_NICE = 5
METRICS_S = 1.0
SHUTDOWN_S = 10.0
STOP_ON_ERROR_S = 3.0  # stopping capture after the run failed (s)
STOPPERS = 8  # sources stopped side by side (each stop waits up to ~2 s for its thread)
T = TypeVar("T")


@dataclass
class Work:
    """What the worker made of one call: the messages for the sinks and the engine's side results."""

    out: list[Outgoing]
    engine: EngineOutput


@dataclass
class Books:
    """Per (source, modality): captures in and where each went; per (stream, modality): messages.

    ``captured = dropped (by the hand-over queue) + tokenized + failed + discarded + left`` for every
    source and modality (the hand-over's counts come from the hand-over itself),
    and for every sink ``offered = written + dropped + failed + queued``.
    """

    tokenized: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: Counter[tuple[str, str]] = field(default_factory=Counter)  # the engine raised on them
    discarded: Counter[tuple[str, str]] = field(default_factory=Counter)  # cut off by the shutdown deadline
    emitted: Counter[tuple[str, str]] = field(default_factory=Counter)  # messages: (source, modality) or (group, step)


@dataclass
class RunReport:
    """What a run did, for the command line and the tests."""

    steps: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    accounting: dict[str, Any] = field(default_factory=dict)
    stopped_by: str = ""
    sinks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return bool(self.accounting.get("balanced"))


class Daemon:
    """Async context manager: the engine's worker, the sources, and the run over already opened sinks."""

    def __init__(self, cfg: LivetokConfig, toks: Tokenizers, sinks: list[Sink], stop: StopControl,
                 run_id: str = "", notifier: Notifier | None = None,
                 reconfigure: Callable[[], LivetokConfig] | None = None) -> None:
        self.cfg = cfg
        self.run_id = run_id
        self.toks = toks
        self.stop = stop
        self.notifier = notifier if notifier is not None else Notifier({})
        self.supervisor = Supervisor(self, self.notifier)
        self.reconfigure = reconfigure  # re-reads and checks the configuration (SIGHUP); None: no reload
        self.reload_answers = ReloadAnswers()  # `livetok reload` (ExecReload=) waits for these
        self.retired_sources: list[RunningSource] = []  # stopped by a reload: still in the books
        self.outlets = Outlets()  # the sinks in the fan-out, and every one since the start (the books)
        self._first_sinks = sinks
        self.exporter: Exporter | None = None  # the Prometheus endpoint, when metrics.listen is set
        self.reloads_done = 0  # SIGHUPs handled (applied or refused)
        self.stoppers = LanePool("livetok-stop", STOPPERS)  # stops sources side by side (blocking joins)
        self._tg: asyncio.TaskGroup | None = None
        self.metrics = Metrics()
        self.books = Books()
        self.worker = BlockingLane("livetok-tokenizer")  # the engine: every call that touches its state
        # The batched video tokenizer call is pure: it runs here, so audio never waits behind a batch of
        # frames in the engine's thread (measured: audio fine p95 +5 ms when both shared one thread).
        self.video_encoder = BlockingLane("livetok-video", nice=VIDEO_NICE)
        self.engine = Engine(cfg, toks)
        self.stamper = WireStamper()
        self.sources: list[RunningSource] = []
        self.video_ready = asyncio.Event()
        self.audio_ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self.report = RunReport()
        self.started = False
        self.started_ns = time.monotonic_ns()
        self._said: set[str] = set()
        self._rates = _Rates()
        self._aligner_stats: dict[str, dict[str, int]] = {}  # the worker's, copied by the metrics task
        for sink in sinks:
            sink.attach(self)  # the bus sink takes the sources' meta and the stats document from here

    @property
    def sinks(self) -> list[Sink]:
        """The sinks in the fan-out now."""
        return [o.sink for o in self.outlets.active]

    @property
    def channels(self) -> dict[str, SinkChannel]:
        """Each sink's channel now, by name."""
        return {o.name: o.channel for o in self.outlets.active}

    @property
    def retired_sinks(self) -> list[Sink]:
        """Sinks a reload took out of the fan-out (closed, still in the books)."""
        return [o.sink for o in self.outlets.history if o.left is not None and o not in self.outlets.active]

    # -- start ------------------------------------------------------------------------------------
    async def __aenter__(self) -> Daemon:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        """The endpoint first (a port that cannot be used is refused before anything captures),
        warm-up, then capture."""
        if self.cfg.metrics.listen:
            self.exporter = Exporter(self.cfg.metrics.listen)
            self.exporter.start()
        if self.toks.video.device.type == "cpu":
            # Capture threads need a core: OpenMP threads that lose theirs stall every torch call
            # at its barrier (bench/bench_video.py measured 38 -> 313 ms median per batch).
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
        loop = asyncio.get_running_loop()
        for s in self._first_sinks:
            self.outlets.join(s, self.books.emitted)
        self.sources = build_sources(self.cfg, self.toks.cfg.video)
        for src in self.sources:
            if src.video is not None:
                src.video.bind(loop, self.video_ready)
            if src.audio is not None:
                src.audio.bind(loop, self.audio_ready)
        await self.worker.run(self.toks.warm_up)
        if not self.stop.requested:  # a signal during start-up: nothing was captured, nothing to stop
            for src in self.sources:
                src.start()
            self.started = True

    async def __aexit__(self, *exc: object) -> None:
        """Whatever happened: capture threads stopped (a run that failed left them running), the
        endpoint closed, the worker threads let go."""
        try:
            running = [s for s in self.sources if s.thread.alive]
            if running:
                await self._stop_sources(running, Deadline(STOP_ON_ERROR_S, self.stop))
        finally:
            if self.exporter is not None:
                self.exporter.stop()
                self.exporter = None
            self.stoppers.close()
            self.worker.close()
            self.video_encoder.close()

    # -- the run ----------------------------------------------------------------------------------
    async def run(self, duration_s: float | None) -> RunReport:
        """Until stopped; then the shutdown. Returns the report (books balanced, or why not)."""
        if not self.started:
            self.report.stopped_by = f"{self.stop.reason} during start-up"
            return self._finish()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                producers = self._start_tasks(tg)
                began = time.monotonic()  # --duration counts from capture's start, READY's wait included
                await self.supervisor.until_capturing(duration_s)  # READY=1 means capturing (docs/daemon.md)
                service = self._start_service(tg)
                self.notifier.ready(self.supervisor.status_line())
                left = None if duration_s is None else max(0.0, duration_s - (time.monotonic() - began))
                await self._wait_stop(left)
                self.report.stopped_by = self.stop.reason
                self.notifier.stopping(f"stopping ({self.stop.reason})")
                await self._shutdown(producers)
                for t in service:
                    t.cancel()
        except BaseExceptionGroup as group:  # the error itself, not "unhandled errors in a TaskGroup"
            raise _first(group) from group
        self._tg = None
        report = self._finish()  # the sinks' states as the run ended, like those the caller closes after
        await self._close_own_sinks()
        return report

    def _start_tasks(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """The producers and a task per sink; the first metrics rendering. Returns the producers."""
        producers = [
            tg.create_task(self._loop("video-batcher", self._video_once), name="video-batcher"),
            tg.create_task(self._loop("audio-feeder", self._audio_once), name="audio-feeder"),
            tg.create_task(self._loop("aligner-tick", self._tick_once), name="aligner-tick"),
            tg.create_task(self._loop("metrics", self._metrics_once), name="metrics"),
        ]
        for outlet in self.outlets.active:
            self._start_sink(outlet)
        self._publish_metrics()
        return producers

    def _start_service(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Once capturing (READY): status, watchdog and reload, alive through the shutdown (the
        watchdog keeps pinging), cancelled at its end."""
        service = [
            tg.create_task(self._guard("status", self.supervisor.status_loop), name="status"),
            tg.create_task(self._guard("watchdog", self.supervisor.watchdog_loop), name="watchdog"),
        ]
        if self.reconfigure is not None:
            service.append(tg.create_task(self._loop("reload", self._reload_once), name="reload"))
        return service

    async def _shutdown(self, producers: list[asyncio.Task[None]]) -> None:
        """Producers, sources, the engine's drain, the sinks: each stage within one deadline."""
        deadline = Deadline(SHUTDOWN_S, self.stop)
        self.stopping.set()
        self.video_ready.set()
        self.audio_ready.set()
        await self._join(producers, deadline)
        await self._stop_sources(self.sources, deadline)
        await self._final_drain(deadline)
        for o in self.outlets.active:
            o.channel.close()
        # every sink task still running: the active ones, and any a reload is still retiring
        running = [o.task for o in self.outlets.history if o.task is not None and not o.task.done()]
        await self._join(running, deadline, at_least_s=0.5, outlets=self.outlets.history)

    def _start_sink(self, outlet: Outlet) -> None:
        assert self._tg is not None
        outlet.task = self._tg.create_task(self._sink(outlet), name=f"sink:{outlet.name}")

    async def _close_own_sinks(self) -> None:
        """Close the sinks a reload opened (the caller closes those it gave; closing twice is harmless)."""
        for o in self.outlets.history:
            if o.opened_here:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(o.sink.__aexit__(None, None, None), 5.0)

    async def _guard(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """A service task (status, watchdog): an unexpected error is said once and counted; it stops."""
        try:
            await body()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._error(f"errors.{name}", f"unexpected error in {name}: {err!r}")

    async def _wait_stop(self, duration_s: float | None) -> None:
        end = None if duration_s is None else time.monotonic() + duration_s
        while True:
            left = None if end is None else max(0.0, end - time.monotonic())
            if await self.stop.wait(min(left, 0.5) if left is not None else 0.5):
                return
            if end is not None and time.monotonic() >= end:
                self.stop.request("duration")
                return
            if self.sources and all(s.finished for s in self.sources):
                self.stop.request("end of input (every source ended)")
                return

    async def _loop(self, name: str, once: Callable[[], Awaitable[bool]]) -> None:
        """A producer: ``once`` until stopping; an unexpected error is said once, counted, survived."""
        while not self.stopping.is_set():
            try:
                if not await once():
                    return
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the daemon's promise: keep running, but never silently
                self._error(f"errors.{name}", f"unexpected error in {name}: {err!r}")
                await asyncio.sleep(0.1)

    async def _sink(self, outlet: Outlet) -> None:
        """A sink's task. ``Sink.run`` handles its own failures; anything that still escapes is a
        bug, said once, counted, and the sink is started again after a second."""
        sink, channel = outlet.sink, outlet.channel
        while True:
            try:
                await sink.run(channel)
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._error(f"errors.sink.{sink.name}", f"unexpected error in sink {sink.name}: {err!r}")
                if channel.closed and not channel.depth:
                    return
                await asyncio.sleep(1.0)

    def _error(self, key: str, line: str) -> None:
        self.metrics.count(key)
        if key not in self._said:
            self._said.add(key)
            _log.error("%s (counted in %s; the daemon goes on)", line, key)

    # -- reload (SIGHUP) ----------------------------------------------------------------------------
    async def _reload_once(self) -> bool:
        await self.stop.wait_reload()
        if self.stopping.is_set():
            self.reload_answers.answer(self.reload_answers.take(), "refused", "the daemon is stopping")
            return False
        requests = self.reload_answers.take()  # before the file is read: the answer covers what they asked
        outcome, line = await self.reload()
        self.reload_answers.answer(requests, outcome, line)
        return True

    async def reload(self) -> tuple[str, str]:
        """Re-read the configuration and apply what changed (livetok.daemon.reload); an invalid one,
        or one that changes what cannot change while running, is refused in one line. Returns the
        outcome (``applied``, ``unchanged``, ``refused``) and that line."""
        from livetok.daemon.reload import plan

        assert self.reconfigure is not None
        self.notifier.reloading()
        _log.log(NOTICE, "reload: re-reading the configuration")
        try:
            new = await asyncio.to_thread(self.reconfigure)
        except LivetokError as err:
            result = ("refused", f"reload: {err}; keeping the running configuration")
            _log.error("%s", result[1])
            self.reloads_done += 1
            self.notifier.ready(self.supervisor.status_line())
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
                self.metrics.count("reloads")
                result = ("applied", f"reload: applied ({p.describe()})")
                _log.log(NOTICE, "%s", result[1])
        self.reloads_done += 1
        self.notifier.ready(self.supervisor.status_line())
        return result

    async def _apply(self, p: ReloadPlan, new: LivetokConfig) -> None:
        # 1. Sinks made (and, at a new path, opened) and the new endpoint bound first: one that cannot
        #    aborts with nothing touched.
        made, later = await self._make_sinks(p, new)
        try:
            exporter = self._new_exporter(p, new)
        except BaseException:
            for sink in made.values():
                with contextlib.suppress(Exception):
                    await sink.__aexit__(None, None, None)
            raise
        if p.metrics:
            if self.exporter is not None:
                self.exporter.stop()
            self.exporter = exporter
            self._publish_metrics()
        deadline = Deadline(SHUTDOWN_S, self.stop)
        # 2. Sources that stop: their captures go through the engine, then their groups are flushed.
        leaving = p.restart_sources | p.stop_sources
        stopped = [s for s in self.sources if s.name in leaving]
        await self._stop_sources(stopped, deadline)
        await self._drain(stopped, deadline)
        for name in sorted(p.remove_groups):
            self._fan_out(await self.worker.run(self._work, self.engine.remove_group, name))
        self.sources = [s for s in self.sources if s.name not in leaving]
        self.retired_sources += stopped
        # 3. The new configuration: groups, then sources.
        self.cfg = new
        for g in new.effective_groups():
            if g.name in p.add_groups:
                await self.worker.run(self.engine.add_group, g, new)
        loop = asyncio.get_running_loop()
        for src in build_sources(new, self.toks.cfg.video, only=p.restart_sources | p.start_sources):
            if src.video is not None:
                src.video.bind(loop, self.video_ready)
            if src.audio is not None:
                src.audio.bind(loop, self.audio_ready)
            src.start()
            self.sources.append(src)
        # 4. Sinks: swapped in the fan-out between two messages; the old ones drain and close while
        #    the new ones write (or, on the same file, collect in their channel until it is theirs).
        for sink in made.values():
            sink.attach(self)  # the bus's meta: of the new configuration
        going = self._swap_sinks(p, made)
        for o in self.outlets.active:
            if o.sink in made.values() and o.sink not in later:
                self._start_sink(o)
        await asyncio.gather(*(self._retire(o, deadline) for o in going))
        for sink in later:
            await self._open_later(sink)

    def _new_exporter(self, p: ReloadPlan, new: LivetokConfig) -> Exporter | None:
        """The endpoint at the new ``metrics.listen``, listening (ConfigError when it cannot)."""
        if not p.metrics or not new.metrics.listen:
            return None
        exporter = Exporter(new.metrics.listen)
        exporter.start()
        return exporter

    async def _make_sinks(self, p: ReloadPlan, new: LivetokConfig) -> tuple[dict[str, Sink], list[Sink]]:
        """The sinks the plan adds or reopens, by name, and which of them open only once the old
        one let go (the same file, whose lock it holds; the bus, whose client id it uses)."""
        from livetok.sinks.file import make_sink

        reopen, _, opening = _sink_changes(p)
        old = {o.name: o.sink for o in self.outlets.active}
        made: dict[str, Sink] = {}
        later: list[Sink] = []
        try:
            for name in sorted(reopen | opening):
                sink = made[name] = make_sink(new, name, self.run_id)
                if name in reopen and (_path_of(old[name]) == _sink_path(new, name) or sink.latency_kind == "publish"):
                    later.append(sink)
                else:
                    await sink.__aenter__()
        except BaseException:
            for sink in made.values():
                with contextlib.suppress(Exception):
                    await sink.__aexit__(None, None, None)
            raise
        return made, later

    def _swap_sinks(self, p: ReloadPlan, made: dict[str, Sink]) -> list[Outlet]:
        """The fan-out's change, in one step on the loop (no await: no message can fall between)."""
        reopen, close, opening = _sink_changes(p)
        emitted = self.books.emitted
        going = []
        for o in list(self.outlets.active):
            if o.name in close:
                self.outlets.leave(o, emitted)
                going.append(o)
            elif o.name in reopen:
                self.outlets.swap(o, made[o.name], emitted)
                going.append(o)
        for name in sorted(opening):
            self.outlets.join(made[name], emitted, opened_here=True)
        return going

    async def _retire(self, outlet: Outlet, deadline: Deadline) -> None:
        """An outlet out of the fan-out: its task writes what its channel holds, then the sink closes."""
        if outlet.task is not None:
            await self._join([outlet.task], deadline, at_least_s=0.5, outlets=[outlet])
        with contextlib.suppress(Exception):
            await asyncio.wait_for(outlet.sink.__aexit__(None, None, None), 5.0)

    async def _open_later(self, sink: Sink) -> None:
        outlet = next((o for o in self.outlets.active if o.sink is sink), None)
        if outlet is None:  # the shutdown came first: its channel was closed and counted
            return
        try:
            await sink.__aenter__()
        except LivetokError as err:  # what it collected meanwhile is counted as dropped
            _log.error("reload: sink %s: %s (it stays closed; what it held is counted as dropped)", sink.name, err)
            self.outlets.leave(outlet, self.books.emitted)
            for item in outlet.channel.abandon():
                sink.on_drop(item)
            return
        self._start_sink(outlet)

    async def _drain(self, sources: list[RunningSource], deadline: Deadline) -> None:
        """What ``sources`` captured, through the engine (the shutdown and a reload do this)."""
        batch_size = self.toks.cfg.video.batch_size
        handoffs = [(s, s.video) for s in sources if s.video is not None]
        while batch := self._take_video(handoffs, batch_size):
            await self._process("video", batch, deadline)
        blocks = [b for s in sources if s.audio is not None for b in s.audio.drain()]
        if blocks:
            await self._process("audio", blocks, deadline)

    # -- producers --------------------------------------------------------------------------------
    def _video_handoffs(self) -> list[tuple[RunningSource, Handoff[VideoCapture]]]:
        return [(s, s.video) for s in self.sources if s.video is not None]

    async def _video_once(self) -> bool:
        await self.video_ready.wait()
        self.video_ready.clear()
        if self.stopping.is_set():
            return False
        batch_size = self.toks.cfg.video.batch_size
        handoffs = self._video_handoffs()
        wait_s = self.cfg.queues.batch_wait_ms / 1000
        # Wait for other cameras' frames to join the batch; with one camera there is nobody to wait for.
        if wait_s and len(handoffs) > 1 and sum(h.depth for _, h in handoffs) < batch_size:
            await asyncio.sleep(wait_s)
        while (batch := self._take_video(handoffs, batch_size)) and not self.stopping.is_set():
            await self._process("video", batch)
        if batch:  # taken just as the stop came: tokenized by the final drain's path
            await self._process("video", batch)
        return True

    def _take_video(self, handoffs: list[tuple[RunningSource, Handoff[VideoCapture]]],
                    limit: int) -> list[VideoCapture]:
        """Up to ``limit`` frames, round-robin over sources so a fast camera cannot starve others."""
        batch: list[VideoCapture] = []
        while len(batch) < limit:
            took = False
            for _, h in handoffs:
                if len(batch) < limit and (item := h.get_nowait()) is not None:
                    batch.append(item)
                    took = True
            if not took:
                break
        return batch

    def _lost_video(self) -> frozenset[str]:
        return frozenset(s.name for s, h in self._video_handoffs() if h.take_dropped())

    async def _audio_once(self) -> bool:
        await self.audio_ready.wait()
        self.audio_ready.clear()
        blocks = self._take_audio()
        if blocks:
            await self._process("audio", blocks)
        return not self.stopping.is_set()

    def _take_audio(self) -> list[AudioCapture]:
        out: list[AudioCapture] = []
        for s in self.sources:
            if s.audio is not None:
                out += s.audio.drain()
        return out

    async def _tick_once(self) -> bool:
        await asyncio.sleep(TICK_S)
        if self.stopping.is_set():
            return False
        now = time.monotonic_ns()
        self._fan_out(await self.worker.run(self._work, self.engine.tick, now))
        return True

    # -- the worker's side: engine, then wire stamping and encoding, in one job --------------------
    def _work(self, fn: Callable[..., EngineOutput], *args: Any) -> Work:
        eo = fn(*args)
        st = self.stamper
        return Work([st.outgoing_packet(hp) for hp in eo.packets] + [st.outgoing_step(hs) for hs in eo.steps], eo)

    async def _process(self, kind: str, caps: list[VideoCapture] | list[AudioCapture],
                       deadline: Deadline | None = None) -> None:
        """One batch through the worker, booked whatever happens to it."""
        keys = Counter((c.source, kind) for c in caps)
        async def job() -> Work:
            if kind == "video":
                codes = await self.video_encoder.run(self.engine.encode, caps)
                return await self.worker.run(self._work, self.engine.on_video, caps, self._lost_video(), codes)
            return await self.worker.run(self._work, self.engine.on_audio, caps)

        try:
            work = await (job() if deadline is None else asyncio.wait_for(job(), deadline.left()))
        except (TimeoutError, asyncio.CancelledError):
            self.books.discarded.update(keys)  # its output, if it ever comes, is not waited for
            raise
        except Exception as err:
            self.books.failed.update(keys)
            self._error(f"errors.engine.{kind}", f"error while tokenizing {kind}: {err!r}")
            return
        self.books.tokenized.update(keys)
        self._fan_out(work)

    def _fan_out(self, work: Work) -> None:
        """Every message to every sink that wants it (each into its own channel), and metrics."""
        now = time.monotonic_ns()
        m = self.metrics
        for item in work.out:
            self.books.emitted[item.key] += 1
            if item.is_step:
                self.report.steps += 1
                m.observe(("latency", "step", item.stream), now - item.capture_ns)
            else:
                lat = now - item.capture_ns
                m.observe(f"latency.{item.modality}.{item.scale}", lat)
                m.observe(("latency", "emit", item.stream, item.modality, item.scale), lat)
            for o in self.outlets.active:
                if o.sink.accepts(item):
                    o.sink.offer(o.channel, item)
        for group, skew in work.engine.skews:
            m.observe(("skew", group), skew)
        for source, modality in work.engine.gaps:
            m.count(("gaps", source, modality))

    # -- metrics ----------------------------------------------------------------------------------
    async def _metrics_once(self) -> bool:
        self._refresh_gauges()
        for name, c in (await self.worker.run(self.engine.clocks)).items():
            self.metrics.set(("drift_ppm", name), c.drift_ppm)
            self.metrics.set(("clock_slewing_ms", name), round(c.slewing_ns / 1e6, 3))
            if c.settled_after_ms is not None:
                self.metrics.set(("clock_settled_ms", name), c.settled_after_ms)
        self._aligner_stats = await self.worker.run(self.engine.aligner_stats)
        self._publish_metrics()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), METRICS_S)
        return True

    def _publish_metrics(self) -> None:
        """The Prometheus exposition of now, rendered here (on the loop) once per interval."""
        if self.exporter is not None:
            self.exporter.publish(render(self._view()))

    def _view(self) -> View:
        m = self.metrics
        v = View(self.run_id, self.uptime_s(), m.series, m.gauges, m.counters)
        v.sources = [SourceRow(s.name, s.stats.state is SourceState.RUNNING, s.stats.reconnects, s.stats.stalls,
                               s.stats.errors) for s in self.sources]
        captures, _ = self._capture_books()
        v.captures = [CaptureRow(src, kind, r["captured"], r["tokenized"], r["dropped_queue"], r["dropped_shutdown"],
                                 r["failed"]) for (src, kind), r in captures.items()]
        for o in self.outlets.active:
            t = self.outlets.totals(o.name)
            v.sinks.append(SinkRow(o.name, t["written"], t["dropped"], t["failed"], o.channel.depth))
            if o.sink.latency_kind == "publish":
                g = o.sink.gauges()
                v.bus = BusRow(bool(g["connected"]), int(g["reconnects"]), int(g["connect_failures"]),
                               o.channel.depth + int(g["resend_depth"]), int(g["in_flight"]), t["written"],
                               int(g["refused"]), t["dropped"])
        return v

    def _refresh_gauges(self) -> None:
        m = self.metrics
        for s in self.sources:
            for kind, h in (("video", s.video), ("audio", s.audio)):
                if h is not None:
                    m.set(("queue_depth", s.name, kind), h.depth)
                    m.set(("queue_max_depth", s.name, kind), h.max_depth)
                    m.set(("dropped", s.name, kind), h.dropped)
            # Every counter the capture thread keeps, so a new one is published without touching
            # this list; the state as its index in SourceState; ``extra`` counters by their names.
            for f in dataclasses.fields(s.stats):
                value = getattr(s.stats, f.name)
                if isinstance(value, SourceState):
                    m.set(("source", s.name, f.name), list(SourceState).index(value))
                elif isinstance(value, bool):
                    continue
                elif isinstance(value, int | float):
                    m.set(("source", s.name, f.name), value)
                elif isinstance(value, dict):
                    for k, v in value.items():
                        m.set(("source", s.name, k), v)
        for o in self.outlets.active:
            sink, st, ch = o.sink, o.sink.stats, o.channel
            for key, total in self.outlets.totals(sink.name).items():  # never back to 0 at a reopen
                if key != "offered":
                    m.set(("sink", sink.name, key), total)
            for key, value in sink.gauges().items():
                m.set(("sink", sink.name, key), value)
            m.set(("sink", sink.name, "queue_depth"), ch.depth)
            m.set(("sink", sink.name, "queue_max_depth"), ch.max_depth)
            m.set(("sink", sink.name, "queue_bytes"), ch.bytes)
            kind = sink.latency_kind
            for item, lat in st.latencies:
                m.observe(("latency", kind, sink.name), lat)
                if not item.is_step:
                    m.observe(("latency", kind, sink.name, item.stream, item.modality, item.scale), lat)
            st.latencies = []

    # -- shutdown ---------------------------------------------------------------------------------
    async def _join(self, tasks: list[asyncio.Task[Any]], deadline: Deadline, at_least_s: float = 0.0,
                    outlets: list[Outlet] | None = None) -> None:
        """Wait for ``tasks`` until the deadline (at least ``at_least_s``), then cancel what is left;
        whatever the closed channels of ``outlets`` still hold is counted as dropped."""
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(deadline.left(), at_least_s))
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)  # cancellation is prompt: they only await
        for o in outlets or []:
            if o.channel.closed:
                for item in o.channel.abandon():
                    o.sink.on_drop(item)

    async def _stop_sources(self, sources: list[RunningSource], deadline: Deadline) -> None:
        """Stop ``sources`` side by side in the daemon's own lanes, waiting at most until the deadline."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stoppers.run_each([s.stop for s in sources]), max(0.1, deadline.left()))

    async def _final_drain(self, deadline: Deadline) -> None:
        """What the sources captured before they stopped, through the engine; then the engine's flush."""
        try:
            await self._drain(self.sources, deadline)
            self._fan_out(await asyncio.wait_for(self.worker.run(self._work, self.engine.flush),
                                                 max(0.001, deadline.left())))
        except TimeoutError:
            self._error("errors.shutdown", "shutdown deadline passed before the engine drained; the rest is "
                        "counted as dropped")

    def _finish(self) -> RunReport:
        self._refresh_gauges()
        self.report.metrics = self.metrics.snapshot()
        self.report.accounting = self.accounting()
        self.report.sinks = {name: self._sink_report(outs) for name, outs in self.outlets.incarnations().items()}
        return self.report

    def _sink_report(self, outs: list[Outlet]) -> dict[str, Any]:
        """A sink's line in the report: its counts over every incarnation, the rest from the last."""
        last = outs[-1]
        st = last.sink.stats
        total = self.outlets.totals(last.name)
        return {"state": st.state, "written": total["written"], "dropped": total["dropped"], "failed": total["failed"],
                "errors": total["errors"], "last_error": st.last_error,
                "queue_max_depth": max(o.channel.max_depth for o in outs), **last.sink.gauges()}

    def _capture_books(self) -> tuple[dict[tuple[str, str], dict[str, int]], bool]:
        """Per (source, modality): captures in and where each went, and whether all balance."""
        b = self.books
        captures: dict[tuple[str, str], dict[str, int]] = {}
        ok = True
        # A source restarted by a reload had several hand-overs under one name: their counts add up.
        handoffs: dict[tuple[str, str], list[Handoff[Any]]] = {}
        for src in self.retired_sources + self.sources:
            for kind, h in (("video", src.video), ("audio", src.audio)):
                if h is not None:
                    handoffs.setdefault((src.name, kind), []).append(h)
        for key, hs in handoffs.items():
            put, dropped, taken, left = (sum(getattr(h, a) for h in hs)
                                         for a in ("put_count", "dropped", "taken", "depth"))
            row = {"captured": put, "dropped_queue": dropped, "tokenized": b.tokenized[key], "failed": b.failed[key],
                   "dropped_shutdown": b.discarded[key] + left}
            # The hand-over's own books, and ours of what was taken from it, must both close.
            row["balanced"] = int(put == dropped + taken + left
                                  and taken == b.tokenized[key] + b.failed[key] + b.discarded[key])
            ok &= bool(row["balanced"])
            captures[key] = row
        return captures, ok

    def accounting(self) -> dict[str, Any]:
        """The run's books, and whether they balance: nothing unseen was lost."""
        captures, ok = self._capture_books()
        sinks, sinks_ok = self.outlets.books(self.books.emitted)
        emitted = {".".join(k): v for k, v in sorted(self.books.emitted.items())}
        return {"captures": {".".join(k): row for k, row in captures.items()}, "emitted": emitted, "sinks": sinks,
                "balanced": int(ok and sinks_ok)}

    def uptime_s(self) -> float:
        return round((time.monotonic_ns() - self.started_ns) / 1e9, 3)

    # -- the stats document (published on the bus; docs/bus.md) -------------------------------------
    def stats_groups(self) -> dict[str, Any]:
        """Per group: the aligner's counts (as of the last metrics refresh), skew, step latency."""
        series: dict[str, Any] = self.metrics.snapshot()["series_ms"]  # type: ignore[assignment]
        groups: dict[str, Any] = {}
        for name, a in self._aligner_stats.items():
            skew = series.get(f"skew.{name}")
            groups[name] = {**a, "skew_ms": _num(skew["p50"]) if skew else None,
                            "latency_ms": {"step": _pct(series.get(f"latency.step.{name}"))}}
        return groups

    def stats_document(self) -> dict[str, Any]:
        """Per source and group: rates, latency percentiles, skew, drift, drops, depths; per sink its
        books; the bus's state. JSON-ready (no NaN)."""
        snap = self.metrics.snapshot()
        series: dict[str, Any] = snap["series_ms"]  # type: ignore[assignment]
        gauges: dict[str, Any] = snap["gauges"]  # type: ignore[assignment]
        now = time.monotonic_ns()
        rates = self._rates.update(now, self.books)
        bus = next((s for s in self.sinks if s.latency_kind == "publish"), None)
        sources: dict[str, Any] = {}
        for src in self.sources:
            n = src.name
            lat: dict[str, Any] = {}
            for modality in ("video", "audio"):
                for scale in ("fine", "coarse"):
                    emit = series.get(f"latency.emit.{n}.{modality}.{scale}")
                    if emit is None:
                        continue
                    entry = {"emit": _pct(emit)}
                    if bus is not None:
                        pub = series.get(f"latency.publish.{bus.name}.{n}.{modality}.{scale}")
                        entry["publish"] = _pct(pub)
                    lat[f"{modality}/{scale}"] = entry
            drops = {k: h.dropped for k, h in (("video", src.video), ("audio", src.audio)) if h is not None}
            sink_drops = {o.name: sum(v for (stream, _), v in o.sink.stats.dropped_by.items() if stream == n)
                          + sum(v for (stream, _), v in o.sink.stats.failed_by.items() if stream == n)
                          for o in self.outlets.active}
            st = src.stats
            sources[n] = {
                "state": st.state.value, "fps": rates.get((n, "video")), "audio_blocks_per_s": rates.get((n, "audio")),
                "latency_ms": lat, "drift_ppm": gauges.get(f"drift_ppm.{n}"),
                "slewing_ms": gauges.get(f"clock_slewing_ms.{n}"), "settled_ms": gauges.get(f"clock_settled_ms.{n}"),
                "dropped": {"capture": drops, "sinks": sink_drops},
                "queue": {k: h.depth for k, h in (("video", src.video), ("audio", src.audio)) if h is not None},
                "reconnects": st.reconnects, "stalls": st.stalls, "errors": st.errors, "last_error": st.last_error,
            }
        groups = self.stats_groups()
        sinks = {}
        for o in self.outlets.active:
            total = self.outlets.totals(o.name)
            sinks[o.name] = {"state": o.sink.stats.state, "written": total["written"], "dropped": total["dropped"],
                             "failed": total["failed"], "queue_depth": o.channel.depth,
                             "last_error": o.sink.stats.last_error}
        doc: dict[str, Any] = {
            "run_id": self.run_id, "time_unix_ns": time.time_ns(),
            "stats_interval_s": self.cfg.bus_settings().stats_interval_s,
            "uptime_s": round((now - self.started_ns) / 1e9, 3), "sources": sources, "groups": groups,
            "sinks": sinks,
        }
        if bus is not None:
            doc["bus"] = bus.bus_state(self.channels.get(bus.name))  # type: ignore[attr-defined]
        return doc


def _path_of(sink: Sink) -> str | None:
    cfg = getattr(sink, "cfg", None)
    return str(getattr(cfg, "path", "")) or None


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error a task group collected, unnested (its one line is the one to read)."""
    err: BaseException = group
    while isinstance(err, BaseExceptionGroup):
        err = err.exceptions[0]
    return err


def _sink_changes(p: ReloadPlan) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(reopened, closed, opened) sink names, the bus ("mqtt") among them."""
    bus = frozenset({"mqtt"})
    return (p.reopen_sinks | (bus if p.bus == "restart" else frozenset()),
            p.close_sinks | (bus if p.bus == "stop" else frozenset()),
            p.open_sinks | (bus if p.bus == "start" else frozenset()))


def _sink_path(cfg: LivetokConfig, name: str) -> str | None:
    sink = cfg.file_sinks().get(name)
    return str(sink.path) if sink is not None else None


class _Rates:
    """Captures tokenized per second per (source, modality), between two stats documents."""

    def __init__(self) -> None:
        self._last_ns = 0
        self._last: Counter[tuple[str, str]] = Counter()

    def update(self, now_ns: int, books: Books) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        if self._last_ns:
            dt = (now_ns - self._last_ns) / 1e9
            if dt > 0:
                out = {k: round((v - self._last[k]) / dt, 2) for k, v in books.tokenized.items()}
        self._last_ns, self._last = now_ns, Counter(books.tokenized)
        return out


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and v != v) else v


def _pct(s: dict[str, Any] | None) -> dict[str, float | None] | None:
    if s is None or not s.get("n"):
        return None
    return {"p50": _num(s["p50"]), "p95": _num(s["p95"]), "p99": _num(s["p99"])}


async def run(cfg: LivetokConfig, toks: Tokenizers, sinks: list[Sink], stop: StopControl,
              duration_s: float | None, run_id: str = "", notifier: Notifier | None = None,
              reconfigure: Callable[[], LivetokConfig] | None = None) -> RunReport:
    async with Daemon(cfg, toks, sinks, stop, run_id, notifier, reconfigure) as daemon:
        return await daemon.run(duration_s)
