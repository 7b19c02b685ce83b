"""The data path's state and its moving parts: captures through the engine, messages out to the sinks.

* the **worker's side**: the engine (tokenization, alignment) runs in one blocking lane, the batched
  video encoder in another; what a call produced is stamped and encoded in the same job
  (:class:`~livetok.pipeline.outbound.WireStamper`) and comes back as :class:`Work`;
* the **fan-out** (:meth:`DataPath._fan_out`, on the loop): every message into the bounded channel of
  every sink that takes it, counted in the books; metrics observed on the loop only;
* the **producers**: the video batcher (frames of every camera, round-robin, one batch per call),
  the audio feeder, the aligner's tick; each booked whatever happens to its batch;
* each **sink's task**: ``Sink.run`` on its channel, started again after an unexpected error.

:class:`~livetok.pipeline.reload.Reconfigurable` adds the reload's changes and
:class:`~livetok.pipeline.runner.Pipeline` the run's life (start, shutdown, snapshots).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from livetok.config import LivetokConfig
from livetok.pipeline.books import Books, RunReport
from livetok.pipeline.engine import Engine
from livetok.pipeline.metrics import Metrics
from livetok.pipeline.outbound import WireStamper
from livetok.pipeline.outlets import Outlet, Outlets
from livetok.pipeline.results import EngineOutput
from livetok.pipeline.shedding import ShedPolicy
from livetok.pipeline.sources import RunningSource
from livetok.runtime.lane import BlockingLane, LanePool
from livetok.runtime.log import get as get_logger
from livetok.runtime.stopping import Deadline, StopControl
from livetok.sinks import Outgoing, Sink
from livetok.streams.handoff import Handoff
from livetok.streams.types import AudioCapture, VideoCapture
from livetok.tokenizers import Tokenizers
from livetok.wire import Flag, TokenPacket

_log = get_logger("daemon")
TICK_S = 0.02
# The video tokenizer's thread yields the CPU to capture, audio and the loop: a frame is 5-10 ms of
# work that can wait a little, an audio token's latency budget is its 15 ms window lookahead.
VIDEO_NICE = 5
STOPPERS = 8  # sources stopped side by side (each stop waits up to ~2 s for its thread)
_UNSET: Any = object()  # _process: no codes given


@dataclass
class Work:
    """What the worker made of one call: the messages for the sinks and the engine's side results."""

    out: list[Outgoing]
    engine: EngineOutput


T = TypeVar("T")


