"""A token frame rate per source: which captured frames are tokenized, chosen on the capture clock.

A source with ``token_fps`` keeps one frame per *slot* of ``1 / token_fps`` seconds of its own
media time: the first frame at or after each slot boundary, the slots anchored at the stream's
first frame (and again at each discontinuity: a reconnect, a wrap, a timestamp jump). So a
30 -> 5 fps source gives one token frame every 200 ms of capture time, not every sixth frame
whatever its time, and a variable-rate or jittery camera still gets one frame per slot (none in a
slot the camera left empty). A frame counts as "at" a boundary up to half a camera frame early
(:attr:`RateGate.tolerance_ns`): timestamps rounded to a coarse time base (RTP's 90 kHz, FLV's
milliseconds) or jittering by less than half a frame then still pick the frame nearest each
boundary. A token rate at or above the camera's nominal rate keeps every frame.

The gate runs in the capture thread before anything is done with the frame (no resize, no colour
conversion, no tokenizer work for a skipped one). :class:`DecodeSkip` goes further: a packet whose
frame the gate will certainly skip (an earlier frame already holds its slot) is decoded with
FFmpeg's ``skip_frame=NONREF``, so a non-reference frame (most B-frames) is not decoded at all,
while reference frames, which later frames need, still are; with an intra-only codec (MJPEG, raw
video: no frame refers to another) such a packet is not given to the decoder at all. At low rates,
:class:`KeyframeHold` goes further where the stream's keyframes come at least once a slot: the
frames after the one kept are held undecoded and dropped when a keyframe comes before the next slot
(what ``skip_frame=NONKEY`` would save, without ever decoding a frame from missing references).
All times are integer ns.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction
from typing import Generic, TypeVar

T = TypeVar("T")

NS = 1_000_000_000
# A token rate within 0.1 % of the camera's nominal rate counts as "at" it (keeps every frame):
# 29.97 for a 30000/1001 camera.
AT_CAMERA_RATE = 0.999


class RateGate:
    """Chooses the token frames of one source (module doc). Not thread-safe: one capture thread."""

    def __init__(self, token_fps: float) -> None:
        if not token_fps > 0:
            raise ValueError(f"token_fps must be positive, got {token_fps}")
        self.rate = Fraction(token_fps).limit_denominator(1_000_000)
        self.period_ns = NS * self.rate.denominator // self.rate.numerator  # slot length (ns), rounded down
        self.frame_ns = 0  # the camera's nominal frame duration (ns); 0: unknown
        self.anchor_ns: int | None = None  # media time of the frame that anchors the slots
        self.last_slot = -1  # slot of the last kept frame (-1: none since the anchor)

    def set_frame_ns(self, frame_ns: int) -> None:
        """The camera's nominal frame duration (ns; 0: unknown), from the stream's rate."""
        self.frame_ns = max(0, frame_ns)

    @property
    def passes_all(self) -> bool:
        """The token rate is at or above the camera's nominal rate: every frame is kept."""
        return self.frame_ns > 0 and self.rate * self.frame_ns >= AT_CAMERA_RATE * NS

    @property
    def tolerance_ns(self) -> int:
        """How early a frame may be and still count as at its slot's boundary: half a camera frame
        (never more than half a slot); 0 when the camera's rate is unknown."""
        return min(self.frame_ns, self.period_ns) // 2

    def slot(self, media_ns: int) -> int | None:
        """The slot ``media_ns`` falls in (tolerance included), or None before an anchor."""
        if self.anchor_ns is None:
            return None
        r = self.rate
        return (media_ns - self.anchor_ns + self.tolerance_ns) * r.numerator // (NS * r.denominator)

    def keep(self, media_ns: int, restart: bool = False) -> bool:
        """Whether the frame at ``media_ns`` is a token frame. ``restart``: the frame starts a new
        timeline (a discontinuity), so it anchors the slots again and is kept."""
        if restart or self.anchor_ns is None:
            self.anchor_ns, self.last_slot = media_ns, 0
            return True
        if self.passes_all:
            return True
        k = self.slot(media_ns)
        assert k is not None
        if k <= self.last_slot:
            return False
        self.last_slot = k
        return True


