"""A capture thread for anything FFmpeg opens: V4L2 cameras, RTSP, HTTP, UDP/RTP/SRT MPEG-TS, files, lavfi.

The thread opens the URL with PyAV, decodes the first video stream (and the first audio stream
when wanted), converts each video frame to the model image *in this thread* with the ``prepare``
callable, and hands :class:`VideoCapture` / :class:`AudioCapture` items to two :class:`Handoff`
queues. Every open and every read has a timeout, so a silent source is detected as a stall
instead of hanging the thread; a lost or stalled source reconnects with capped exponential
backoff (:mod:`livetok.streams.worker`).

A *listening* source (UDP, RTP, an SRT listener, anything with ``listen``: it waits for a sender
rather than connecting to one) is the exception: there is nothing to reconnect to, and closing its
socket would lose what the sender sends meanwhile. It waits for data as long as it takes (only
``stop()`` ends the wait) and reports the wait instead: state ``WAITING`` before the first packet
and whenever nothing came for ``read_timeout_s`` (``stats.waits``). Sources, options and
timestamps: docs/sources.md.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction

import av
import numpy as np

from livetok.errors import LivetokError, MediaError
from livetok.media.audioconv import AudioToFloat
from livetok.media.decode import ticks_to_ns
from livetok.streams import interrupt
from livetok.streams.av_options import (
    LISTEN_WAIT_S,
    AvSourceOptions,
    SourceKind,
    effective_av_options,
    is_listening,
    source_kind,
)
from livetok.streams.handoff import Handoff
from livetok.streams.pacing import Pacer
from livetok.streams.rate_decode import RateDecoding
from livetok.streams.types import AudioCapture, SourceState, SourceStats, VideoCapture
from livetok.streams.worker import Outcome, SourceThread, Stall

log = logging.getLogger("livetok.streams")

NS = 1_000_000_000
POLL_S = 0.005  # wait between reads of a non-blocking input that had nothing (s)
# Captures without a PTS skipped at the start of a stream (RTP packets before the first keyframe
# decode to frames without one); a stream still without PTS after that many is stamped on arrival.
LEADING_NO_PTS = 10

class _Track:
    """Timestamp state of one decoded stream during one connection."""

    def __init__(self, time_base: Fraction | None, duration_ns: int, catch_up_ns: int = 0) -> None:
        self.time_base = time_base
        self.duration_ns = duration_ns  # nominal frame/block duration (ns), 0 when unknown
        self.last_ns: int | None = None  # media time of the last capture handed over (ns)
        self.last_end_ns: int | None = None  # ... and where it ended (ns)
        self.pts_mode: bool | None = None  # whether the last capture was stamped by its PTS (None: none yet)
        self.skipped = 0  # leading captures without a PTS skipped so far
        self.flag = True  # the first capture after a connect carries DISCONTINUITY
        self.catch_up = _CatchUp(catch_up_ns)  # how long a capture may wait for room in its queue


class AvSource(SourceThread):
    """Decodes one URL in its own thread; see the module docstring and docs/sources.md."""

    def __init__(
        self,
        name: str,
        url: str,
        options: AvSourceOptions,
        prepare: Callable[[av.VideoFrame], np.ndarray],
        video: Handoff[VideoCapture],
        audio: Handoff[AudioCapture] | None,
        stats: SourceStats,
    ) -> None:
        super().__init__(name, stats, options.backoff)
        self.url = url
        self.options = options
        self.kind = source_kind(url, options.format)
        self.format = options.format or ("v4l2" if url.startswith("/dev/video") else None)
        self.av_options = effective_av_options(url, options)
        self.realtime = options.realtime if options.realtime is not None else self.kind in (
            SourceKind.FILE, SourceKind.GENERATED)
        # A listener waits without a timeout only where stop() can interrupt the wait; elsewhere it
        # keeps the timeouts (and reconnects) like any other source: slower to stop is not an option.
        self.listening = is_listening(url, options.av_options) and interrupt.install()
        self._prepare = prepare
        self._video = video
        self._audio = audio
        self._pacer = Pacer(self._stopping, max_lead_ns=int(options.jump_s * NS))
        self._catch_up_ns = int(options.catch_up_s * NS) if self.kind is SourceKind.NETWORK else 0
        self._last_data_s = 0.0  # time.monotonic() of the last packet (or of the listener's open)
        self._quiet = False  # a listener with no data for read_timeout_s (or not yet any)
        self._session_data = False  # this session received a packet
        self._to_float = AudioToFloat()
        self._connects = 0
        # Looping: media time continues across a wrap, shifted by _offset_ns.
        self._offset_ns = 0
        self._end_ns = 0  # latest media end handed over (ns, shifted)
        self._rebase = False  # the next frame sets _offset_ns (first frame after a wrap)
        # The token rate: which frames are handed over, and which the decoder may skip.
        self._rate = RateDecoding(options.token_fps, stats) if options.token_fps else None

    # -- one connection ------------------------------------------------------------------------

    def _session(self) -> Outcome:
        self._session_data = False
        if self.listening:
            self._listen()
        container = self._open()
        try:
            self._connects += 1
            self.stats.connects += 1
            return self._pump(container)
        finally:
            with contextlib.suppress(av.FFmpegError, OSError):  # closing a broken connection can fail
                container.close()

    def _listen(self) -> None:
        """A listener's open is a wait for its sender: say so (once per wait, not per packet)."""
        self.stats.state = SourceState.WAITING
        self._last_data_s, self._quiet = time.monotonic(), True
        log.info("%s: listening on %s; waiting for data (the socket stays open however long it takes)",
                 self.name, self.url)

    def _watcher(self) -> interrupt.Watcher | None:
        return self._watch_quiet if self.listening else None

    def _watch_quiet(self, now_s: float) -> None:
        """At each PyAV clock read of this thread (about every 100 ms while FFmpeg waits for data):
        a listener that got nothing for ``read_timeout_s`` reports the wait, once."""
        if not self._quiet and now_s - self._last_data_s > self.options.read_timeout_s:
            self._quiet = True
            self.stats.state = SourceState.WAITING
            self.stats.waits += 1
            log.info("%s: no data for %g s; waiting (the socket stays open)", self.name, self.options.read_timeout_s)

    def _data(self) -> None:
        """A packet came."""
        now = time.monotonic()
        if self._quiet and self._session_data:
            log.info("%s: data again after %.1f s", self.name, now - self._last_data_s)
        self._last_data_s, self._quiet, self._session_data = now, False, True

    def _open(self) -> av.container.InputContainer:
        o = self.options
        timeouts = (LISTEN_WAIT_S, LISTEN_WAIT_S) if self.listening else (o.open_timeout_s, o.read_timeout_s)
        try:
            container = av.open(self.url, mode="r", format=self.format, options=self.av_options,
                                timeout=timeouts)
        except (av.ExitError, av.TimeoutError) as err:
            raise Stall(f"{self.url}: no answer within {o.open_timeout_s:g} s") from err
        except av.FFmpegError as err:
            raise MediaError(f"{self.url}: cannot open ({_reason(err)})") from err
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise MediaError(f"{self.url}: cannot open ({err})") from err
        if not (o.want_video and container.streams.video) and not (self._wants_audio and container.streams.audio):
            container.close()
            raise MediaError(f"{self.url}: no {'video' if o.want_video else 'audio'} stream")
        return container

    @property
    def _wants_audio(self) -> bool:
        return self.options.want_audio and self._audio is not None

    def _pump(self, container: av.container.InputContainer) -> Outcome:
        o = self.options
        tracks: dict[int, _Track] = {}
        streams: list[av.VideoStream | av.AudioStream] = []
        if o.want_video and container.streams.video:
            vs = container.streams.video[0]
            rate = vs.average_rate or vs.guessed_rate
            tracks[vs.index] = _Track(vs.time_base, int(NS / rate) if rate else 0, self._catch_up_ns)
            streams.append(vs)
            self.stats.nominal_fps = round(float(rate), 3) if rate else 0.0
            if self._rate is not None:
                self._rate.connected(tracks[vs.index].duration_ns)
        if self._wants_audio and container.streams.audio:
            aus = container.streams.audio[0]
            tracks[aus.index] = _Track(aus.time_base, 0, self._catch_up_ns)
            streams.append(aus)
        if self._connects > 1 or self._rebase:
            self.stats.gaps += 1  # a reconnect (or a wrap): the captures that follow are flagged
        if not self._rebase:
            self._pacer.reset()  # a new connection: its timestamps start anew
        last_data_ns = time.monotonic_ns()
        read_timeout_s = LISTEN_WAIT_S if self.listening else o.read_timeout_s
        try:
            for packet in demux_resuming(container, streams, read_timeout_s, self._stopping):
                if self._stopping.is_set():
                    return Outcome.FINISHED
                last_data_ns = time.monotonic_ns()
                self._data()
                if self._rate is None or not isinstance(packet.stream, av.VideoStream):
                    plan = [(packet, False)]
                else:
                    plan = self._rate.plan(packet, self._offset_ns)
                for p, nonref in plan:
                    if not self._decode(p, nonref, tracks[p.stream.index]):
                        return Outcome.FINISHED
        except (av.ExitError, av.TimeoutError) as err:
            if self._stopping.is_set():
                return Outcome.FINISHED
            raise Stall(f"{self.url}: no data for {o.read_timeout_s:g} s") from err
        except av.FFmpegError as err:
            if self._stopping.is_set():
                return Outcome.FINISHED
            raise MediaError(f"{self.url}: read failed ({_reason(err)})") from err
        finally:
            if self._rate is not None:
                self._rate.ended()
        if self._stopping.is_set():
            return Outcome.FINISHED
        return self._at_end(last_data_ns)

    def _at_end(self, last_data_ns: int) -> Outcome:
        if self.kind in (SourceKind.FILE, SourceKind.GENERATED):
            if not self.options.loop:
                return Outcome.FINISHED
            self.stats.loops += 1
            self._rebase = True
            return Outcome.AGAIN
        if self.listening and self._session_data:
            return Outcome.AGAIN  # its sender hung up (a listening server's one client): listen again at once
        if not self.listening and time.monotonic_ns() - last_data_ns >= self.options.read_timeout_s * NS:
            raise Stall(f"{self.url}: no data for {self.options.read_timeout_s:g} s")  # a socket timeout ended it
        return Outcome.LOST

    # -- decoding ------------------------------------------------------------------------------

    def _decode(self, packet: av.Packet, nonref: bool, track: _Track) -> bool:
        """Decode one packet (``nonref``: with skip_frame=NONREF) and deliver its frames; False when stopped."""
        if self._rate is not None and isinstance(packet.stream, av.VideoStream):
            self._rate.before_decode(packet, nonref)
        try:
            frames = packet.decode()
        except (av.InvalidDataError, av.EOFError) as err:
            self.stats.errors += 1  # a damaged packet: the decoder resynchronises on the next
            self.stats.last_error = f"{self.url}: undecodable packet ({_reason(err)})"
            return True
        for frame in frames:
            if not isinstance(frame, av.VideoFrame | av.AudioFrame):
                continue  # subtitles: never demuxed
            if self._rate is not None and isinstance(frame, av.VideoFrame):
                self._rate.decoded(self._media_ns(frame, track))
            if not self._deliver(frame, track):
                return False
        return True

    # -- one frame -----------------------------------------------------------------------------

    def _deliver(self, frame: av.VideoFrame | av.AudioFrame, track: _Track) -> bool:
        """Time-stamp, pace, convert and hand over one frame; False when stopped."""
        media_ns = self._media_ns(frame, track)
        if media_ns is None and track.pts_mode is None and track.skipped < LEADING_NO_PTS:
            track.skipped += 1  # no timestamp before the stream's first: most likely one comes next
            self.stats.extra["skipped_no_pts"] = self.stats.extra.get("skipped_no_pts", 0) + 1
            return True
        if media_ns is not None and self.realtime and not self._pacer.wait(media_ns):
            return False
        if self._stopping.is_set():
            return False
        try:
            if isinstance(frame, av.VideoFrame):
                self._hand_video(frame, track, media_ns)
            else:
                self._hand_audio(frame, track, media_ns)
        except (LivetokError, ValueError, av.FFmpegError) as err:  # an unconvertible frame: skip it
            self.stats.errors += 1
            self.stats.last_error = str(err)
        return True

    def _media_ns(self, frame: av.VideoFrame | av.AudioFrame, track: _Track) -> int | None:
        """PTS in ns (shifted across loop wraps). A frame without one follows the previous capture
        when that had a PTS (a missing timestamp inside a stamped stream); otherwise None: arrival time."""
        tb = frame.time_base or track.time_base
        if frame.pts is None or tb is None:
            return track.last_end_ns if track.pts_mode else None
        raw = ticks_to_ns(frame.pts, tb)
        if self._rebase:
            self._offset_ns = self._end_ns - raw
            self._rebase = False
        return raw + self._offset_ns

    def _stamp(self, track: _Track, media_ns: int | None, fallback_ns: int, duration_ns: int) -> int:
        """The capture's media time (``fallback_ns`` without a PTS); flags jumps and clock changes."""
        pts_mode = media_ns is not None
        stamp = media_ns if media_ns is not None else fallback_ns
        last = track.last_ns
        jumped = last is not None and (stamp < last or stamp - last > self.options.jump_s * NS)
        if (jumped or (track.pts_mode is not None and track.pts_mode != pts_mode)) and not track.flag:
            self.stats.gaps += 1  # timestamps jumped, or switched between PTS and arrival time
            track.flag = True
        track.last_ns, track.last_end_ns, track.pts_mode = stamp, stamp + duration_ns, pts_mode
        self._end_ns = max(self._end_ns, stamp + duration_ns)
        return stamp

    def _take_flag(self, track: _Track) -> bool:
        flag, track.flag = track.flag, False
        return flag

    def _hand_video(self, frame: av.VideoFrame, track: _Track, media_ns: int | None) -> None:
        duration = track.duration_ns
        if not duration and frame.duration and track.time_base:
            duration = ticks_to_ns(frame.duration, track.time_base)
        if self._rate is not None:
            # Chosen before any work on the frame; the stamp without a PTS is the arrival before it.
            stamp = self._stamp(track, media_ns, time.monotonic_ns(), duration)
            if self._rate.skips(stamp, restart=track.flag):
                self._delivered()
                return
            image = self._prepare(frame)
            arrival = time.monotonic_ns()
            if not self._rate.gate.passes_all:
                duration = self._rate.gate.period_ns  # a token frame stands for its slot
        else:
            image = self._prepare(frame)
            arrival = time.monotonic_ns()
            # Without a PTS: the arrival time (a frame's exposure is not known better than that).
            stamp = self._stamp(track, media_ns, arrival, duration)
        cap = VideoCapture(source=self.name, image=image, media_ns=stamp, arrival_ns=arrival,
                           duration_ns=duration, discontinuity=self._take_flag(track))
        self.stats.frames += 1
        if not self._video.put(cap, track.catch_up.wait_s(stamp, arrival, cap.discontinuity), self._stopping):
            self.stats.dropped_frames += 1
        self._delivered()

    def _hand_audio(self, frame: av.AudioFrame, track: _Track, media_ns: int | None) -> None:
        assert self._audio is not None  # audio streams are demuxed only with an audio handoff
        samples = self._to_float.convert(frame)
        arrival = time.monotonic_ns()
        rate = frame.sample_rate
        # Without a PTS: the block's first sample came one block duration before the hand-over.
        duration = samples.shape[1] * NS // rate
        stamp = self._stamp(track, media_ns, arrival - duration, duration)
        cap = AudioCapture(source=self.name, samples=samples, rate=rate, media_ns=stamp, arrival_ns=arrival,
                           discontinuity=self._take_flag(track))
        self.stats.blocks += 1
        if not self._audio.put(cap, track.catch_up.wait_s(stamp + duration, arrival, cap.discontinuity),
                               self._stopping):
            self.stats.dropped_blocks += 1
        self._delivered()


