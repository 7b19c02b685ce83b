"""The token rate inside a PyAV capture thread: which packets to decode, how, and the books of those
never decoded (the choices themselves are :mod:`livetok.streams.rate`'s)."""

from __future__ import annotations

import av

from livetok.media.decode import ticks_to_ns
from livetok.streams.rate import DecodeSkip, KeyframeHold, RateGate
from livetok.streams.types import SourceStats


class RateDecoding:
    """One source's token rate over its connections: the gate that keeps a frame per slot, the
    decoder's skip_frame, the frames held until a keyframe; frames never decoded are counted in
    ``stats.skipped_by_rate`` and ``stats.undecoded``."""

    def __init__(self, token_fps: float, stats: SourceStats) -> None:
        self.gate = RateGate(token_fps)
        self.stats = stats
        self._skip = DecodeSkip(self.gate)
        self._hold: KeyframeHold[av.Packet] = KeyframeHold(self.gate)
        self._armed = False  # this connection delivered a video frame: the gate's slots are its own
        self._nonref = False  # the video decoder's skip_frame is NONREF now
        self._last_ns: int | None = None  # the last packet's time (decode order)
        self._reorders = False  # this connection's packets came out of presentation order (B-frames)

    def connected(self, frame_ns: int) -> None:
        """A new connection whose camera's nominal frame duration is ``frame_ns`` (0: unknown)."""
        self.gate.set_frame_ns(frame_ns)
        self._skip.reset()
        self._hold.reset()
        self._armed = self._nonref = self._reorders = False
        self._last_ns = None

    def ended(self) -> None:
        """The connection ended: what was sent to be skipped or held and never came is counted."""
        self._undecoded(self._skip.end() + self._hold.end())

    def plan(self, packet: av.Packet, offset_ns: int) -> list[tuple[av.Packet, bool]]:
        """The packets to decode now, each with whether NONREF will do: none for an intra-only codec's
        packet that will not be kept, or one held until the next keyframe or slot; the held ones
        before this one when the next slot came first. ``offset_ns``: added to the packet's time
        (a looped file's shift)."""
        if packet.size == 0:  # the end of the stream flushes the decoder: no frame after it needs the held ones
            self._undecoded(self._hold.end())
            return [(packet, False)]
        tb = packet.time_base or packet.stream.time_base
        media_ns = None if packet.pts is None or tb is None else ticks_to_ns(packet.pts, tb) + offset_ns
        ctx = packet.stream.codec_context
        if media_ns is not None:
            # The decoder may learn of reordering late (no VUI): packets out of order say it at once.
            self._reorders |= self._last_ns is not None and media_ns < self._last_ns
            self._last_ns = media_ns
        skip = self._skip.skippable(media_ns, self._armed)
        if skip and ctx.codec.intra_only:
            self._undecoded(1)
            return []
        out, dropped = self._hold.offer(packet, media_ns, packet.is_keyframe, skip,
                                        self._reorders or bool(ctx.has_b_frames))
        self._undecoded(dropped)
        if skip and out and out[-1] is packet:
            assert media_ns is not None  # a packet without a timestamp is never skippable
            self._skip.sent(media_ns)
            return [(p, p is packet) for p in out]
        return [(p, False) for p in out]

    def before_decode(self, packet: av.Packet, nonref: bool) -> None:
        """Set the decoder's skip_frame for this packet (only when it changes)."""
        if nonref != self._nonref:
            packet.stream.codec_context.skip_frame = "NONREF" if nonref else "DEFAULT"
            self._nonref = nonref

    def decoded(self, media_ns: int | None) -> None:
        """A video frame came out of the decoder: those sent with NONREF before it that never came are counted."""
        self._undecoded(self._skip.decoded(media_ns))

    def skips(self, media_ns: int, restart: bool) -> bool:
        """Whether the token rate skips the frame at ``media_ns`` (counted); ``restart``: a discontinuity."""
        self._armed = True
        if self.gate.keep(media_ns, restart=restart):
            return False
        self.stats.skipped_by_rate += 1
        return True

    def _undecoded(self, n: int) -> None:
        # negative: a frame counted so came out after all
        self.stats.skipped_by_rate += n
        self.stats.undecoded += n


class FileRate(RateDecoding):
    """The token rate of a file decoded whole (``livetok tokenize --token-fps``), chosen as a live
    source playing that file chooses (:class:`~livetok.streams.av_source.AvSource`): the same packets
    decoded the same way, the slots anchored at the first frame and again wherever its timestamps step
    back or jump forward by more than ``jump_s`` (a live source's discontinuity), a kept frame standing
    for its slot. Fits :class:`livetok.media.decode.VideoRate`; its books are in ``stats``."""

    def __init__(self, token_fps: float, stats: SourceStats | None = None, jump_s: float = 5.0) -> None:
        super().__init__(token_fps, stats if stats is not None else SourceStats())
        self.jump_ns = round(jump_s * 1_000_000_000)
        self._last_frame_ns: int | None = None  # the last video frame's media time (kept or not)

    def keeps(self, media_ns: int) -> bool:
        """Whether the decoded frame at ``media_ns`` is a token frame (counted either way)."""
        last, self._last_frame_ns = self._last_frame_ns, media_ns
        restart = last is None or media_ns < last or media_ns - last > self.jump_ns
        if self.skips(media_ns, restart):
            return False
        self.stats.frames += 1
        return True

    def kept_duration_ns(self, duration_ns: int) -> int:
        """A kept frame's duration: its slot, or its own when the rate keeps every frame."""
        return duration_ns if self.gate.passes_all else self.gate.period_ns
