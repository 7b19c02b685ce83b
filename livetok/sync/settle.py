"""When a source's first arrivals have shown its delay floor: the start-up hold of a source clock.

A clock model maps media time to the *earliest* arrival seen (docs/sync.md, lower envelope). At a
source's start that is a poor guide: a stream delivers its first second in one burst after FFmpeg
has probed it (measured: a UDP camera's first frame handed over 0.7-1 s after it was captured,
the next ones a little less late each, until the backlog is gone), and a busy machine delays the
first items too. Mapped as they come, the first tokens would carry times hundreds of ms late, and
correcting that afterwards either steps the time or slews it for seconds (5 % at most: 6 s for
300 ms). Holding the first items back until the envelope stops falling costs their latency once,
and then every token, the first included, is mapped by a floor that has been seen.

``y = arrival - media`` (ns) is observed per item; the hold ends (``settled``) when

* for ``quiet_ns`` of host time the lowest ``y`` has not fallen by more than ``tolerance_ns``
  below where it stood (a burst draining lowers it at every item; arrivals in real time lower it
  only by the jitter of the lucky few), or
* ``max_hold_ns`` of host time have passed since the first item (a source that keeps catching
  up, or one that went silent after a few items): then the model's best so far is used, and the
  clock's slewing takes care of the rest, as it does for any later improvement of the floor.

What it cannot tell: a backlog drained at exactly the stream's own pace looks like a constant
delay, and settles on it. Deterministic; all times integer ns.
"""

from __future__ import annotations

NS_PER_MS = 1_000_000
QUIET_NS = 500 * NS_PER_MS  # host time without a new low before the first mapping (ns)
TOLERANCE_NS = 2 * NS_PER_MS  # a new low by less than this is jitter, not a burst draining (ns)
MAX_HOLD_NS = 3_000 * NS_PER_MS  # the longest a source's first items are held (ns of host time)


class Settling:
    """The start-up hold of one source clock; see the module docstring."""

    def __init__(self, quiet_ns: int = QUIET_NS, tolerance_ns: int = TOLERANCE_NS,
                 max_hold_ns: int = MAX_HOLD_NS) -> None:
        if quiet_ns < 0 or tolerance_ns < 0 or max_hold_ns < quiet_ns:
            raise ValueError("need quiet_ns, tolerance_ns >= 0 and max_hold_ns >= quiet_ns")
        self.quiet_ns = quiet_ns
        self.tolerance_ns = tolerance_ns
        self.max_hold_ns = max_hold_ns
        self.holds = 0  # holds ended (count, for metrics)
        self.timeouts = 0  # ... of which by max_hold_ns
        self.reset()

    def reset(self) -> None:
        """A new media timeline: hold again from its first item."""
        self.settled = False
        self._first: int | None = None  # arrival of the first item (ns)
        self._low: int | None = None  # the lowest y where it last fell by more than the tolerance
        self._since = 0  # arrival at which it did
        self.held_ns = 0  # host time the last hold lasted (ns), once settled

    def observe(self, media_ns: int, arrival_ns: int) -> bool:
        """One item (its media time when complete, its arrival); returns ``settled``."""
        if self.settled:
            return True
        y = arrival_ns - media_ns
        if self._first is None:
            self._first = self._since = arrival_ns
            self._low = y
        elif self._low is not None and y < self._low - self.tolerance_ns:
            self._low, self._since = y, arrival_ns
        return self.poll(arrival_ns)

    def poll(self, now_ns: int) -> bool:
        """Whether the hold is over at host time ``now_ns`` (it also ends by time passing)."""
        if self.settled or self._first is None:
            return self.settled
        if now_ns - self._since >= self.quiet_ns:
            self._end(now_ns, timeout=False)
        elif now_ns - self._first >= self.max_hold_ns:
            self._end(now_ns, timeout=True)
        return self.settled

    def end(self, now_ns: int | None = None) -> None:
        """End the hold now, whatever the arrivals say (the stream ends, or its clock restarts)."""
        if not self.settled and self._first is not None:
            self._end(self._first if now_ns is None else now_ns, timeout=False)

    def _end(self, now_ns: int, timeout: bool) -> None:
        assert self._first is not None
        self.settled = True
        self.held_ns = max(0, now_ns - self._first)
        self.holds += 1
        self.timeouts += timeout
