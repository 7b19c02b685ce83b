"""``livetok run``: sources -> clock/alignment -> tokenizers -> sinks, in one asyncio process.

The daemon is one task group of named tasks on uvloop:

* ``video-batcher`` waits for frames from any source and hands a batch to the tokenizer worker;
* ``audio-feeder`` hands audio blocks to the worker;
* ``aligner-tick`` asks the worker every ``TICK`` to emit complete or late steps;
* ``metrics`` refreshes queue, drop and source gauges;
* ``stopper`` ends the group on SIGINT/SIGTERM or after ``--duration``.

Capture runs in the sources' own threads; tokenization, alignment and sink writes run in one
worker thread (the Engine). On exit the sources are stopped, what they had captured is drained
into the Engine, its streams and aligners are flushed, and the sinks closed, under a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from livetok.config import LivetokConfig
from livetok.daemon.engine import Engine
from livetok.daemon.metrics import Metrics
from livetok.daemon.sinks import Sink, open_sink
from livetok.daemon.sources import RunningSource, build_sources
from livetok.streams.types import AudioCapture, SourceState, VideoCapture
from livetok.tokenizers import Tokenizers

TICK_S = 0.02
METRICS_S = 1.0
SHUTDOWN_S = 10.0
T = TypeVar("T")


@dataclass
class RunReport:
    """What a run did, for the command line and the tests."""

    steps: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    stopped_by: str = ""


class Daemon:
    """Async context manager owning the sources, the worker thread, the engine and the sinks."""

    def __init__(self, cfg: LivetokConfig, toks: Tokenizers) -> None:
        if toks.video.device.type == "cpu":
            # Capture threads need a core: OpenMP threads that lose theirs stall every torch call
            # at its barrier (bench/bench_video.py measured 38 -> 313 ms median per batch).
            torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
        self.cfg = cfg
        self.toks = toks
        self.metrics = Metrics()
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="livetok-tokenizer")
        self.sinks: list[Sink] = []
        self.engine: Engine | None = None
        self.sources: list[RunningSource] = []
        self.video_ready = asyncio.Event()
        self.audio_ready = asyncio.Event()
        self.stop = asyncio.Event()
        self.report = RunReport()

    async def __aenter__(self) -> Daemon:
        loop = asyncio.get_running_loop()
        try:
            self.sinks = [open_sink(s) for s in self.cfg.sinks]
            self.engine = Engine(self.cfg, self.toks, self.sinks, self.metrics)
            self.sources = build_sources(self.cfg, self.toks.cfg.video)
            for s in self.sources:
                if s.video is not None:
                    s.video.bind(loop, self.video_ready)
                if s.audio is not None:
                    s.audio.bind(loop, self.audio_ready)
            await self._work(self.toks.warm_up)
            for s in self.sources:
                s.start()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self._close())

    async def _work(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    async def run(self, duration_s: float | None) -> RunReport:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._signalled, sig)
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._video_batcher(), name="video-batcher"),
                    tg.create_task(self._audio_feeder(), name="audio-feeder"),
                    tg.create_task(self._ticker(), name="aligner-tick"),
                    tg.create_task(self._metrics_loop(), name="metrics"),
                ]
                await self._wait_stop(duration_s)
                for t in tasks:
                    t.cancel()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        return self.report

    def _signalled(self, sig: signal.Signals) -> None:
        self.report.stopped_by = sig.name
        self.stop.set()

    async def _wait_stop(self, duration_s: float | None) -> None:
        if duration_s is None:
            await self.stop.wait()
            return
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=duration_s)
        except TimeoutError:
            self.report.stopped_by = "duration"

    async def _video_batcher(self) -> None:
        batch_size = self.toks.cfg.video.batch_size
        wait_s = self.cfg.queues.batch_wait_ms / 1000
        while True:
            await self.video_ready.wait()
            self.video_ready.clear()
            if wait_s and self._video_depth() < batch_size:
                await asyncio.sleep(wait_s)  # let other cameras' frames join this batch
            while batch := self._take_video(batch_size):
                assert self.engine is not None
                await self._work(self._guarded, "video", self.engine.on_video, batch, self._video_drops())

    def _video_depth(self) -> int:
        return sum(s.video.depth for s in self.sources if s.video is not None)

    def _video_drops(self) -> frozenset[str]:
        return frozenset(s.name for s in self.sources if s.video is not None and s.video.take_dropped())

    def _take_video(self, limit: int) -> list[VideoCapture]:
        """Up to ``limit`` frames, round-robin over sources so a fast camera cannot starve others."""
        batch: list[VideoCapture] = []
        handoffs = [s.video for s in self.sources if s.video is not None]
        while len(batch) < limit:
            took = False
            for h in handoffs:
                if len(batch) < limit and (item := h.get_nowait()) is not None:
                    batch.append(item)
                    took = True
            if not took:
                break
        return batch

    async def _audio_feeder(self) -> None:
        while True:
            await self.audio_ready.wait()
            self.audio_ready.clear()
            blocks = self._take_audio()
            if blocks:
                await self._work(self._guarded, "audio", self._feed_audio, blocks)

    def _guarded(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` in the worker; an unexpected error in one batch is counted and reported on
        stderr (the first of each kind), and the daemon goes on: a bad frame must not end it."""
        try:
            fn(*args)
        except Exception as err:  # the daemon's promise: keep running, but never silently
            key = f"errors.engine.{what}"
            if key not in self.metrics.counters:
                print(f"livetok: error while tokenizing {what} (counted in {key}): {err!r}", file=sys.stderr)
            self.metrics.count(key)

    def _take_audio(self) -> list[AudioCapture]:
        out: list[AudioCapture] = []
        for s in self.sources:
            if s.audio is not None:
                out += s.audio.drain()
        return out

    def _feed_audio(self, blocks: list[AudioCapture]) -> None:
        assert self.engine is not None
        for b in blocks:
            self.engine.on_audio(b)

    async def _ticker(self) -> None:
        assert self.engine is not None
        while True:
            await asyncio.sleep(TICK_S)
            steps = await self._work(self.engine.tick)
            self.report.steps += len(steps)

    async def _metrics_loop(self) -> None:
        while True:
            self._refresh_gauges()
            await asyncio.sleep(METRICS_S)

    def _refresh_gauges(self) -> None:
        m = self.metrics
        for s in self.sources:
            for kind, h in (("video", s.video), ("audio", s.audio)):
                if h is not None:
                    m.set(f"queue_depth.{s.name}.{kind}", h.depth)
                    m.set(f"queue_max_depth.{s.name}.{kind}", h.max_depth)
                    m.set(f"dropped.{s.name}.{kind}", h.dropped)
            # Every numeric counter the capture thread keeps, so a new one is published without
            # touching this list; the state as its index in SourceState.
            for f in dataclasses.fields(s.stats):
                value = getattr(s.stats, f.name)
                if isinstance(value, SourceState):
                    m.set(f"source.{s.name}.{f.name}", list(SourceState).index(value))
                elif isinstance(value, int | float):
                    m.set(f"source.{s.name}.{f.name}", value)

    async def _close(self) -> None:
        """Stop sources, drain, flush and close: each stage bounded by the shutdown deadline."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + SHUTDOWN_S
        if self.sources:
            stoppers = [loop.run_in_executor(None, s.stop) for s in self.sources]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*stoppers, return_exceptions=True), max(0.1, deadline - time.monotonic()))
        if self.engine is not None:
            engine = self.engine

            def finish() -> int:
                for s in self.sources:
                    if s.video is not None:
                        while batch := s.video.drain(self.toks.cfg.video.batch_size):
                            engine.on_video(batch)
                    if s.audio is not None:
                        for b in s.audio.drain():
                            engine.on_audio(b)
                return len(engine.tick()) + len(engine.flush())

            with contextlib.suppress(TimeoutError):
                self.report.steps += await asyncio.wait_for(
                    loop.run_in_executor(self.worker, finish), max(0.1, deadline - time.monotonic()))
        self._refresh_gauges()
        self.report.metrics = self.metrics.snapshot()
        for sink in self.sinks:
            await loop.run_in_executor(self.worker, sink.close)
        self.worker.shutdown(wait=False, cancel_futures=True)


async def run(cfg: LivetokConfig, toks: Tokenizers, duration_s: float | None) -> RunReport:
    async with Daemon(cfg, toks) as daemon:
        return await daemon.run(duration_s)
