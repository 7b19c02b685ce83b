"""Continuous media time for a stream of audio blocks from a device that delivers contiguous samples.

Consumers (the audio tokenizer, the engine's gap check) expect block ``k+1`` to start exactly where
block ``k`` ended, and the clock model (livetok.sync) absorbs any constant offset and the drift
between the device's sample clock and the host's. What they cannot absorb is jitter or a jump that
is not flagged. Device timestamps are not good enough for that: through PulseAudio's ALSA plugin
PortAudio's ADC times jitter by ±20 ms and, for the first second or so, claim a capture delay of
~480 ms that then drops to ~20 ms *while every sample arrives* (verified with a tone's phase). So:

    media_ns = anchor + (samples since the anchor) * 10^9 / rate

* **anchor**: the device time of the first block (the ADC time on the monotonic clock) when it is
  possible, i.e. earlier than ``arrival - duration`` (the block's first sample existed at least one
  block before it arrived); otherwise (no ADC time, or an impossible one) that bound less
  ``margin_ns``: later blocks may arrive with less scheduling delay than the first (PulseAudio's
  plugin delivers 10 ms blocks in pairs, 30 ms of jitter), and starting early avoids pulling back.
  A constant offset costs nothing: the clock model absorbs it;
* **causality**: a timeline later than that bound is pulled back, silently when by at most
  ``pullback_ns`` (a device clock slightly faster than the host's; livetok.media.continuity),
  otherwise it restarts;
* **lost samples**: a device overflow restarts the timeline. Losses the device does not report
  (PulseAudio drops silently) show as a *step* in the lag ``arrival - duration - media``: its minimum
  over a window of ``window_ns`` of wall time rises by more than ``jump_ns`` over the previous
  window's (a slow rise is clock drift; a burst of buffered blocks after a pause raises the lag only
  briefly, not its minimum). The block that reveals it restarts the timeline at its device time
  (or where the count puts it, if that is later: time does not run back over a loss).

A restart makes that block a DISCONTINUITY; it is placed where the loss was *detected*, up to one
window after it happened.
"""

from __future__ import annotations

from livetok.media.continuity import NS, PULLBACK_NS


class SampleTimeline:
    """Stamps consecutive blocks of one open stream; see the module docstring. All times in ns."""

    def __init__(self, jump_ns: int, window_ns: int = 250_000_000, pullback_ns: int = PULLBACK_NS,
                 margin_ns: int = 50_000_000) -> None:
        self.jump_ns = jump_ns
        self.window_ns = window_ns
        self.pullback_ns = pullback_ns
        self.margin_ns = margin_ns
        self.restarts = 0  # restarts after the first anchor (count)
        self.reset()

    def reset(self) -> None:
        """A new stream: the next block anchors the timeline (and is a discontinuity)."""
        self._anchor: int | None = None
        self._rate = 0
        self._samples = 0  # samples since the anchor
        self._window_start: int | None = None  # arrival of the window's first block
        self._window_min = 0  # smallest lag in the open window
        self._previous_min: int | None = None  # smallest lag in the last closed window

    def stamp(self, frames: int, rate: int, device_ns: int | None, arrival_ns: int,
              overflow: bool = False) -> tuple[int, bool]:
        """``(media_ns, discontinuity)`` of a block of ``frames`` samples at ``rate`` Hz.

        ``device_ns``: the device's time of the block's first sample on the monotonic clock (None
        when it gives none); ``arrival_ns``: monotonic time of the callback.
        """
        latest = arrival_ns - frames * NS // rate
        device = device_ns if device_ns is not None and device_ns < latest else latest - self.margin_ns
        if self._anchor is None or overflow or rate != self._rate:
            return self._restart(device, frames, rate, arrival_ns), True
        media = self._anchor + self._samples * NS // rate
        if media > latest:
            if media - latest > self.pullback_ns:
                return self._restart(device, frames, rate, arrival_ns), True
            self._anchor -= media - latest
            media = latest
        if self._lost(latest - media, arrival_ns):
            # Samples were lost: this block is later than the count says, never earlier.
            return self._restart(max(device, media), frames, rate, arrival_ns), True
        self._samples += frames
        return media, False

    def _lost(self, lag: int, arrival_ns: int) -> bool:
        """Feed one lag; True when the last window's minimum stepped up by more than jump_ns."""
        if self._window_start is None:
            self._window_start, self._window_min = arrival_ns, lag
            return False
        self._window_min = min(self._window_min, lag)
        if arrival_ns - self._window_start < self.window_ns:
            return False
        closed, previous = self._window_min, self._previous_min
        self._previous_min, self._window_start = closed, None
        return previous is not None and closed - previous > self.jump_ns

    def _restart(self, device_ns: int, frames: int, rate: int, arrival_ns: int) -> int:
        if self._anchor is not None:
            self.restarts += 1
        self.reset()
        self._anchor, self._rate, self._samples = device_ns, rate, frames
        self._lost(arrival_ns - frames * NS // rate - device_ns, arrival_ns)  # opens the first window
        return device_ns
