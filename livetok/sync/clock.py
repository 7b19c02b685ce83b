"""One clock: per-source media time -> host monotonic time, and monotonic -> UNIX time.

All times are integer nanoseconds. ``media_ns`` is a source's own timestamp (stream PTS, V4L2
buffer time, PortAudio ADC time); ``arrival_ns`` is ``time.monotonic_ns()`` when the item reached
the host. The model (docs/sync.md)::

    arrival = offset + (1 + drift) * media + delay,      delay >= 0

``delay`` is everything between capture and hand-over (transport, decoding, scheduling). It is
never negative and sometimes huge (a frame delivered 500 ms late), so a least-squares fit through
the raw points would be biased late and dragged around by outliers. The model instead fits the
*lower envelope*: the earliest arrival seen per bucket of media time, then a robust line through
those minima over a sliding window. That line is the earliest possible arrival, i.e. capture plus
the source's irreducible delay, which the configured ``latency_ns`` removes.
"""

from __future__ import annotations

import bisect
import statistics
import time
from collections import deque

from livetok.sync.settle import Settling

NS_PER_S = 1_000_000_000
MIN_FIT_BUCKETS = 10  # fewer closed buckets than this: no slope yet (1 ms of jitter over 10 s is 100 ppm)
MAX_DRIFT = 1e-3  # |drift| above 1000 ppm is not a clock: treated as no drift (see _fit)
REJECT_SIGMAS = 4.0  # bucket minima further than this many robust sigmas from the line are outliers
REJECT_FLOOR_NS = 1_000_000  # ...but never reject within 1 ms: minima are that tight anyway
FIT_ROUNDS = 3  # fit, reject, refit: converges in 2 rounds in practice


