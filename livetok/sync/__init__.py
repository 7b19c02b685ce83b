"""One clock for every source, and alignment of a group's tokens into steps (docs/sync.md).

Pure, deterministic logic (no threads, no I/O; every time is passed in, in integer ns):

* :class:`ClockModel` maps a source's media time to host monotonic time (lower-envelope fit of
  arrivals, drift included); :class:`WallClock` maps monotonic time to UNIX time for the wire.
* :class:`Aligner` groups one video and one audio stream's packets into :class:`AlignedStep`\\ s
  on a fixed grid of host time, with watermarks, a lateness bound and MISSING_* / LATE flags.
* :class:`FlashDetector`, :class:`BeepDetector` and :class:`SkewEstimator` measure the A/V skew
  from sync markers (audio minus video, the wire's sign convention).
"""

from livetok.sync.align import DEFAULT_LATENESS_NS, DEFAULT_STEP_NS, Aligner, AlignerStats, Step, Timed
from livetok.sync.clock import ClockModel, SourceClock, WallClock
from livetok.sync.markers import (
    BEEP_HZ,
    BEEP_NS,
    MARKER_PERIOD_NS,
    BeepDetector,
    FlashDetector,
    SkewEstimator,
)

__all__ = [
    "BEEP_HZ",
    "BEEP_NS",
    "DEFAULT_LATENESS_NS",
    "DEFAULT_STEP_NS",
    "MARKER_PERIOD_NS",
    "Aligner",
    "AlignerStats",
    "BeepDetector",
    "ClockModel",
    "FlashDetector",
    "SkewEstimator",
    "SourceClock",
    "Step",
    "Timed",
    "WallClock",
]
