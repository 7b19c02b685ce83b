"""The run's books: every capture and where it went, every message and what each sink did with it.

``captured = skipped_by_rate + dropped (by the hand-over queue) + tokenized + failed + discarded + left``
for every source and modality (the hand-over's counts come from the hand-over itself; frames the
source's token rate skipped never reach it: the capture thread counts them); for the built-in video
tokenizer's scales, ``captured = skipped_by_rate + tokenized + shed + dropped...`` per scale as well (an
overloaded daemon sheds fine tokens, never coarse ones: :mod:`livetok.pipeline.shedding`); and for every sink
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
ScaleKey = tuple[str, str, str]  # (source, modality, scale)
SCALES = ("fine", "coarse")


@dataclass
class Books:
    """Per (source, modality): captures in and where each went; per (stream, modality): messages."""

    tokenized: Counter[Key] = field(default_factory=Counter)
    failed: Counter[Key] = field(default_factory=Counter)  # the engine raised on them
    discarded: Counter[Key] = field(default_factory=Counter)  # cut off by the shutdown deadline
    emitted: Counter[Key] = field(default_factory=Counter)  # messages: (source, modality) or (group, step)
    # Per scale, of the frames ``tokenized`` counts: made (any number of levels), shed, made with fewer
    # levels (a part of made). ``scaled``: the (source, "video") whose frames the built-in kind tokenizes.
    scale_tokenized: Counter[ScaleKey] = field(default_factory=Counter)
    shed: Counter[ScaleKey] = field(default_factory=Counter)
    degraded: Counter[ScaleKey] = field(default_factory=Counter)
    scaled: set[Key] = field(default_factory=set)

    def book_scales(self, source: str, fine_levels: int, levels: int, coarse_degraded: bool = False) -> None:
        """One video frame of ``source`` through the built-in tokenizer with ``fine_levels`` of ``levels``;
        ``coarse_degraded``: its coarse codes made greedily though the coarse encoder has a beam (overload)."""
        self.scaled.add((source, "video"))
        coarse = (source, "video", "coarse")
        self.scale_tokenized[coarse] += 1
        self.degraded[coarse] += coarse_degraded
        fine = (source, "video", "fine")
        if fine_levels:
            self.scale_tokenized[fine] += 1
            self.degraded[fine] += fine_levels < levels
        else:
            self.shed[fine] += 1


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


def capture_books(sources: list[RunningSource], books: Books,
                  final: bool = True) -> tuple[dict[Key, dict[str, Any]], bool]:
    """Per (source, modality): captures in and where each went, and whether all balance. ``sources``:
    every source of the run, those a reload stopped included. ``final``: the run has ended, and what
    the hand-over still holds is dropped at shutdown; else it is ``queued``, and ``in_flight`` is
    what the tokenizer has taken and not yet given back (both 0 in the final books)."""
    captures: dict[Key, dict[str, Any]] = {}
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
        put, dropped, taken, left = (sum(c) for c in zip(*(h.counts() for h in hs), strict=True))
        b = books
        in_flight = taken - b.tokenized[key] - b.failed[key] - b.discarded[key]
        row: dict[str, Any] = {
            "captured": put + skipped[key], "skipped_by_rate": skipped[key], "dropped_queue": dropped,
            "tokenized": b.tokenized[key], "failed": b.failed[key],
            "dropped_shutdown": b.discarded[key] + (left if final else 0)}
        if not final:
            row |= {"queued": left, "in_flight": in_flight}
        # The hand-over's own books, and ours of what was taken from it, must both close.
        row["balanced"] = int(put == dropped + taken + left and (in_flight == 0 if final else in_flight >= 0))
        if key in b.scaled:
            row["scales"] = _scale_rows(key, b)
            rest = put - b.tokenized[key]  # every capture not tokenized is counted elsewhere in the row
            row["balanced"] &= int(all(r["tokenized"] + r["shed"] + rest == put for r in row["scales"].values()))
        ok &= bool(row["balanced"])
        captures[key] = row
    return captures, ok


def _scale_rows(key: Key, b: Books) -> dict[str, dict[str, int]]:
    """Per scale: of the frames tokenized, those whose tokens of that scale were made (``degraded``: a
    part of ``tokenized``, fine with fewer levels, coarse without its beam) and those whose were shed."""
    rows = {}
    for scale in SCALES:
        k = (*key, scale)
        rows[scale] = {"tokenized": b.scale_tokenized[k], "shed": b.shed[k], "degraded": b.degraded[k]}
    return rows


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