class ClockModel:
    """Online fit of ``arrival = offset + (1 + drift) * media`` to the lower envelope of arrivals.

    ``window_s`` (s): media time over which bucket minima are fitted; longer is more precise,
    shorter follows drift changes (temperature) faster. ``bucket_s`` (s): media time per bucket;
    each bucket contributes its earliest arrival. ``latency_ns`` (ns): known delay from the
    physical instant to the earliest possible arrival (a camera's pipeline, a codec's lookahead),
    subtracted by :meth:`to_host`.

    Cost: :meth:`observe` is a few integer operations; closing a bucket (once per ``bucket_s`` of
    media) refits over at most ``window_s / bucket_s`` points, so O(1) amortised per observation.
    Deterministic: the same observations give the same mapping.
    """

    def __init__(self, window_s: float = 120.0, bucket_s: float = 1.0, latency_ns: int = 0) -> None:
        if not 0 < bucket_s <= window_s:
            raise ValueError(f"need 0 < bucket_s <= window_s, got bucket_s={bucket_s}, window_s={window_s}")
        self.window_ns = round(window_s * NS_PER_S)
        self.bucket_ns = round(bucket_s * NS_PER_S)
        self.latency_ns = int(latency_ns)
        self.reset()

    def reset(self) -> None:
        """Forget everything: call after a discontinuity (media time restarted or jumped)."""
        # Coordinates are relative to the first observation (x: media, y: arrival - media), so
        # they stay small ints and the float fit keeps ns precision whatever the epochs.
        self._ref_media: int | None = None
        self._ref_y = 0
        self._n = 0
        self._bucket = 0  # index of the open bucket
        self._cur_x = 0  # the open bucket's minimum: (x, y) of its earliest arrival
        self._cur_y = 0
        self._min_y = 0  # lowest y since reset: the mapping until the first bucket closes
        self._closed: deque[tuple[int, int]] = deque()  # closed buckets' minima in the window
        self._ready = False
        self._flat = True  # too few buckets for a slope: the line is flat at the lowest y seen
        # y(x) = _y0 + _slope * (x - _xc): the fitted line in relative coordinates
        self._xc = 0.0
        self._y0 = 0.0
        self._slope = 0.0
        self._used = 0  # bucket minima kept by the last fit (outliers rejected)

    def observe(self, media_ns: int, arrival_ns: int) -> None:
        """Add one observation: an item complete at media time ``media_ns`` reached the host at
        ``arrival_ns``.

        Pass the media time at which the item was *complete*: for a video frame its timestamp,
        for an audio block the end of its last sample (first sample + N / rate). Nothing can
        arrive before it is complete, so a block observed by its first sample would map every
        sample one block duration late.
        """
        y_abs = arrival_ns - media_ns
        if self._ref_media is None:
            self._ref_media = media_ns
            self._ref_y = y_abs
            self._cur_x = self._cur_y = self._min_y = 0
            self._n = 1
            self._y0 = 0.0
            return
        self._n += 1
        x = media_ns - self._ref_media
        y = y_abs - self._ref_y
        if y < self._min_y:
            self._min_y = y
        bucket = x // self.bucket_ns
        if bucket > self._bucket:
            if x - self._cur_x > self.window_ns:
                # Media time leapt past the whole window (a pause, or an unflagged jump): nothing
                # in the window describes the new data, so start over from this observation.
                n = self._n
                self.reset()
                self.observe(media_ns, arrival_ns)
                self._n = n
                return
            self._close_bucket(x, bucket)
            self._cur_x, self._cur_y = x, y
        elif y < self._cur_y:
            # An earlier bucket's item arriving out of order joins the open bucket: its own x is
            # kept with its y, so it still lies on the envelope where it belongs.
            self._cur_x, self._cur_y = x, y
        if self._flat:
            self._y0 = float(self._min_y)

    def _close_bucket(self, x: int, bucket: int) -> None:
        self._closed.append((self._cur_x, self._cur_y))
        self._bucket = bucket
        oldest = x - self.window_ns
        while self._closed and self._closed[0][0] < oldest:
            self._closed.popleft()  # also after a forward jump in media time: stale buckets go
        self._ready = True
        self._fit()

    def _fit(self) -> None:
        pts = list(self._closed)
        self._flat = len(pts) < MIN_FIT_BUCKETS
        if self._flat:
            # Too few points for a slope: a flat line at the earliest arrival seen, the open
            # bucket's included (a start-up burst's floor shows in the items just after it).
            self._xc, self._y0, self._slope, self._used = 0.0, float(self._min_y), 0.0, len(pts)
            return
        keep = pts
        for _ in range(FIT_ROUNDS):
            xc, y0, slope = _line(keep)
            res = [y - (y0 + slope * (x - xc)) for x, y in pts]
            med = statistics.median(res)
            mad = statistics.median(abs(r - med) for r in res)
            tol = max(REJECT_SIGMAS * 1.4826 * mad, REJECT_FLOOR_NS)
            new = [p for p, r in zip(pts, res, strict=True) if abs(r - med) <= tol]
            if len(new) < 2 or new == keep:
                break  # converged (a point rejected by a skewed first fit may come back later)
            keep = new
        xc, y0, slope = _line(keep)
        if abs(slope) > MAX_DRIFT:
            # No crystal drifts this much: a few seconds of startup jitter (threads starting, a
            # JIT, a burst) tilt a short fit. Stay flat on the earliest arrival until data agrees.
            xc, y0, slope = 0.0, float(min(y for _, y in pts)), 0.0
        self._xc, self._y0, self._slope = xc, y0, slope
        self._used = len(keep)

    def to_host(self, media_ns: int) -> int:
        """Host monotonic ns at which the instant stamped ``media_ns`` was captured.

        The fitted earliest arrival minus ``latency_ns``. Before the first bucket closes, the
        lowest ``arrival - media`` seen so far (no drift). Raises RuntimeError with no observation.
        """
        if self._ref_media is None:
            raise RuntimeError("ClockModel.to_host before any observation")
        x = media_ns - self._ref_media
        return media_ns + self._ref_y + round(self._y0 + self._slope * (x - self._xc)) - self.latency_ns

    @property
    def drift_ppm(self) -> float:
        """Fitted drift of host time against media time, in parts per million (0 until fitted).

        Positive: the host clock runs faster than the source's, i.e. a media second lasts
        ``1 + drift_ppm * 1e-6`` host seconds.
        """
        return self._slope * 1e6

    @property
    def offset_ns(self) -> int:
        """Fitted ``offset`` (ns): host time of the earliest arrival of media time 0 (latency not removed)."""
        if self._ref_media is None:
            return 0
        return self._ref_y + round(self._y0 + self._slope * (-self._ref_media - self._xc))

    @property
    def observations(self) -> int:
        """Observations since construction or the last :meth:`reset`."""
        return self._n

    @property
    def ready(self) -> bool:
        """True once one full bucket (``bucket_s`` of media time) has been observed."""
        return self._ready

    @property
    def fit_points(self) -> int:
        """Bucket minima the current line rests on (after outlier rejection); 0 before ready."""
        return self._used if self._ready else 0


