"""Opening and decoding media files with PyAV, with errors translated to one-line MediaErrors.

A decoded frame is handed on as a :class:`MediaFrame` whose timestamps are integer nanoseconds of
media time (pts x time_base), measured from the container's first timestamp.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal, Protocol

import av

from livetok.errors import MediaError

NS = 1_000_000_000
# How far decoding may stop short of the duration the container states before the input is said to
# have ended early (a truncated or partial file): 0.25 s, or 1 % of a longer input.
ENDED_EARLY_S = 0.25
ENDED_EARLY_FRACTION = 0.01


@dataclass
class DecodeNotes:
    """What :func:`decode` noticed that is not an error: one line per finding, naming the file."""

    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MediaFrame:
    """One decoded frame. ``duration_ns`` is 0 when the stream does not say."""

    kind: Literal["audio", "video"]
    frame: av.AudioFrame | av.VideoFrame
    pts_ns: int
    duration_ns: int

    @property
    def audio(self) -> av.AudioFrame:
        if not isinstance(self.frame, av.AudioFrame):
            raise TypeError("not an audio frame")
        return self.frame

    @property
    def video(self) -> av.VideoFrame:
        if not isinstance(self.frame, av.VideoFrame):
            raise TypeError("not a video frame")
        return self.frame


class VideoRate(Protocol):
    """A token rate applied while a file is decoded (:class:`livetok.streams.rate_decode.FileRate`):
    which video packets are decoded and how (``skip_frame``), which decoded frames are kept. Times are
    the stream's media times in ns; a packet's is its pts plus ``offset_ns``, a frame's as
    :class:`MediaFrame` gives it."""

    def connected(self, frame_ns: int) -> None:
        """The video stream's nominal frame duration (ns; 0: unknown), before its first packet."""

    def plan(self, packet: av.Packet, offset_ns: int) -> list[tuple[av.Packet, bool]]:
        """The packets to decode now, each with whether ``skip_frame=NONREF`` will do."""

    def before_decode(self, packet: av.Packet, nonref: bool) -> None:
        """Set the decoder's skip_frame for this packet."""

    def decoded(self, media_ns: int | None) -> None:
        """A video frame came out of the decoder."""

    def keeps(self, media_ns: int) -> bool:
        """Whether the decoded frame at ``media_ns`` is handed on."""

    def kept_duration_ns(self, duration_ns: int) -> int:
        """The duration a kept frame stands for (its slot of the token rate)."""

    def ended(self) -> None:
        """The file ended (or decoding stopped)."""


def ticks_to_ns(ticks: int, time_base: Fraction) -> int:
    """Integer media time -> integer ns, rounded down (exact for every common time base)."""
    return ticks * time_base.numerator * NS // time_base.denominator


def open_media(path: str | Path, options: dict[str, str] | None = None) -> av.container.InputContainer:
    """Open a file (or URL) for reading, with a clear error for the usual ways that fails."""
    p = Path(path)
    name = str(path)
    if "://" not in name:
        try:
            st = p.stat()
        except FileNotFoundError:
            raise MediaError(f"{name}: no such file") from None
        except OSError as err:
            raise MediaError(f"{name}: cannot open ({(err.strerror or str(err)).lower()})") from None
        if stat.S_ISDIR(st.st_mode):
            raise MediaError(f"{name}: is a directory, not a media file")
        if not stat.S_ISREG(st.st_mode):
            raise MediaError(f"{name}: is {_file_kind(st.st_mode)}, not a regular file: livetok reads media "
                             "files (for live capture, `livetok run --source`)")
        if st.st_size == 0:
            raise MediaError(f"{name}: empty file")
    try:
        container = av.open(name, mode="r", options=options or {}, timeout=(10.0, 10.0))
    except av.FFmpegError as err:
        raise MediaError(f"{name}: not a media file FFmpeg can open ({_reason(err)})") from err
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise MediaError(f"{name}: cannot open ({err})") from err
    if not container.streams.video and not container.streams.audio:
        container.close()
        raise MediaError(f"{name}: has no audio or video stream")
    return container


