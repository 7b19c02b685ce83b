"""The run's books: every capture and where it went, every message and what each sink did with it.

``captured = skipped_by_rate + dropped (by the hand-over queue) + tokenized + failed + discarded + left``
for every source and modality (the hand-over's counts come from the hand-over itself; frames the
source's token rate skipped never reach it: the capture thread counts them), and for every sink
``offered = written + dropped + failed + queued`` (:mod:`livetok.pipeline.outlets`). The run's
report (:class:`RunReport`) carries them, and whether they balance: nothing unseen was lost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from livetok.pipeline.outlets import Outlet, Outlets
from livetok.pipeline.sources import RunningSource
from livetok.streams.handoff import Handoff

Key = tuple[str, str]  # (source, modality) or (group, "step")


@dataclass
class Books:
    """Per (source, modality): captures in and where each went; per (stream, modality): messages."""

    tokenized: Counter[Key] = field(default_factory=Counter)
    failed: Counter[Key] = field(default_factory=Counter)  # the engine raised on them
    discarded: Counter[Key] = field(default_factory=Counter)  # cut off by the shutdown deadline
    emitted: Counter[Key] = field(default_factory=Counter)  # messages: (source, modality) or (group, step)


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


def capture_books(sources: list[RunningSource], books: Books) -> tuple[dict[Key, dict[str, int]], bool]:
    """Per (source, modality): captures in and where each went, and whether all balance. ``sources``:
    every source of the run, those a reload stopped included."""
    captures: dict[Key, dict[str, int]] = {}
    ok = True
    # A source restarted by a reload had several hand-overs under one name: their counts add up.
    handoffs: dict[Key, list[Handoff[Any]]] = {}
    skipped: Counter[Key] = Counter()
    for src in sources:
        for kind, h in (("video", src.video), ("audio", src.audio)):
            if h is not None:
                handoffs.setdefault((src.name, kind), []).append(h)
        skipped[(src.name, "video")] += src.stats.skipped_by_rate
    for key, hs in handoffs.items():
        put, dropped, taken, left = (sum(getattr(h, a) for h in hs) for a in ("put_count", "dropped", "taken", "depth"))
        b = books
        row = {"captured": put + skipped[key], "skipped_by_rate": skipped[key], "dropped_queue": dropped,
               "tokenized": b.tokenized[key], "failed": b.failed[key], "dropped_shutdown": b.discarded[key] + left}
        # The hand-over's own books, and ours of what was taken from it, must both close.
        row["balanced"] = int(put == dropped + taken + left
                              and taken == b.tokenized[key] + b.failed[key] + b.discarded[key])
        ok &= bool(row["balanced"])
        captures[key] = row
    return captures, ok


def accounting(sources: list[RunningSource], books: Books, outlets: Outlets) -> dict[str, Any]:
    """The run's books, and whether they balance."""
    captures, ok = capture_books(sources, books)
    sinks, sinks_ok = outlets.books(books.emitted)
    emitted = {".".join(k): v for k, v in sorted(books.emitted.items())}
    return {"captures": {".".join(k): row for k, row in captures.items()}, "emitted": emitted, "sinks": sinks,
            "balanced": int(ok and sinks_ok)}


def sink_report(outlets: Outlets, outs: list[Outlet]) -> dict[str, Any]:
    """A sink's line in the report: its counts over every incarnation, the rest from the last."""
    last = outs[-1]
    st = last.sink.stats
    total = outlets.totals(last.name)
    return {"state": st.state, "written": total["written"], "dropped": total["dropped"], "failed": total["failed"],
            "errors": total["errors"], "last_error": st.last_error,
            "queue_max_depth": max(o.channel.max_depth for o in outs), **last.sink.gauges()}
