"""Real-time pacing: releasing timestamped items when the monotonic clock reaches their media time.

The first item anchors media time to ``time.monotonic_ns()``; item ``t`` is released at
``anchor_mono + (t - anchor_media)``. Falling more than ``max_lag_ns`` behind (a slow decoder, a
suspended process) or meeting an item more than ``max_lead_ns`` ahead (a timestamp jump) re-anchors
instead of bursting or sleeping for the difference.
"""

from __future__ import annotations

import threading
import time

NS = 1_000_000_000


class Pacer:
    """Holds items back until their media time; waits end early when ``stop`` is set."""

    def __init__(self, stop: threading.Event, max_lag_ns: int = NS, max_lead_ns: int = 5 * NS) -> None:
        self._stop = stop
        self.max_lag_ns = max_lag_ns
        self.max_lead_ns = max_lead_ns
        self._anchor: tuple[int, int] | None = None  # (monotonic ns, media ns)
        self.reanchors = 0  # times pacing gave up on the old anchor (count)

    def reset(self) -> None:
        """Forget the anchor: the next item is released at once and anchors again."""
        self._anchor = None

    def wait(self, media_ns: int) -> bool:
        """Block until ``media_ns`` is due; False when stopped while waiting."""
        now = time.monotonic_ns()
        if self._anchor is None:
            self._anchor = (now, media_ns)
            return not self._stop.is_set()
        mono0, media0 = self._anchor
        ahead = mono0 + (media_ns - media0) - now
        if ahead > self.max_lead_ns or -ahead > self.max_lag_ns:
            self._anchor = (now, media_ns)
            self.reanchors += 1
            return not self._stop.is_set()
        if ahead > 0:
            return not self._stop.wait(ahead / NS)
        return not self._stop.is_set()
