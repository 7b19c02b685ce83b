"""Capped exponential backoff with jitter, for reconnecting lost or stalled sources.

Delays go ``initial_s, initial_s * factor, ...`` up to ``max_s`` (1, 2, 4, 8, 16, 30, 30 s by
default), each scaled by a random factor in ``[1 - jitter, 1]`` so that many sources lost at once
(a switch reboots) do not reconnect in lock-step, and never above the cap. A source that then ran
for ``stable_s`` without a fault starts again from ``initial_s``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

NS = 1_000_000_000


@dataclass(frozen=True)
class BackoffPolicy:
    """How long to wait before reconnecting (all in seconds)."""

    initial_s: float = 1.0  # first delay (s)
    max_s: float = 30.0  # cap (s)
    factor: float = 2.0  # growth per consecutive failure
    jitter: float = 0.25  # fraction of a delay that is random (0 = exact delays)
    stable_s: float = 10.0  # a connection that ran this long resets the delay (s)

    def __post_init__(self) -> None:
        if not (0 < self.initial_s <= self.max_s):
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if self.factor < 1 or not (0 <= self.jitter < 1) or self.stable_s < 0:
            raise ValueError("backoff needs factor >= 1, 0 <= jitter < 1, stable_s >= 0")


class Backoff:
    """The consecutive-failure count of one source and the delay it implies."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.failures = 0  # consecutive, since the last stable run
        self._rng = rng or random.Random()
        self._running_since_ns: int | None = None

    def running(self) -> None:
        """The source delivered data: start (or keep) timing a stable run."""
        if self._running_since_ns is None:
            self._running_since_ns = time.monotonic_ns()

    def next_delay_s(self) -> float:
        """A fault happened: the delay before the next attempt (s); grows unless the run was stable."""
        since, self._running_since_ns = self._running_since_ns, None
        if since is not None and time.monotonic_ns() - since >= self.policy.stable_s * NS:
            self.failures = 0
        p = self.policy
        delay = min(p.max_s, p.initial_s * p.factor**self.failures)
        self.failures = min(self.failures + 1, 64)  # factor**n stays a finite float
        return delay * (1.0 - p.jitter * self._rng.random())
