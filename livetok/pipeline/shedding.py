"""Graceful overload: which frames of a video batch get fine tokens, and how many fine levels.

The video batcher asks before each tokenizer call (:meth:`ShedPolicy.plan`). The pressure is how
full the fullest video hand-over is once the batch was taken (``fill``, 0-1): up to ``low`` nothing
is shed; from ``low`` to ``high`` the fine work allowed falls linearly to none; from ``high`` on
only coarse tokens are made. Coarse tokens are never shed: when even they cannot keep up, the
hand-over drops whole frames (counted), as it always did. Plug-in video tokenizers are not shed.

The fine work allowed is a budget of fine levels, ``fraction x frames x levels``; what a batch
cannot spend (levels come in steps) is carried to the next, so the long-run share is exact. It is
spent in order of value, highest ``priority`` first: within a priority, first every frame's first
``min_levels`` levels, then the levels beyond (the finest levels are shed before whole fine frames);
among frames of one priority, the source that has had the smallest share of fine levels lately goes
first (sources of equal priority degrade evenly). So the lowest priority sheds its finest levels,
then its fine frames, before a source of higher priority sheds anything.

The fill alone reacts a batch late and forgets at once: a hand-over that overflowed is drained by a
coarse-only batch, the fill falls, full fine work comes back and overflows it again. So congestion
also sets a ceiling on the share (``ceiling``): a frame dropped whole since the last plan halves it
(and sets it to none while the drops go on), a catch-up batch (:meth:`ShedPolicy.batch_limit`: the
hand-overs were about to drop) halves it, and each other batch raises it by ``RECOVER``, so fine
work comes back over about fifty batches (additive increase, multiplicative decrease, as in
congestion control). Measured at 12 cameras (docs/performance.md section 13): without the catch-up's
halving, a batch of full fine work right after a catch-up batch overflowed the hand-overs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

LOW, HIGH = 0.25, 0.75  # hand-over fill (0-1) at which shedding starts, and beyond which all fine work is shed
# Per plan, the share history (for evenness) keeps this much of its past: about 50 batches of memory,
# so that a source's share from an hour ago does not decide who sheds now.
DECAY = 0.98
CATCH_UP = 4  # a catch-up batch takes this many times batch_size (batch_limit)
CATCH_FILL = 0.875  # the hand-over fill (0-1) from which batches catch up (batch_limit)
CATCH_UP_DECREASE = 0.5  # the ceiling's factor at a catch-up batch (settle)
RECOVER = 0.02  # the ceiling's rise per batch without a drop or a catch-up (share of the fine work; 50 batches to full)


@dataclass
class ShedPolicy:
    """Fine levels per frame of a batch (0: shed); pure and deterministic (module doc)."""

    levels: int  # fine levels of a whole frame
    min_levels: int  # the fewest fine levels a frame keeps before its fine tokens are shed whole
    low: float = LOW
    high: float = HIGH
    carry: float = 0.0  # fine levels allowed but not spent by the last batch
    ceiling: float = 1.0  # the most share of the fine work allowed, after drops (module doc)
    given: dict[str, float] = field(default_factory=dict)  # fine levels made per source (decaying)
    seen: dict[str, float] = field(default_factory=dict)  # frames planned per source (decaying)

    def __post_init__(self) -> None:
        if not 1 <= self.min_levels <= self.levels or not 0 <= self.low < self.high <= 1:
            raise ValueError("shedding needs 1 <= min_levels <= levels and 0 <= low < high <= 1")

    def fraction(self, fill: float) -> float:
        """The share of the fine work allowed at hand-over ``fill`` (0-1)."""
        return min(1.0, max(0.0, (self.high - fill) / (self.high - self.low)))

    def batch_limit(self, fill: float, batch_size: int, backlog: int) -> tuple[int, bool]:
        """How many frames the next batch may take, and whether it is a catch-up batch (coarse only),
        at hand-over ``fill`` before taking, ``backlog`` frames waiting in all hand-overs. Past ``high``
        only coarse tokens are made; a fill that still rises to ``CATCH_FILL`` with more frames waiting
        than a batch takes means even coarse-only batches fall behind, and the next batch takes
        ``CATCH_UP`` times ``batch_size``, coarse only whatever the priority (a hand-over about to drop
        whole frames comes first): a coarse-only frame is cheap, and each tokenizer call also costs a
        fixed time (in the daemon: handing the GIL back and waiting for it behind the capture
        threads), so fewer, larger calls catch up where calls of ``batch_size`` fell behind. A backlog
        one batch takes whole (one camera's burst, as a network source's start-up hold releases) is
        no congestion: it is tokenized as usual, so its codes are those of the same frames offline."""
        if fill >= CATCH_FILL and backlog > batch_size:
            return batch_size * CATCH_UP, True
        return batch_size, False

    def settle(self, dropped: bool, catch_up: bool = False) -> float:
        """The ceiling after one more batch: halved when frames were ``dropped`` whole since the last
        plan (0 when it already was under half: the drops go on); lowered by ``CATCH_UP_DECREASE`` for
        a ``catch_up`` batch (the hand-overs were about to drop); else raised by ``RECOVER``."""
        if dropped:
            self.ceiling = 0.0 if self.ceiling < 0.5 else self.ceiling / 2
        elif catch_up:
            self.ceiling *= CATCH_UP_DECREASE
        else:
            self.ceiling = min(1.0, self.ceiling + RECOVER)
        return self.ceiling

    def plan(self, sources: Sequence[str], priorities: Mapping[str, int], fill: float,
             dropped: bool = False, catch_up: bool = False) -> list[int]:
        """Per frame of a batch (its source's name), the fine levels to make: ``levels``, fewer, or 0.
        ``dropped``: a hand-over dropped frames whole since the last plan; ``catch_up``: this is a
        catch-up batch (:meth:`batch_limit`; plan it with ``fill=1``: no fine work)."""
        for counts in (self.given, self.seen):
            for k in counts:
                counts[k] *= DECAY
        for s in sources:
            self.seen[s] = self.seen.get(s, 0.0) + 1
        share = min(self.fraction(fill), self.settle(dropped, catch_up))
        if share >= 1.0 or share <= 0.0:
            self.carry = 0.0
            out = [self.levels if share else 0] * len(sources)
            for s in sources:
                self.given[s] = self.given.get(s, 0.0) + out[0]
            return out
        budget = share * len(sources) * self.levels + self.carry
        out = [0] * len(sources)
        for prio in sorted({priorities.get(s, 0) for s in sources}, reverse=True):
            frames = [i for i, s in enumerate(sources) if priorities.get(s, 0) == prio]
            budget = self._spend(frames, sources, out, 0, self.min_levels, budget)
            budget = self._spend(frames, sources, out, self.min_levels, self.levels - self.min_levels, budget)
        self.carry = min(budget, float(self.levels))
        return out

    def _spend(self, frames: list[int], sources: Sequence[str], out: list[int], have: int, step: int,
               budget: float) -> float:
        """Give ``step`` more levels to frames that have ``have``, the least-served source first."""
        todo = [i for i in frames if out[i] == have]
        while step and todo and budget >= step:
            i = min(todo, key=lambda j: (self.given.get(sources[j], 0.0) / self.seen[sources[j]], j))
            todo.remove(i)
            out[i] += step
            self.given[sources[i]] = self.given.get(sources[i], 0.0) + step
            budget -= step
        return budget
