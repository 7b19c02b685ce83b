"""The fan-out's sinks: each open sink with its channel and task, and the books that span reloads.

An :class:`Outlet` is one incarnation of a sink in the fan-out: the sink, its bounded channel, its
task, and the run's ``emitted`` counters when it joined and when it left. A reload that reopens a
sink (a new path, or new settings on the same file) *swaps* outlets in one step on the event loop —
the old one leaves the fan-out and the new one joins it between two messages — so no message falls
between them: the old sink drains its channel into the old file while the new one's channel
already collects what follows (and holds it while the same file is still locked by the old writer).

Books per sink name (:meth:`Outlets.books`), over every incarnation:

* ``offered = written + dropped + failed + queued``, in total and per stream;
* ``offered = emitted`` per stream: every message the engine emitted while the incarnation was in
  the fan-out, of the kinds it takes (packets, steps), was offered to it — so a message lost
  between the engine and a sink's channel (a fan-out that raised, a reload's gap) shows as NOT
  balanced instead of vanishing;
* a reopened sink's new incarnation joined exactly where the old one left.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from livetok.sinks import STEP, Sink, SinkChannel

Key = tuple[str, str]  # (source, modality) or (group, "step")
STREAM_ROW = ("produced", "written", "dropped", "failed", "queued")


@dataclass(eq=False)
class Outlet:
    """One sink's incarnation in the fan-out (module doc)."""

    sink: Sink
    channel: SinkChannel
    joined: Counter[Key]  # the run's emitted counters when it joined the fan-out
    left: Counter[Key] | None = None  # ... and when it left (None: still in)
    replaces: Outlet | None = None  # the incarnation a reload swapped out for this one
    opened_here: bool = False  # opened by the daemon (a reload): the daemon closes it
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.sink.name

    def held_by(self) -> Counter[Key]:
        """Per stream: messages offered and not yet settled (in the channel, or held by the sink)."""
        return self.channel.held_by() + self.sink.held_by()

    def due(self, emitted: Counter[Key]) -> Counter[Key]:
        """Per stream: what the engine emitted while this was in the fan-out, of the kinds it takes."""
        until = self.left if self.left is not None else emitted
        out: Counter[Key] = Counter()
        for key, n in until.items():
            if self.sink.wants(key[1] == STEP) and n - self.joined[key] > 0:
                out[key] = n - self.joined[key]
        return out


@dataclass
class Outlets:
    """The sinks in the fan-out now (``active``, in order) and every incarnation since the start."""

    active: list[Outlet] = field(default_factory=list)
    history: list[Outlet] = field(default_factory=list)

    def join(self, sink: Sink, emitted: Counter[Key], *, opened_here: bool = False,
             replaces: Outlet | None = None) -> Outlet:
        """``sink`` into the fan-out from now on, with a new channel."""
        o = Outlet(sink, SinkChannel(sink.queue_messages, sink.queue_bytes, sink.on_drop), Counter(emitted),
                   replaces=replaces, opened_here=opened_here)
        self.active.append(o)
        self.history.append(o)
        return o

    def leave(self, outlet: Outlet, emitted: Counter[Key]) -> None:
        """Out of the fan-out from now on; its channel closed (its task writes what it holds, then ends)."""
        self.active.remove(outlet)
        outlet.left = Counter(emitted)
        outlet.channel.close()

    def swap(self, old: Outlet, sink: Sink, emitted: Counter[Key], *, opened_here: bool = True) -> Outlet:
        """Replace ``old`` by ``sink`` between two messages (same place in the fan-out order)."""
        at = self.active.index(old)
        self.leave(old, emitted)
        new = self.join(sink, emitted, opened_here=opened_here, replaces=old)
        self.active.remove(new)
        self.active.insert(at, new)
        return new

    def get(self, name: str) -> Outlet | None:
        return next((o for o in self.active if o.name == name), None)

    def incarnations(self) -> dict[str, list[Outlet]]:
        """Every sink name, in the order each first appeared, with its incarnations in order."""
        out: dict[str, list[Outlet]] = {}
        for o in self.history:
            out.setdefault(o.name, []).append(o)
        return out

    def totals(self, name: str) -> dict[str, int]:
        """A sink's counters summed over its incarnations (metrics: they never go back at a reopen)."""
        keys = ("offered", "written", "dropped", "failed", "errors", "reopens", "bytes_written")
        out = dict.fromkeys(keys, 0)
        for o in self.incarnations().get(name, []):
            for k in keys:
                out[k] += getattr(o.sink.stats, k)
        return out

    def books(self, emitted: Counter[Key]) -> tuple[dict[str, dict[str, Any]], bool]:
        """Per sink name, its books over every incarnation (module doc), and whether all balance."""
        rows: dict[str, dict[str, Any]] = {}
        ok = True
        for name, outs in self.incarnations().items():
            row = {"offered": 0, "written": 0, "dropped": 0, "failed": 0, "queued": 0, "emitted": 0}
            streams: dict[str, dict[str, int]] = {}
            balanced = True
            for o in outs:
                st, held, due = o.sink.stats, o.held_by(), o.due(emitted)
                queued = sum(held.values())
                balanced &= st.offered == st.written + st.dropped + st.failed + queued
                balanced &= +st.offered_by == +due
                balanced &= o.replaces is None or o.replaces.left == o.joined
                for key in st.offered_by.keys() | due.keys():
                    s = streams.setdefault(".".join(key), dict.fromkeys(STREAM_ROW, 0))
                    s["produced"] += st.offered_by[key]
                    s["queued"] += held[key]
                    for what in ("written", "dropped", "failed"):
                        s[what] += getattr(st, f"{what}_by")[key]
                for what in ("offered", "written", "dropped", "failed"):
                    row[what] += getattr(st, what)
                row["queued"] += queued
                row["emitted"] += sum(due.values())
            balanced &= all(v["produced"] == v["written"] + v["dropped"] + v["failed"] + v["queued"]
                            for v in streams.values())
            ok &= balanced
            rows[name] = {**row, "reopened": len(outs) - 1, "balanced": int(balanced),
                          "streams": dict(sorted(streams.items()))}
        return rows, ok