def _line(pts: list[tuple[int, int]]) -> tuple[float, float, float]:
    """Least-squares line through ``pts`` as ``(xc, y0, slope)`` with ``y = y0 + slope * (x - xc)``.

    Centred on the mean x so that large x (an hour of ns) cost no precision in the sums.
    """
    n = len(pts)
    xc = sum(x for x, _ in pts) / n
    yc = sum(y for _, y in pts) / n
    sxx = sum((x - xc) ** 2 for x, _ in pts)
    if sxx == 0.0:
        return xc, yc, 0.0
    sxy = sum((x - xc) * (y - yc) for x, y in pts)
    return xc, yc, sxy / sxx


class WallClock:
    """Monotonic ns -> UNIX ns (``CLOCK_REALTIME``) through one offset fixed when sampled.

    Alignment runs on the monotonic clock (it never jumps); packets carry UNIX time so that
    streams from different machines can be compared (docs/wire-format.md, clock UNIX). The offset
    is sampled at construction as the tightest of ``samples`` bracketed readings, so it is off by
    at most half a ``monotonic_ns()`` call; it is then constant, so UNIX stamps never jump within a
    run even if NTP steps the realtime clock — :meth:`refresh` re-samples when wanted.
    ``offset_ns`` given: use it as is (tests, replays).
    """

    def __init__(self, offset_ns: int | None = None, samples: int = 7) -> None:
        self.samples = max(1, samples)
        self.uncertainty_ns = 0  # half the bracket of the sample taken: |offset error| <= this
        self.offset_ns = self._sample() if offset_ns is None else int(offset_ns)

    def _sample(self) -> int:
        best_width, best = None, 0
        for _ in range(self.samples):
            m0 = time.monotonic_ns()
            real = time.clock_gettime_ns(time.CLOCK_REALTIME)
            m1 = time.monotonic_ns()
            # the realtime reading happened somewhere in [m0, m1]: the narrowest bracket wins
            if best_width is None or m1 - m0 < best_width:
                best_width, best = m1 - m0, real - (m0 + m1) // 2
        self.uncertainty_ns = (best_width or 0) // 2 + 1
        return best

    def refresh(self) -> int:
        """Re-sample the offset (e.g. after NTP stepped the clock); returns the change in ns."""
        old = self.offset_ns
        self.offset_ns = self._sample()
        return self.offset_ns - old

    def to_unix(self, mono_ns: int) -> int:
        """UNIX ns of the monotonic instant ``mono_ns``."""
        return mono_ns + self.offset_ns

    def to_mono(self, unix_ns: int) -> int:
        """Monotonic ns of the UNIX instant ``unix_ns`` (inverse of :meth:`to_unix`)."""
        return unix_ns - self.offset_ns


MAX_SLEW = 0.05  # a source's mapping moves at most 50 ms per second of media time (5 %)
HISTORY_NS = 30 * NS_PER_S  # mapping decisions kept for items arriving this late (media time)