class _CatchUp:
    """How long a capture may wait for room in a full hand-over queue (see ``catch_up_s``).

    Only at a connection's start, when FFmpeg hands over what it buffered while probing: for the
    first ``START_NS`` of host time after the track's first capture. ``behind`` = how much later,
    relative to its media time, this capture comes than the most punctual capture so far (the
    smallest ``arrival - media``): the captures of a burst each come earlier relative to their
    media time than the one before, so they are not behind and may wait; a consumer slower than
    the stream makes them fall behind, and once that reaches the budget nothing waits any more.
    After the start a full queue drops its oldest at once, as always: a consumer that cannot keep
    up must not add latency to every frame.
    """

    START_NS = 3 * NS

    def __init__(self, budget_ns: int) -> None:
        self.budget_ns = budget_ns
        self._best: int | None = None  # smallest arrival - media since the first capture (ns)
        self._first: int | None = None  # arrival of the track's first capture (ns)

    def wait_s(self, media_ns: int, arrival_ns: int, discontinuity: bool) -> float:
        if self.budget_ns <= 0:
            return 0.0
        if self._first is None:
            self._first = arrival_ns
        if arrival_ns - self._first > self.START_NS:
            return 0.0
        lag = arrival_ns - media_ns
        if discontinuity or self._best is None or lag < self._best:
            self._best = lag  # a media clock that jumped starts a new reference
        return max(0, self.budget_ns - (lag - self._best)) / NS


def demux_resuming(container: av.container.InputContainer, streams: list[av.VideoStream | av.AudioStream],
                   read_timeout_s: float, stopping: threading.Event) -> Iterator[av.Packet]:
    """``container.demux(*streams)``, resumed when an input has nothing *yet* (EAGAIN).

    PyAV ends its demux generator with ``av.BlockingIOError`` when FFmpeg answers EAGAIN (a
    non-blocking device with no frame ready); that is not a fault: poll again every ``POLL_S``,
    and call it a stall (:class:`Stall`) only after ``read_timeout_s`` without a packet.
    """
    last_ns = time.monotonic_ns()
    while True:
        try:
            for packet in container.demux(*streams):
                last_ns = time.monotonic_ns()
                yield packet
            return
        except BlockingIOError:  # av.BlockingIOError (EAGAIN) is one too
            if stopping.wait(POLL_S):
                return
            if time.monotonic_ns() - last_ns > read_timeout_s * NS:
                raise Stall(f"{container.name}: no data for {read_timeout_s:g} s") from None


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)
