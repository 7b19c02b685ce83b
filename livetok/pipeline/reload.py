"""SIGHUP: re-read the configuration and apply what changed, touching nothing else.

The new file is loaded and checked exactly as at start (``check-config``'s preflight). If it is
invalid — or changes what cannot change while running (``tokenizer``, ``alignment``, ``queues``: the
tokenizers and the hand-over are built once) — the daemon says why in one line and keeps the
running configuration. Otherwise :func:`plan` compares the two:

* a **source** is restarted when its own settings changed or a group that uses it was added,
  removed or changed; sources that only lost every group are stopped; new ones started. A source
  whose settings and groups did not change keeps its connection, its clock and its sequence numbers;
* a **group** is rebuilt when its definition changed or one of its sources is restarted (its steps
  then start again at seq 0 under the same run id, flagged by the consumer as a restart);
* a **file sink** is reopened when its settings changed: the new one takes over between two
  messages, so every stream's sequence numbers run on without a hole across the old and the new
  file (on the same file, the new sink collects what comes while the old one finishes); the **bus**
  reconnects when its settings changed (the ``mqtt`` section, or the sink of kind mqtt; the same
  settings in the other spelling are no change): its messages continue in order, the new connection
  publishes ``online`` and meta;
* the **Prometheus endpoint** moves when ``metrics.listen`` changed (the new address is bound before
  the old one is let go; one that cannot be bound refuses the reload), or stops when it is removed.

The new sinks (at a new path) and the new endpoint are opened before anything is stopped, so one
that cannot open aborts the reload with the running configuration intact. Here: the plan (pure) and
its application to the data path (:class:`Reconfigurable`); reading the file, refusing, the endpoint
and the answer to ``livetok reload``: the daemon (:mod:`livetok.daemon.runner`).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from livetok.config import BUS_NAME, Group, LivetokConfig
from livetok.errors import LivetokError
from livetok.pipeline.datapath import DataPath
from livetok.pipeline.outlets import Outlet
from livetok.pipeline.sources import RunningSource, build_sources
from livetok.runtime.log import get as get_logger
from livetok.runtime.stopping import Deadline
from livetok.sinks import Sink, make_sink
from livetok.vocab import Vocabulary

FIXED = ("tokenizer", "tokenizers", "alignment", "queues")  # built once: a change needs a restart
RELOAD_S = 10.0  # stopping the sources and retiring the sinks a reload replaces, at most (s)
_log = get_logger("daemon")


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload changes; empty sets everywhere means nothing to do."""

    restart_sources: frozenset[str] = frozenset()  # stopped (drained, counted) and started again
    stop_sources: frozenset[str] = frozenset()  # stopped for good
    start_sources: frozenset[str] = frozenset()  # new
    remove_groups: frozenset[str] = frozenset()
    add_groups: frozenset[str] = frozenset()
    reopen_sinks: frozenset[str] = frozenset()
    close_sinks: frozenset[str] = frozenset()
    open_sinks: frozenset[str] = frozenset()
    bus: str = ""  # "", "restart", "start", "stop"
    metrics: str = ""  # "": unchanged; else the new metrics.listen, or "off"
    fixed: tuple[str, ...] = field(default_factory=tuple)  # sections that changed but cannot

    @property
    def empty(self) -> bool:
        return not (self.restart_sources or self.stop_sources or self.start_sources or self.remove_groups
                    or self.add_groups or self.reopen_sinks or self.close_sinks or self.open_sinks or self.bus
                    or self.metrics)

    def describe(self) -> str:
        parts = []
        for what, names in (("restarted", self.restart_sources), ("stopped", self.stop_sources),
                            ("started", self.start_sources)):
            if names:
                parts.append(f"sources {what}: {', '.join(sorted(names))}")
        for what, names in (("reopened", self.reopen_sinks), ("closed", self.close_sinks),
                            ("opened", self.open_sinks)):
            if names:
                parts.append(f"sinks {what}: {', '.join(sorted(names))}")
        if self.bus:
            parts.append(f"bus: {self.bus}")
        if self.metrics:
            parts.append(f"metrics: {'off' if self.metrics == 'off' else 'on ' + self.metrics}")
        return "; ".join(parts) or "nothing changed"


def plan(old: LivetokConfig, new: LivetokConfig) -> ReloadPlan:
    """The difference between the running configuration and the new one (pure)."""
    fixed = tuple(k for k in FIXED if getattr(old, k) != getattr(new, k))
    old_src = {s.name: s for s in old.sources}
    new_src = {s.name: s for s in new.sources}
    old_groups = {g.name: g for g in old.effective_groups()}
    new_groups = {g.name: g for g in new.effective_groups()}
    used_old = {n for g in old_groups.values() for n in (g.video, g.audio) if n}
    used_new = {n for g in new_groups.values() for n in (g.video, g.audio) if n}
    changed_src = {n for n in used_old & used_new if old_src[n] != new_src[n]}
    gone_groups = {n for n, g in old_groups.items() if new_groups.get(n) != g}
    came_groups = {n for n, g in new_groups.items() if old_groups.get(n) != g}

    def sources_of(groups: set[str], table: dict[str, Group]) -> set[str]:
        return {n for g in groups for n in (table[g].video, table[g].audio) if n}

    touched = changed_src | sources_of(gone_groups, old_groups) | sources_of(came_groups, new_groups)
    # groups that use a touched source are rebuilt too (their aligner holds that source's stream)
    gone_groups |= {n for n, g in old_groups.items() if {g.video, g.audio} & touched}
    came_groups |= {n for n, g in new_groups.items() if {g.video, g.audio} & touched}
    touched |= sources_of(gone_groups, old_groups) | sources_of(came_groups, new_groups)
    restart = touched & used_old & used_new
    stop = used_old - used_new
    start = used_new - used_old
    old_sinks, new_sinks = old.file_sinks(), new.file_sinks()
    reopen = {n for n in old_sinks.keys() & new_sinks.keys() if old_sinks[n] != new_sinks[n]}
    bus = ""
    old_bus, new_bus = old.bus_settings(), new.bus_settings()
    if old_bus != new_bus:
        bus = ("restart" if old_bus.host and new_bus.host else "start" if new_bus.host else "stop")
    metrics = "" if old.metrics == new.metrics else (new.metrics.listen or "off")
    return ReloadPlan(frozenset(restart), frozenset(stop), frozenset(start), frozenset(gone_groups),
                      frozenset(came_groups), frozenset(reopen), frozenset(old_sinks.keys() - new_sinks.keys()),
                      frozenset(new_sinks.keys() - old_sinks.keys()), bus, metrics, fixed)