class SourceClock:
    """One source's media time -> host monotonic time, the same function for all its tracks.

    The :class:`ClockModel` gives a *target* mapping that moves as observations come in (most at
    start-up, when a busy machine delays the first items). Applying the model's current mapping to
    each item as it arrives would give the audio and the video of one instant different
    corrections, because their packets arrive at different moments (MPEG-TS carries audio up to
    ~0.7 s behind video). Instead the mapping is *committed* along media time: the first item at a
    new media time ``m`` fixes ``offset(m) = host - media`` there, moved towards the model's target
    by at most ``max_slew`` per unit of media time since the last commitment, and any item at an
    earlier media time — whichever track, however late — is mapped on the straight line between
    the two commitments around it (before the first: the first). The offset is thus a fixed,
    continuous, piecewise-linear function of media time with slopes within ``max_slew``, and for
    two items of one source at media times ``a`` and ``b``::

        |(host(b) - host(a)) - (b - a)| <= max_slew * |b - a|

    from the very first item (at 5 %: within 1 ms for items up to 20 ms apart, which every audio
    packet has a frame of at 30 fps and above), and the host times never step, except at
    :meth:`reset` (a discontinuity of the media clock). A start-up error of ``E`` ns is slewed away
    in ``E / max_slew`` of media time (a 290 ms late start: 5.8 s at 5 %), during which durations
    in host time are within 5 % of their media durations.

    With ``settling`` (:class:`~livetok.sync.settle.Settling`) there is no start-up error to slew
    in the usual case: :attr:`settled` stays False until the first arrivals have shown the
    source's delay floor, and the caller holds what it would map until then (the daemon's engine
    does), so the first commitment is made with that floor. Without it, ``settled`` is always True.
    """

    def __init__(self, model: ClockModel, max_slew: float = MAX_SLEW, history_ns: int = HISTORY_NS,
                 settling: Settling | None = None) -> None:
        if not 0 < max_slew < 1:
            raise ValueError(f"max_slew must be in (0, 1), got {max_slew}")
        self.model = model
        self.max_slew = max_slew
        self.history_ns = history_ns
        self.settling = settling
        self._media: list[int] = []  # commitment points, ascending media time
        self._offset: list[int] = []  # offset (host - media) from each point to the next
        self._observed: int | None = None  # the latest media time observed since the last reset

    def observe(self, media_ns: int, arrival_ns: int) -> None:
        """Feed the model (see :meth:`ClockModel.observe`) and the settling; committed mappings do
        not change."""
        self.model.observe(media_ns, arrival_ns)
        if self._observed is None or media_ns > self._observed:
            self._observed = media_ns
        if self.settling is not None:
            self.settling.observe(media_ns, arrival_ns)

    @property
    def settled(self) -> bool:
        """Whether mappings may be made (always, without ``settling``)."""
        return self.settling is None or self.settling.settled

    def poll(self, now_ns: int) -> bool:
        """:attr:`settled` at host time ``now_ns`` (a hold also ends by time passing)."""
        return self.settling is None or self.settling.poll(now_ns)

    def settle_now(self, now_ns: int | None = None) -> None:
        """End a hold at once (the stream ended, or its media clock restarts): map with what is known."""
        if self.settling is not None:
            self.settling.end(now_ns)

    def reset(self) -> None:
        """A discontinuity: forget the model and the commitments (the mapping may step here); a
        settling clock holds again."""
        self.model.reset()
        self._media.clear()
        self._offset.clear()
        self._observed = None
        if self.settling is not None:
            self.settling.reset()

    def to_host(self, media_ns: int) -> int:
        """Host monotonic ns of media time ``media_ns`` (needs one observation first)."""
        media, offset = self._media, self._offset
        if media and media_ns <= media[-1]:
            # Between two commitments: on the straight line joining them (whose slope is within the
            # slew bound), so an item between sparse commitments is no exception to the bound.
            i = bisect.bisect_right(media, media_ns)
            if i == 0:
                return media_ns + offset[0]
            m0, o0 = media[i - 1], offset[i - 1]
            if m0 == media_ns or i == len(media):
                return media_ns + o0
            m1, o1 = media[i], offset[i]
            return media_ns + o0 + (o1 - o0) * (media_ns - m0) // (m1 - m0)
        target = self.model.to_host(media_ns) - media_ns
        if media:
            room = int(self.max_slew * (media_ns - media[-1]))
            target = min(max(target, offset[-1] - room), offset[-1] + room)
        media.append(media_ns)
        offset.append(target)
        if media_ns - media[0] > 2 * self.history_ns:  # trim in chunks: amortised O(1)
            cut = bisect.bisect_left(media, media_ns - self.history_ns)
            del media[:cut], offset[:cut]
        return media_ns + target

    @property
    def last_media_ns(self) -> int | None:
        """The latest media time observed or mapped since the last reset (None: none)."""
        mapped = self._media[-1] if self._media else None
        if mapped is None or self._observed is None:
            return self._observed if mapped is None else mapped
        return max(mapped, self._observed)

    @property
    def offset_ns(self) -> int | None:
        """The latest committed offset (host - media, ns), None before the first mapping."""
        return self._offset[-1] if self._offset else None

    @property
    def target_error_ns(self) -> int:
        """How far the latest commitment still is from the model's target (ns): what slewing has
        yet to correct (0 before the first mapping)."""
        if not self._media:
            return 0
        m = self._media[-1]
        return self._offset[-1] - (self.model.to_host(m) - m)