class DecodeSkip:
    """Which packets of one video stream may be decoded with ``skip_frame=NONREF`` (module doc),
    and the count of frames the decoder then never gave (they were skipped by the rate too).

    A packet may be skipped when an *earlier* packet (by presentation time) falls in the same slot:
    the gate keeps the first frame of each slot, so this one is never kept, whatever the decode
    order (B-frames come after the later frame they refer to). Reference frames are decoded anyway
    (the decoder only discards non-reference ones), so the frames that are kept decode exactly as
    in a full decode. Times are the stream's media times in ns on the gate's timeline.
    """

    KEEP_SLOTS = 8  # slots remembered (packets come in decode order: a few frames out of order at most)
    KEEP_COUNTED = 64  # frames remembered as "never decoded" (a late frame that did come is taken back)

    def __init__(self, gate: RateGate) -> None:
        self.gate = gate
        self.reset()

    def reset(self) -> None:
        """A new connection: nothing is known of its packets."""
        self._first: dict[int, int] = {}  # slot -> earliest packet time seen in it
        self._anchor: int | None = None  # the gate's anchor these slots are counted from
        self._pending: list[int] = []  # times of packets sent with the skip flag, not seen decoded yet
        self._counted: deque[int] = deque(maxlen=self.KEEP_COUNTED)  # pending ones taken as never decoded

    def skippable(self, media_ns: int | None, armed: bool) -> bool:
        """Whether the packet at ``media_ns`` may be decoded with NONREF, or not at all (None: no
        timestamp, never). ``armed``: the gate's anchor belongs to this connection (its first frame
        was seen). The caller says :meth:`sent` when it does decode it with NONREF."""
        g = self.gate
        if media_ns is None or not armed or g.anchor_ns is None or g.passes_all:
            return False
        if self._anchor != g.anchor_ns:  # re-anchored: the old slots mean nothing
            self._anchor, self._first = g.anchor_ns, {}
        k = g.slot(media_ns)
        assert k is not None
        first = self._first.get(k)
        if first is None or media_ns < first:  # the earliest of its slot so far: it may be the one kept
            self._first[k] = media_ns
            if len(self._first) > self.KEEP_SLOTS:
                del self._first[min(self._first)]
            return False
        return True

    def sent(self, media_ns: int) -> None:
        """The skippable packet at ``media_ns`` went to the decoder with NONREF: it may not come out."""
        self._pending.append(media_ns)

    def decoded(self, media_ns: int | None) -> int:
        """A frame came out of the decoder. Returns how many skip-flagged frames before it (in
        presentation order) never came: the decoder discarded them. Negative when this frame had been
        counted so already (it came late after all): the caller takes the count back."""
        if media_ns is None:
            return 0
        if media_ns in self._counted:
            self._counted.remove(media_ns)
            return -1
        gone = [t for t in self._pending if t < media_ns]
        self._pending = [t for t in self._pending if t > media_ns]
        self._counted.extend(gone)
        return len(gone)

    def end(self) -> int:
        """The connection ended: every skip-flagged frame not seen decoded was discarded; their count."""
        n = len(self._pending)
        self._pending = []
        return n


class KeyframeHold(Generic[T]):
    """At low token rates, skip decoding whole runs of frames up to the next keyframe (module doc).

    After the frame kept for a slot, the frames that follow in that slot are not needed themselves;
    they are needed only as references of the next frame kept, and only if no keyframe comes before
    it. So they are *held*, undecoded: a keyframe that comes first discards them (never decoded,
    counted), the next slot's first frame arriving first has them decoded, in order, before itself.
    Either way the frames kept decode exactly as in a full decode. Holding is only worth it, and only
    done, when the stream's keyframe interval (measured between its last two keyframes) fits in a
    slot, and only for streams without frame reordering (no B-frames: the caller says), where decode
    order is presentation order. At most ``max_held`` items are held (then they are decoded).
    """

    def __init__(self, gate: RateGate, max_held: int = 300) -> None:
        self.gate = gate
        self.max_held = max_held
        self.reset()

    def reset(self) -> None:
        """A new connection: nothing held, its keyframe interval not known yet."""
        self.held: list[T] = []
        self._last_key: int | None = None
        self.interval_ns: int | None = None  # between the last two keyframes (ns)

    @property
    def fits(self) -> bool:
        """The keyframe interval is known and no longer than a slot."""
        return self.interval_ns is not None and 0 < self.interval_ns <= self.gate.period_ns

    def offer(self, item: T, media_ns: int | None, keyframe: bool, skippable: bool,
              reorders: bool) -> tuple[list[T], int]:
        """One packet in decode order: ``(what to decode now, in order; how many held ones were dropped)``.
        ``skippable``: an earlier frame holds its slot (:class:`DecodeSkip`); ``reorders``: the decoder
        reorders frames (B-frames): never hold then."""
        if keyframe:
            if media_ns is not None:
                if self._last_key is not None and media_ns > self._last_key:
                    self.interval_ns = media_ns - self._last_key
                self._last_key = media_ns
            dropped, self.held = len(self.held), []
            return [item], dropped
        if skippable and not reorders and self.fits and len(self.held) < self.max_held:
            self.held.append(item)
            return [], 0
        out, self.held = [*self.held, item], []
        return out, 0

    def end(self) -> int:
        """The connection ended: what was held is dropped; its count."""
        n, self.held = len(self.held), []
        return n
