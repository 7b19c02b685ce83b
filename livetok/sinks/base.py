"""The sinks' protocol: an async context manager that writes what its channel gives (``run``).

The runner opens every sink before capture starts (a sink that cannot work at all — a path that is
not a token file, a file another daemon holds — stops the run there, with one line), then runs each
sink's :meth:`Sink.run` as a task that takes batches from its :class:`~livetok.sinks.channel.SinkChannel`.
A sink never raises out of ``run``: a failed write is reported in one line, its messages counted as
``failed``, and the sink retries with capped backoff, while its channel holds (and, when full,
drops and counts) what keeps coming. A slow or failing sink fills only its own channel.

Books per sink (:class:`SinkStats`): every message the runner offered is, at the end, exactly one of
``written``, ``dropped`` (the channel was full, or still held it at the shutdown deadline) or
``failed`` (a write that did not succeed) — per (stream, modality) too, for the run's accounting.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from livetok.runtime.backoff import Backoff, BackoffPolicy
from livetok.runtime.log import NOTICE
from livetok.runtime.log import get as get_logger
from livetok.sinks.channel import SinkChannel
from livetok.sinks.message import STEP, Outgoing

if TYPE_CHECKING:
    from livetok.config import LivetokConfig
    from livetok.vocab import Vocabulary

_log = get_logger("sink")
BATCH = 256  # messages taken from the channel per write

__all__ = ["BATCH", "STEP", "Outgoing", "Sink", "SinkStats"]


@dataclass
class SinkStats:
    """One sink's books (event loop only). ``offered = written + dropped + failed + queued``."""

    offered: int = 0
    written: int = 0
    dropped: int = 0
    failed: int = 0
    errors: int = 0  # failed attempts (each may fail a batch of messages)
    reopens: int = 0
    bytes_written: int = 0
    state: str = "starting"  # starting | ok | failing | closed
    last_error: str = ""
    # capture-to-write (file) or capture-to-publish (bus) of the messages just handled, for metrics
    latencies: list[tuple[Outgoing, int]] = field(default_factory=list)
    offered_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    written_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    dropped_by: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed_by: Counter[tuple[str, str]] = field(default_factory=Counter)

    def count(self, what: str, items: list[Outgoing]) -> None:
        """Book ``items`` as ``written``, ``dropped`` or ``failed``."""
        setattr(self, what, getattr(self, what) + len(items))
        by: Counter[tuple[str, str]] = getattr(self, f"{what}_by")
        for it in items:
            by[it.key] += 1


class Sink(abc.ABC):
    """A destination. Subclasses open in ``__aenter__`` (raising a LivetokError when they cannot
    work at all), write in :meth:`write_batch`, close in ``__aexit__``."""

    def __init__(self, name: str, queue_messages: int = 20_000, queue_bytes: int = 64_000_000) -> None:
        self.name = name
        self.latency_kind = "write"  # metrics: latency.<kind>.<sink>, capture to written
        self.queue_messages = queue_messages  # the bounds of this sink's channel (the runner makes it)
        self.queue_bytes = queue_bytes
        self.stats = SinkStats()
        self.backoff = Backoff(BackoffPolicy())

    def wants(self, is_step: bool) -> bool:
        """Whether this sink takes aligned steps (``is_step``) or token packets (e.g. a file that keeps
        only steps); the books hold it to that (every such message emitted must be offered)."""
        return True

    def accepts(self, item: Outgoing) -> bool:
        return self.wants(item.is_step)

    def held_by(self) -> Counter[tuple[str, str]]:
        """Messages taken from the channel and not yet booked (the bus: in flight), per stream."""
        return Counter()

    def gauges(self) -> dict[str, float]:
        """Sink-specific figures for metrics and the run report (the bus: connection, in flight ...)."""
        return {}

    def state_doc(self, channel: SinkChannel | None) -> dict[str, Any] | None:
        """This sink's own state for the stats document (the bus: its connection), or None."""
        return None

    def offer(self, channel: SinkChannel, item: Outgoing) -> None:
        """The runner's fan-out: count and enqueue (the channel drops the oldest when full)."""
        self.stats.offered += 1
        self.stats.offered_by[item.key] += 1
        channel.put(item)

    def on_drop(self, item: Outgoing) -> None:
        self.stats.count("dropped", [item])

    def say(self, line: str, level: int = logging.WARNING) -> None:
        """One event line (docs: one line per event, with its priority under journald)."""
        _log.log(level, "sink %s: %s", self.name, line)

    async def run(self, channel: SinkChannel) -> None:
        """Write what the channel gives until it is closed and empty; never raises but CancelledError."""
        while batch := await channel.get_batch(BATCH):
            while True:
                try:
                    await self.write_batch(batch)
                except asyncio.CancelledError:
                    self.stats.count("failed", batch)  # in flight at the deadline: never confirmed
                    raise
                except Exception as err:  # every failure is counted and retried; none ends the daemon
                    self.stats.count("failed", batch)
                    await self._failed(err, channel)
                    break
                now = time.monotonic_ns()
                self.stats.count("written", batch)
                self.stats.latencies += [(it, now - it.capture_ns) for it in batch]
                if self.stats.state != "ok":
                    if self.stats.state == "failing":
                        self.say(f"writing again after {self.stats.errors} failed attempts", NOTICE)
                    self.stats.state = "ok"
                self.backoff.running()
                break

    async def _failed(self, err: Exception, channel: SinkChannel) -> None:
        self.stats.errors += 1
        reason = self.describe(err)
        first = self.stats.state != "failing" or reason != self.stats.last_error
        self.stats.state, self.stats.last_error = "failing", reason
        delay = self.backoff.next_delay_s()
        if first:  # one line per distinct failure, not one per retry
            self.say(f"{reason}; messages are counted as failed, retrying in {delay:.1f} s (backoff up to 30 s)")
        with contextlib.suppress(Exception):
            await self.recover()
        if not channel.closed:
            await asyncio.sleep(delay)

    def describe(self, err: Exception) -> str:
        return str(err) or type(err).__name__

    @abc.abstractmethod
    async def write_batch(self, batch: list[Outgoing]) -> None: ...

    async def recover(self) -> None:  # noqa: B027 -- optional hook, nothing to do by default
        """After a failure, before the retry (a file sink reopens its file)."""

    def sources_changed(self, cfg: LivetokConfig, vocab: Vocabulary,  # noqa: B027 -- optional hook
                        plugins: dict[str, Any]) -> None:
        """A reload changed the sources (``cfg``: the new configuration; ``vocab``: the codebooks';
        ``plugins``: the loaded plug-in tokenizers) and this sink stays: the bus republishes their meta."""

    async def __aenter__(self) -> Sink:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.stats.state = "closed"