@dataclass
class Prepared:
    """The sinks a plan adds or reopens, made (and, at a new path, opened) before anything changes;
    ``later``: those that open only once the old one let go (the same file, whose lock it holds; the
    bus, whose client id it uses)."""

    made: dict[str, Sink]
    later: list[Sink]


class Reconfigurable(DataPath):
    """The data path, changed by a reload between two messages (module doc)."""

    async def prepare(self, p: ReloadPlan, new: LivetokConfig) -> Prepared:
        """Make (and, at a new path, open) the sinks ``p`` adds or reopens; one that cannot raises
        with nothing touched."""
        reopen, _, opening = _sink_changes(p)
        old = {o.name: o.sink for o in self.outlets.active}
        vocab = Vocabulary.from_codebooks(self.toks.codebooks)
        made: dict[str, Sink] = {}
        later: list[Sink] = []
        try:
            for name in sorted(reopen | opening):
                sink = made[name] = make_sink(new, name, self.run_id, vocab, self.toks.plugins)
                if name in reopen and (_path_of(old[name]) == _sink_path(new, name) or sink.latency_kind == "publish"):
                    later.append(sink)
                else:
                    await sink.__aenter__()
        except BaseException:
            await self.discard(Prepared(made, later))
            raise
        return Prepared(made, later)

    async def discard(self, prepared: Prepared) -> None:
        """Close what :meth:`prepare` made (the reload was refused after it)."""
        for sink in prepared.made.values():
            with contextlib.suppress(Exception):
                await sink.__aexit__(None, None, None)

    async def apply(self, p: ReloadPlan, new: LivetokConfig, prepared: Prepared) -> None:
        """Sources, groups and sinks as ``new`` has them (module doc); counted in ``reloads``."""
        deadline = Deadline(RELOAD_S, self.stop)
        # Sources that stop: their captures go through the engine, then their groups are flushed.
        leaving = p.restart_sources | p.stop_sources
        stopped = [s for s in self.sources if s.name in leaving]
        await self._stop_sources(stopped, deadline)
        self.video_yield = True  # the batch loop's batches in flight first, then the rest in order
        try:
            async with self.video_turn:
                await self._drain(stopped, deadline)
        finally:
            self.video_yield = False
            self.video_ready.set()  # the loop let go with frames perhaps left: it looks again
        for name in sorted(p.remove_groups):
            self._fan_out(await self.worker.run(self._work, self.engine.remove_group, name))
        self.sources = [s for s in self.sources if s.name not in leaving]
        self.retired_sources += stopped
        # The new configuration: groups, then sources.
        self.cfg = new
        for g in new.effective_groups():
            if g.name in p.add_groups:
                await self.worker.run(self.engine.add_group, g, new)
        if p.restart_sources | p.start_sources:  # their meta (a token rate, a new source) before their tokens
            vocab = Vocabulary.from_codebooks(self.toks.codebooks)
            for o in self.outlets.active:
                if o.sink not in prepared.made.values():  # a sink made for this reload has the new config's
                    o.sink.sources_changed(new, vocab, self.toks.plugins)
        self._start_sources(build_sources(new, self.toks.cfg.video, only=p.restart_sources | p.start_sources))
        # Sinks: swapped in the fan-out between two messages; the old ones drain and close while
        # the new ones write (or, on the same file, collect in their channel until it is theirs).
        made, later = prepared.made, prepared.later
        going = self._swap_sinks(p, made)
        for o in self.outlets.active:
            if o.sink in made.values() and o.sink not in later:
                self._start_sink(o)
        await asyncio.gather(*(self._retire(o, deadline) for o in going))
        for sink in later:
            await self._open_later(sink)
        self.metrics.count("reloads")

    def _start_sources(self, sources: list[RunningSource]) -> None:
        loop = asyncio.get_running_loop()
        for src in sources:
            if src.video is not None:
                src.video.bind(loop, self.video_ready)
            if src.audio is not None:
                src.audio.bind(loop, self.audio_ready)
            src.start()
            self.sources.append(src)

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


def _sink_changes(p: ReloadPlan) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(reopened, closed, opened) sink names, the bus among them."""
    bus = frozenset({BUS_NAME})
    return (p.reopen_sinks | (bus if p.bus == "restart" else frozenset()),
            p.close_sinks | (bus if p.bus == "stop" else frozenset()),
            p.open_sinks | (bus if p.bus == "start" else frozenset()))


def _path_of(sink: Sink) -> str | None:
    cfg = getattr(sink, "cfg", None)
    return str(getattr(cfg, "path", "")) or None


def _sink_path(cfg: LivetokConfig, name: str) -> str | None:
    sink = cfg.file_sinks().get(name)
    return str(sink.path) if sink is not None else None
