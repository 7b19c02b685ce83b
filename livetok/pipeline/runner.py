"""The data path of ``livetok run``: sources -> engine (its worker threads) -> sinks (a task and a
channel each), on the event loop.

:class:`Pipeline` runs, inside the daemon's one task group, these named tasks:

* ``video-batcher`` takes frames from every camera's hand-over queue and gives the worker one batch;
* ``audio-feeder`` gives the worker the audio blocks;
* ``aligner-tick`` asks the worker every ``TICK_S`` for the steps that are complete or late;
* ``sink:NAME`` per sink: takes batches from the sink's channel and writes them;

and whatever loops the daemon adds beside them (``metrics``). Capture runs in the sources' threads;
tokenization, alignment, wire stamping and encoding in the worker threads
(:mod:`~livetok.pipeline.datapath`); the event loop only moves messages: it fans each one out to
every sink's bounded channel, so a slow or failing sink fills only its own channel. Metrics are
written on the loop only, and read once per interval as a :class:`~livetok.pipeline.snapshot.RunSnapshot`.

Stopping (:meth:`Pipeline.shutdown`): producers finish the batch they hold, sources stop, what they
captured is drained through the engine, the engine is flushed, the channels are closed and the
sinks write what they hold and close — each stage within one shutdown deadline (shortened by a
second signal). Whatever the deadline cuts off is counted: the run's books
(:mod:`~livetok.pipeline.books`) balance exactly, per source and modality and per sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from livetok.pipeline.books import RunReport, accounting, capture_books, sink_report
from livetok.pipeline.reload import Reconfigurable
from livetok.pipeline.snapshot import RunSnapshot, SeriesSnap, SinkSnap, SourceSnap, run_dropped, run_totals
from livetok.pipeline.sources import RunningSource, build_sources
from livetok.runtime.stopping import Deadline
from livetok.sinks import Sink
from livetok.streams.types import SourceState

SHUTDOWN_S = 10.0
STOP_ON_ERROR_S = 3.0  # stopping capture after the run failed (s)


class Pipeline(Reconfigurable):
    """Async context manager: the engine's worker, the sources, and the run over already opened sinks.
    Entering warms the tokenizers up and starts capture; leaving stops whatever still captures (a
    run that failed) and lets the worker threads go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started = False
        self.started_ns = time.monotonic_ns()
        self._aligner_stats: dict[str, dict[str, int]] = {}  # the worker's, copied by refresh()

    @property
    def sinks(self) -> list[Sink]:
        """The sinks in the fan-out now."""
        return [o.sink for o in self.outlets.active]

    @property
    def retired_sinks(self) -> list[Sink]:
        """Sinks a reload took out of the fan-out (closed, still in the books)."""
        return [o.sink for o in self.outlets.history if o.left is not None and o not in self.outlets.active]

    # -- start ------------------------------------------------------------------------------------
    async def __aenter__(self) -> Pipeline:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        """Warm-up, then capture."""
        if self.toks.video.device.type == "cpu":
            # Capture threads need a core: OpenMP threads that lose theirs stall every torch call
            # at its barrier (bench/bench_video.py measured 38 -> 313 ms median per batch).
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
        for s in self.first_sinks:
            self.outlets.join(s, self.books.emitted)
        sources = build_sources(self.cfg, self.toks.cfg.video)
        await self.worker.run(self.toks.warm_up)
        # What start-up made (torch's modules, the codebooks, the sources' buffers: some 270 000 objects)
        # is never garbage. Frozen out of the collector's reach, a full collection scans only what the
        # run makes: it took up to 77 ms before, holding the GIL, and every thread stalled behind it.
        gc.collect()
        gc.freeze()
        if not self.stop.requested:  # a signal during start-up: nothing was captured, nothing to stop
            self._start_sources(sources)
            self.started = True
        else:
            self.sources = sources

    async def __aexit__(self, *exc: object) -> None:
        """Whatever happened: capture threads stopped (a run that failed left them running), the
        worker threads let go."""
        try:
            running = [s for s in self.sources if s.thread.alive]
            if running:
                await self._stop_sources(running, Deadline(STOP_ON_ERROR_S, self.stop))
        finally:
            self.stoppers.close()
            self.worker.close()
            self.video_encoder.close()
            gc.unfreeze()  # a process that runs again (tests, an embedding program) collects this run's objects

    # -- the run ----------------------------------------------------------------------------------
    def start_tasks(self, tg: asyncio.TaskGroup,
                    loops: dict[str, Callable[[], Awaitable[bool]]] | None = None) -> list[asyncio.Task[None]]:
        """The producers, the caller's ``loops`` beside them (run like producers: until stopping, an
        error said once and survived), and a task per sink. Returns the producers."""
        self._tg = tg
        named = {"video-batcher": self.video_once, "audio-feeder": self.audio_once, "aligner-tick": self.tick_once,
                 **(loops or {})}
        producers = [tg.create_task(self.loop(name, once), name=name) for name, once in named.items()]
        for outlet in self.outlets.active:
            self._start_sink(outlet)
        return producers

    def ended(self) -> bool:
        """Every source has ended (files played to their end; never a camera)."""
        return bool(self.sources) and all(s.finished for s in self.sources)

    async def shutdown(self, producers: list[asyncio.Task[None]]) -> None:
        """Producers, sources, the engine's drain, the sinks: each stage within one deadline."""
        deadline = Deadline(SHUTDOWN_S, self.stop)
        # Capture ends first, while the producers still take what arrives: stopping them first left the
        # hand-overs to overflow while the sources' threads were being joined (frames dropped at every stop).
        await self._stop_sources(self.sources, deadline)
        self.stopping.set()
        self.video_ready.set()
        self.audio_ready.set()
        await self._join(producers, deadline)
        await self._final_drain(deadline)
        for o in self.outlets.active:
            o.channel.close()
        # every sink task still running: the active ones, and any a reload is still retiring
        running = [o.task for o in self.outlets.history if o.task is not None and not o.task.done()]
        await self._join(running, deadline, at_least_s=0.5, outlets=self.outlets.history)
        self._tg = None

    def finish(self) -> RunReport:
        """The report: metrics, the books, each sink's line (as the sinks are now)."""
        self._refresh_gauges()
        self.report.metrics = self.metrics.snapshot()
        self.report.accounting = accounting(self.retired_sources + self.sources, self.books, self.outlets)
        self.report.sinks = {name: sink_report(self.outlets, outs)
                             for name, outs in self.outlets.incarnations().items()}
        return self.report

    async def close_own_sinks(self) -> None:
        """Close the sinks a reload opened (the caller closes those it gave; closing twice is harmless)."""
        for o in self.outlets.history:
            if o.opened_here:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(o.sink.__aexit__(None, None, None), 5.0)

    def stuck_for_s(self) -> float:
        """How long the worker's or the video encoder's running job has run (s); the watchdog reads it."""
        return max(self.worker.stuck_for_s(), self.video_encoder.stuck_for_s())

    def post_stats(self, doc: dict[str, Any]) -> None:
        """The latest stats document, to every sink in the fan-out (the bus publishes it)."""
        for o in self.outlets.active:
            o.channel.post_stats(doc)

    # -- metrics and snapshots --------------------------------------------------------------------
    async def refresh(self) -> None:
        """The gauges from the sources and sinks, the clocks and the aligners from the worker."""
        self._refresh_gauges()
        for name, c in (await self.worker.run(self.engine.clocks)).items():
            self.metrics.set(("drift_ppm", name), c.drift_ppm)
            self.metrics.set(("clock_slewing_ms", name), round(c.slewing_ns / 1e6, 3))
            if c.settled_after_ms is not None:
                self.metrics.set(("clock_settled_ms", name), c.settled_after_ms)
        self._aligner_stats = await self.worker.run(self.engine.aligner_stats)

    def snapshot(self, series: bool = True) -> RunSnapshot:
        """The run now (as of the last :meth:`refresh` for clocks and aligners). ``series=False``:
        without the metrics (series, gauges, counters) and the capture books: cheap enough to poll."""
        now = time.monotonic_ns()
        active = self.outlets.active
        sinks = []
        for o in active:
            t = self.outlets.totals(o.name)
            st = o.sink.stats
            sinks.append(SinkSnap(o.name, o.sink.latency_kind, st.state, st.last_error, t["written"], t["dropped"],
                                  t["failed"], o.channel.depth, o.sink.gauges(), o.sink.state_doc(o.channel)))
        snap = RunSnapshot(
            self.run_id, now, time.time_ns(), round((now - self.started_ns) / 1e9, 3),
            tuple(SourceSnap.of(s, active, self._earlier(s.name)) for s in self.sources), tuple(sinks),
            dict(self._aligner_stats))
        if not series:
            return snap
        m = self.metrics
        captures, _ = capture_books(self.retired_sources + self.sources, self.books, final=False)
        return dataclasses.replace(
            snap, captures=captures, tokenized=Counter(self.books.tokenized), emitted=sum(self.books.emitted.values()),
            series={k: SeriesSnap.of(s) for k, s in m.series.items()}, gauges=dict(m.gauges),
            counters=dict(m.counters))

    def _earlier(self, name: str) -> list[RunningSource]:
        """The run's earlier incarnations of source ``name``: stopped by a reload that restarted it."""
        return [r for r in self.retired_sources if r.name == name]

    def _refresh_gauges(self) -> None:
        m = self.metrics
        for s in self.sources:
            for kind, h in (("video", s.video), ("audio", s.audio)):
                if h is not None:
                    m.set(("queue_depth", s.name, kind), h.depth)
                    m.set(("queue_max_depth", s.name, kind), h.max_depth)
            for kind, n in run_dropped(s, self._earlier(s.name)).items():
                m.set(("dropped", s.name, kind), n)
            # Every counter the capture thread keeps, so a new one is published without touching
            # this list; the state as its index in SourceState; ``extra`` counters by their names;
            # counts over the run (a source a reload restarted goes on from its earlier counts).
            stats = run_totals(s.stats, [e.stats for e in self._earlier(s.name)])
            for f in dataclasses.fields(stats):
                value = getattr(stats, f.name)
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