class DataPath:
    """The sources, the engine's lanes, the sinks' outlets, the books and the metrics (module doc)."""

    def __init__(self, cfg: LivetokConfig, toks: Tokenizers, sinks: list[Sink], stop: StopControl,
                 run_id: str = "") -> None:
        self.cfg = cfg
        self.run_id = run_id
        self.toks = toks
        self.stop = stop
        self.sources: list[RunningSource] = []
        self.retired_sources: list[RunningSource] = []  # stopped by a reload: still in the books
        self._video_next = 0  # the hand-over the next video batch begins with (take_round_robin)
        self._video_drops = 0  # the hand-overs' dropped frames when the last batch was planned (_plan)
        self.outlets = Outlets()  # the sinks in the fan-out, and every one since the start (the books)
        self.first_sinks = sinks
        self.metrics = Metrics()
        self.books = Books()
        self.report = RunReport()
        self.stoppers = LanePool("livetok-stop", STOPPERS)  # stops sources side by side (blocking joins)
        self.worker = BlockingLane("livetok-tokenizer")  # the engine: every call that touches its state
        # The batched video tokenizer call is pure: it runs here, so audio never waits behind a batch of
        # frames in the engine's thread (measured: audio fine p95 +5 ms when both shared one thread).
        self.video_encoder = BlockingLane("livetok-video", nice=VIDEO_NICE)
        self.engine = Engine(cfg, toks)
        self.fine_levels = toks.video.quantizers["fine"].levels
        self.shed = ShedPolicy(self.fine_levels, min_levels=max(1, self.fine_levels // 2))
        self._builtin_video: tuple[LivetokConfig, frozenset[str]] | None = None
        self.stamper = WireStamper()
        self.video_ready = asyncio.Event()
        self.audio_ready = asyncio.Event()
        # Who takes video frames: the batch loop, or a reload draining the sources it stops. The drain
        # waits for the loop's batches in flight, so a stopped source's frames go out in their order.
        self.video_turn = asyncio.Lock()
        self.video_yield = False  # a reload waits for the turn: the batch loop lets go after its batch
        self.stopping = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._said: set[str] = set()

    def error(self, key: str, line: str) -> None:
        """An unexpected error: counted in ``key``, said once; the daemon goes on."""
        self.metrics.count(key)
        if key not in self._said:
            self._said.add(key)
            _log.error("%s (counted in %s; the daemon goes on)", line, key)

    # -- tasks ------------------------------------------------------------------------------------
    async def loop(self, name: str, once: Callable[[], Awaitable[bool]]) -> None:
        """A producer: ``once`` until stopping; an unexpected error is said once, counted, survived."""
        while not self.stopping.is_set():
            try:
                if not await once():
                    return
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the daemon's promise: keep running, but never silently
                self.error(f"errors.{name}", f"unexpected error in {name}: {err!r}")
                await asyncio.sleep(0.1)

    def _start_sink(self, outlet: Outlet) -> None:
        assert self._tg is not None
        outlet.task = self._tg.create_task(self._sink(outlet), name=f"sink:{outlet.name}")

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
                self.error(f"errors.sink.{sink.name}", f"unexpected error in sink {sink.name}: {err!r}")
                if channel.closed and not channel.depth:
                    return
                await asyncio.sleep(1.0)

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

    # -- producers --------------------------------------------------------------------------------
    def _video_handoffs(self) -> list[tuple[RunningSource, Handoff[VideoCapture]]]:
        return [(s, s.video) for s in self.sources if s.video is not None]

    async def video_once(self) -> bool:
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
        async with self.video_turn:
            await self._video_batches(batch_size)
        return True

    async def _video_batches(self, batch_size: int) -> None:
        """Batches while frames keep coming (or until a reload wants the turn)."""
        # Two batches in flight: the next batch's codes are computed (the video lane) while the last
        # one's packets are made in the engine's lane and fanned out; packets still leave in batch order.
        rest: asyncio.Task[None] | None = None
        try:
            while not self.video_yield:
                handoffs = self._video_handoffs()  # each batch: a source a reload started joins the next one
                backlog = sum(h.depth for _, h in handoffs)
                limit, catch_up = self.shed.batch_limit(self._fill(handoffs), batch_size, backlog)
                batch = self._take_video(handoffs, limit)
                if not batch:
                    break
                plan = self._plan(batch, handoffs, coarse_only=catch_up)
                codes = await self._encode_video(batch, plan, greedy=catch_up)
                if rest is not None:
                    await rest
                    rest = None
                if codes is not None:
                    rest = asyncio.create_task(self._process("video", batch, plan=plan, codes=codes[0],
                                                             greedy=catch_up), name="video-packets")
                if self.stopping.is_set():
                    break  # what is left goes through the final drain
        finally:
            if rest is not None:
                await rest

    async def _encode_video(self, caps: list[VideoCapture], plan: list[int], greedy: bool) -> tuple[Any] | None:
        """The batch's codes from the video lane, as a 1-tuple (the codes may be None: no built-in
        frames); None when the call failed (booked as failed, said once). ``greedy``: a catch-up batch,
        encoded without the beam (:meth:`ShedPolicy.batch_limit`)."""
        try:
            return (await self.video_encoder.run(self.engine.encode, caps, plan, greedy),)
        except asyncio.CancelledError:
            self.books.discarded.update(Counter((c.source, "video") for c in caps))
            raise
        except Exception as err:
            self.books.failed.update(Counter((c.source, "video") for c in caps))
            self.error("errors.engine.video", f"error while tokenizing video: {err!r}")
            return None

    @staticmethod
    def _fill(handoffs: list[tuple[RunningSource, Handoff[VideoCapture]]]) -> float:
        """How full the fullest video hand-over is (0-1)."""
        return max((h.depth / h.capacity for _, h in handoffs), default=0.0)

    def _plan(self, batch: list[VideoCapture], handoffs: list[tuple[RunningSource, Handoff[VideoCapture]]],
              coarse_only: bool = False) -> list[int]:
        """Fine levels per frame of ``batch`` (0: shed), from how full the fullest hand-over is now
        (:mod:`livetok.pipeline.shedding`); ``coarse_only``: a catch-up batch (no fine work at all);
        frames the built-in kind does not tokenize: 0 (no work)."""
        fill = 1.0 if coarse_only else self._fill(handoffs)
        drops = sum(h.dropped for _, h in handoffs)  # whole frames the hand-overs dropped, ever
        dropped, self._video_drops = drops > self._video_drops, drops
        builtin = self._builtin()
        idx = [i for i, c in enumerate(batch) if c.source in builtin]
        prios = {s.name: s.priority for s in self.cfg.sources}
        plan = [0] * len(batch)
        plan_of = self.shed.plan([batch[i].source for i in idx], prios, fill, dropped, catch_up=coarse_only)
        for i, n in zip(idx, plan_of, strict=True):
            plan[i] = n
        return plan

    def _builtin(self) -> frozenset[str]:
        """The sources whose video the built-in kind (patch-rvq) tokenizes, for the current config."""
        if self._builtin_video is None or self._builtin_video[0] is not self.cfg:
            names = frozenset(s.name for s in self.cfg.sources
                              if any(e.kind == "patch-rvq" for e in self.cfg.tokenizers_of(s.name, "video")))
            self._builtin_video = (self.cfg, names)
        return self._builtin_video[1]

    def _take_video(self, handoffs: list[tuple[RunningSource, Handoff[VideoCapture]]],
                    limit: int) -> list[VideoCapture]:
        """Up to ``limit`` frames, round-robin over sources so a fast camera cannot starve others."""
        batch, self._video_next = take_round_robin([h for _, h in handoffs], limit, self._video_next)
        return batch

    def _lost_video(self) -> frozenset[str]:
        return frozenset(s.name for s, h in self._video_handoffs() if h.take_dropped())

    async def audio_once(self) -> bool:
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

    async def tick_once(self) -> bool:
        await asyncio.sleep(TICK_S)
        if self.stopping.is_set():
            return False
        now = time.monotonic_ns()
        self._fan_out(await self.worker.run(self._work, self.engine.tick, now))
        return True

    async def _drain(self, sources: list[RunningSource], deadline: Deadline) -> None:
        """What ``sources`` captured, through the engine (the shutdown and a reload do this)."""
        batch_size = self.toks.cfg.video.batch_size
        handoffs = [(s, s.video) for s in sources if s.video is not None]
        while batch := self._take_video(handoffs, batch_size):
            await self._process("video", batch, deadline, self._plan(batch, handoffs))
        blocks = [b for s in sources if s.audio is not None for b in s.audio.drain()]
        if blocks:
            await self._process("audio", blocks, deadline)

    async def _final_drain(self, deadline: Deadline) -> None:
        """What the sources captured before they stopped, through the engine; then the engine's flush."""
        try:
            await self._drain(self.sources, deadline)
            self._fan_out(await asyncio.wait_for(self.worker.run(self._work, self.engine.flush),
                                                 max(0.001, deadline.left())))
        except TimeoutError:
            self.error("errors.shutdown", "shutdown deadline passed before the engine drained; the rest is "
                       "counted as dropped")

    # -- the worker's side: engine, then wire stamping and encoding, in one job --------------------
    def _work(self, fn: Callable[..., EngineOutput], *args: Any) -> Work:
        eo = fn(*args)
        st = self.stamper
        return Work([st.outgoing_packet(hp) for hp in eo.packets] + [st.outgoing_step(hs) for hs in eo.steps], eo)

    async def _process(self, kind: str, caps: list[VideoCapture] | list[AudioCapture],
                       deadline: Deadline | None = None, plan: list[int] | None = None,
                       codes: Any = _UNSET, greedy: bool = False) -> None:
        """One batch through the worker, booked whatever happens to it. ``plan``: video, the fine
        levels per frame (:meth:`_plan`); ``codes``: video, what :meth:`_encode_video` made of it
        (else the video lane is called first); ``greedy``: they were encoded without the beam."""
        keys = Counter((c.source, kind) for c in caps)

        async def job() -> Work:
            if kind == "video":
                made = await self.video_encoder.run(self.engine.encode, caps, plan) if codes is _UNSET else codes
                return await self.worker.run(self._work, self.engine.on_video, caps, self._lost_video(), made)
            return await self.worker.run(self._work, self.engine.on_audio, caps)

        try:
            work = await (job() if deadline is None else asyncio.wait_for(job(), deadline.left()))
        except (TimeoutError, asyncio.CancelledError):
            self.books.discarded.update(keys)  # its output, if it ever comes, is not waited for
            raise
        except Exception as err:
            self.books.failed.update(keys)
            self.error(f"errors.engine.{kind}", f"error while tokenizing {kind}: {err!r}")
            return
        self.books.tokenized.update(keys)
        if plan is not None:
            builtin = self._builtin()
            # a catch-up batch's coarse codes are degraded where the coarse beam searches (as flagged)
            coarse_degraded = greedy and self.toks.video.quantizers["coarse"].searches
            for i, levels in enumerate(plan):
                if caps[i].source in builtin:
                    self.books.book_scales(caps[i].source, levels, self.fine_levels, coarse_degraded)
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
                m.count(("packets", item.stream, item.modality, item.scale))
                if isinstance(item.wire, TokenPacket) and item.wire.flags & Flag.GAP:
                    m.count(("gap_packets", item.stream, item.modality, item.scale))
            for o in self.outlets.active:
                if o.sink.accepts(item):
                    o.sink.offer(o.channel, item)
        for group, skew in work.engine.skews:
            m.observe(("skew", group), skew)
        for source, modality in work.engine.gaps:
            m.count(("gaps", source, modality))
        for tokenizer, line in work.engine.model_errors:
            # the stream's next packet is flagged GAP; the daemon and every other stream go on
            self.error(f"errors.model.{tokenizer}", f"tokenizer {tokenizer!r}: the model failed: {line}")
            m.count(("model_errors", tokenizer))


def take_round_robin(handoffs: list[Handoff[T]], limit: int, start: int) -> tuple[list[T], int]:
    """Up to ``limit`` items, one per hand-over in turn, beginning with hand-over ``start`` (mod
    their count); and where the next call begins: after the last one served. Beginning at the first
    every time starved the last sources whenever there were more of them than ``limit``."""
    n = len(handoffs)
    if not n:
        return [], 0
    start %= n
    batch: list[T] = []
    last = start - 1
    while len(batch) < limit:
        took = False
        for i in range(n):
            if len(batch) >= limit:
                break
            k = (start + i) % n
            if (item := handoffs[k].get_nowait()) is not None:
                batch.append(item)
                took, last = True, k
        if not took:
            break
    return batch, (last + 1) % n
