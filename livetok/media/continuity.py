"""Whether audio continues: the one rule, and each place's tolerance, side by side with its reason.

Audio is a sample count: a block continues its stream when its first sample is where the count
says, ``base + samples * 10^9 / rate`` (:func:`expected_ns`). How far off it may be depends on what
is asked, and the three places that ask keep their different answers, here, on purpose:

* **the audio tokenizer's stream** (:class:`~livetok.tokenizers.session.AudioTrack`): a block whose
  time is off the count by more than :func:`tolerance_ns` — half a block, at least
  :data:`JITTER_NS` — says samples were lost or doubled upstream: the stream starts again at the
  block's own time (GAP). Timestamps jitter far less than half a block; a lost block moves them by
  a whole one (:func:`continues`);
* **a microphone's timeline** (:class:`~livetok.streams.timeline.SampleTimeline`) stamps blocks by
  the count itself; a count that runs ahead of what can have been captured by at most
  :data:`PULLBACK_NS` is a device clock slightly faster than the host's and is pulled back
  silently, further it restarts. The same jitter bound as above: the count must never run ahead;
* **the engine's clock model** (:mod:`livetok.pipeline.engine`): a block flagged as a
  discontinuity (a looped file, a reconnect) whose time stays within :data:`CLOCK_JUMP_NS` of what
  the source's clock has mapped keeps the clock's mapping; further away the media clock itself
  restarted and its mapping starts over (:func:`clock_restarted`). Seconds, not milliseconds: this
  tells a new timeline from a gap on the old one, which the stream's own rule has flagged already.
"""

from __future__ import annotations

NS = 1_000_000_000
JITTER_NS = 2_000_000  # timestamps of contiguous audio stay within this of the count (ns)
PULLBACK_NS = JITTER_NS  # a timeline ahead of the possible by at most this is pulled back (ns)
CLOCK_JUMP_NS = 5 * NS  # a discontinuity this far from the mapped media time restarted the clock (ns)


def expected_ns(base_ns: int, samples: int, rate: int) -> int:
    """Where the sample after ``samples`` samples at ``rate`` Hz from ``base_ns`` is (ns)."""
    return base_ns + samples * NS // rate


def tolerance_ns(frames: int, rate: int) -> int:
    """How far a block of ``frames`` samples may be off the count and still continue it (ns)."""
    return max(frames * NS // rate // 2, JITTER_NS)


def continues(expected: int, media_ns: int, frames: int, rate: int) -> bool:
    """Whether a block of ``frames`` samples at ``rate`` whose first sample is at ``media_ns``
    continues a stream whose next sample is due at ``expected``."""
    return abs(media_ns - expected) <= tolerance_ns(frames, rate)


def clock_restarted(mapped_ns: int | None, media_ns: int) -> bool:
    """Whether a discontinuity at ``media_ns`` restarted the media clock, given the last media time
    the source's clock mapped (None: it has mapped nothing yet)."""
    return mapped_ns is not None and abs(media_ns - mapped_ns) > CLOCK_JUMP_NS
