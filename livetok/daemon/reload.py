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
  reconnects when the ``mqtt`` section changed (its messages continue in order; the new connection
  publishes ``online`` and meta);
* the **Prometheus endpoint** moves when ``metrics.listen`` changed (the new address is bound before
  the old one is let go; one that cannot be bound refuses the reload), or stops when it is removed.

The new sinks (at a new path) and the new endpoint are opened before anything is stopped, so one
that cannot open aborts the reload with the running configuration intact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from livetok.config import Group, LivetokConfig

FIXED = ("tokenizer", "alignment", "queues")  # built once: a change needs a restart


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