def nominal_fps(name: str | Path, input_format: str | None = None) -> float | None:
    """The first video stream's nominal frame rate (frames/s) as the container states it: its
    average rate, else FFmpeg's guess; None when it has no video, states no rate, or cannot be
    opened (the caller's own checks say why). Reads the header only.

    Args:
        name: a media file, or with ``input_format`` what that format opens (``lavfi``: a graph).
        input_format: an FFmpeg input format, None to let FFmpeg guess from the file.
    """
    try:
        container = (av.open(str(name), mode="r", format=input_format, timeout=(10.0, 10.0)) if input_format
                     else open_media(name))
    except (MediaError, av.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return None
    with container:
        if not container.streams.video:
            return None
        vs = container.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate
        return float(rate) if rate else None


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _reason(err: av.FFmpegError) -> str:
    return getattr(err, "strerror", None) or str(err)


def decode(path: str | Path, audio: bool = True, video: bool = True,
           notes: DecodeNotes | None = None, rate: VideoRate | None = None) -> Iterator[MediaFrame]:
    """Demux and decode the first video and first audio stream, in file order.

    Corrupt packets are skipped by FFmpeg's decoders; a file that yields no frame at all raises.
    When decoding stops well short of the duration the container states (a file cut short, such
    as a faststart MP4 truncated in transfer), a warning naming the file is added to ``notes``.
    ``rate``: a token rate (:class:`VideoRate`); only the video frames it keeps are yielded, each with
    the duration it stands for.
    """
    container = open_media(path)
    name = str(path)
    try:
        streams = _streams(container, audio, video)
        if not streams:
            return
        start = _start_ticks(container)
        if rate is not None and isinstance(streams[0], av.VideoStream):
            rate.connected(_frame_ns(streams[0]))
        count = 0
        next_ns = {"audio": 0, "video": 0}  # where a frame without pts is placed: after the last one
        reached: dict[str, int] = {}  # media time each kind was decoded up to
        for packet in container.demux(*streams):
            for frame in _decoded(packet, rate, -start):
                mf = _media_frame(frame, start, next_ns)
                next_ns[mf.kind] = mf.pts_ns + mf.duration_ns
                reached[mf.kind] = max(reached.get(mf.kind, mf.pts_ns), mf.pts_ns + mf.duration_ns)
                count += 1
                if rate is not None and mf.kind == "video":
                    if not rate.keeps(mf.pts_ns):
                        continue  # chosen before any conversion
                    mf = MediaFrame(mf.kind, mf.frame, mf.pts_ns, rate.kept_duration_ns(mf.duration_ns))
                yield mf
        if count == 0:
            raise MediaError(f"{name}: no decodable audio or video frames")
        early = _ended_early(container, streams, start, reached)
        if early and notes is not None:
            notes.warnings.append(f"{name}: the input ended early: {early} (a truncated or partial file?); "
                                  "tokens were made for what was there")
    except av.FFmpegError as err:
        raise MediaError(f"{name}: decoding failed ({_reason(err)})") from err
    finally:
        if rate is not None:
            rate.ended()
        container.close()


def _streams(container: av.container.InputContainer, audio: bool, video: bool
             ) -> list[av.VideoStream | av.AudioStream]:
    """The first video stream (decoded with FFmpeg's threads) and the first audio stream, as asked."""
    streams: list[av.VideoStream | av.AudioStream] = []
    if video and container.streams.video:
        streams.append(container.streams.video[0])
        container.streams.video[0].thread_type = "AUTO"  # frame + slice threads for the decoder
    if audio and container.streams.audio:
        streams.append(container.streams.audio[0])
    return streams


def _frame_ns(stream: av.VideoStream) -> int:
    """The stream's nominal frame duration (ns; 0: unknown), as a live source reads it."""
    fps = stream.average_rate or stream.guessed_rate
    return int(NS / fps) if fps else 0


def _decoded(packet: av.Packet, rate: VideoRate | None, offset_ns: int) -> list[av.AudioFrame | av.VideoFrame]:
    """The frames one demuxed packet gives (none for a damaged one: its decoder resynchronises on the
    next); with a token rate, the video packets it plans, decoded as it says."""
    video = isinstance(packet.stream, av.VideoStream)
    plan = rate.plan(packet, offset_ns) if rate is not None and video else [(packet, False)]
    out: list[av.AudioFrame | av.VideoFrame] = []
    for p, nonref in plan:
        if rate is not None and video:
            rate.before_decode(p, nonref)
        try:
            frames = p.decode()
        except av.InvalidDataError:
            continue
        for frame in frames:
            if not isinstance(frame, av.AudioFrame | av.VideoFrame):
                continue  # subtitles: not demuxed, never reached
            if rate is not None and isinstance(frame, av.VideoFrame):
                tb = frame.time_base
                rate.decoded(None if frame.pts is None or tb is None else ticks_to_ns(frame.pts, tb) + offset_ns)
            out.append(frame)
    return out


def _ended_early(container: av.container.InputContainer, streams: list[av.VideoStream | av.AudioStream],
                 start_ns: int, reached: dict[str, int]) -> str:
    """``"decoded video to 0.92 s of the 2.00 s the container states"`` when a stream stopped well
    short of its stated end, else ""."""
    short = []
    for s in streams:
        stated = _stated_end_ns(container, s, start_ns)
        if stated is None or stated <= 0:
            continue
        got = reached.get(s.type, 0)
        if stated - got > max(ENDED_EARLY_S * NS, ENDED_EARLY_FRACTION * stated):
            short.append((s.type, got, stated))
    if not short:
        return ""
    parts = " and ".join(f"{kind} to {got / NS:.2f} s" for kind, got, _ in short)
    return f"decoded {parts} of the {max(st for *_, st in short) / NS:.2f} s the container states"


def _stated_end_ns(container: av.container.InputContainer, s: av.VideoStream | av.AudioStream,
                   start_ns: int) -> int | None:
    """Where a stream should end, in media time: its own duration when the header gives one, else the
    container's."""
    if s.duration and s.time_base:
        return ticks_to_ns((s.start_time or 0) + s.duration, s.time_base) - start_ns
    if container.duration:
        return int(container.duration) * 1000
    return None


def _start_ticks(container: av.container.InputContainer) -> int:
    # container.start_time is in AV_TIME_BASE (µs); media time counts from it.
    return int(container.start_time or 0) * 1000


def _media_frame(frame: av.AudioFrame | av.VideoFrame, start_ns: int, next_ns: dict[str, int]) -> MediaFrame:
    kind: Literal["audio", "video"] = "audio" if isinstance(frame, av.AudioFrame) else "video"
    tb, ticks = frame.time_base, frame.pts
    if ticks is not None and tb is not None:
        pts = ticks_to_ns(ticks, tb) - start_ns
        dur = ticks_to_ns(frame.duration or 0, tb)
    else:
        pts, dur = next_ns[kind], 0
    if isinstance(frame, av.AudioFrame) and not dur and frame.sample_rate:
        dur = frame.samples * NS // frame.sample_rate
    return MediaFrame(kind=kind, frame=frame, pts_ns=pts, duration_ns=dur)
