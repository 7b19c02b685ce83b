"""Opening and decoding media files with PyAV, with errors translated to one-line MediaErrors.

A decoded frame is handed on as a :class:`MediaFrame` whose timestamps are integer nanoseconds of
media time (pts x time_base), measured from the container's first timestamp.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av

from livetok.errors import MediaError

NS = 1_000_000_000


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


def ticks_to_ns(ticks: int, time_base: Fraction) -> int:
    """Integer media time -> integer ns, rounded down (exact for every common time base)."""
    return ticks * time_base.numerator * NS // time_base.denominator


def open_media(path: str | Path, options: dict[str, str] | None = None) -> av.container.InputContainer:
    """Open a file (or URL) for reading, with a clear error for the usual ways that fails."""
    p = Path(path)
    name = str(path)
    if "://" not in name:
        if not p.exists():
            raise MediaError(f"{name}: no such file")
        if p.is_dir():
            raise MediaError(f"{name}: is a directory, not a media file")
        if p.stat().st_size == 0:
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


def _reason(err: av.FFmpegError) -> str:
    return getattr(err, "strerror", None) or str(err)


def decode(path: str | Path, audio: bool = True, video: bool = True) -> Iterator[MediaFrame]:
    """Demux and decode the first video and first audio stream, in file order.

    Corrupt packets are skipped by FFmpeg's decoders; a file that yields no frame at all raises.
    """
    container = open_media(path)
    name = str(path)
    try:
        streams: list[av.VideoStream | av.AudioStream] = []
        if video and container.streams.video:
            streams.append(container.streams.video[0])
            container.streams.video[0].thread_type = "AUTO"  # frame + slice threads for the decoder
        if audio and container.streams.audio:
            streams.append(container.streams.audio[0])
        if not streams:
            return
        start = _start_ticks(container)
        count = 0
        next_ns = {"audio": 0, "video": 0}  # where a frame without pts is placed: after the last one
        for packet in container.demux(*streams):
            try:
                frames = packet.decode()
            except av.InvalidDataError:
                continue  # a damaged packet: its decoder resynchronises on the next one
            for frame in frames:
                if not isinstance(frame, av.AudioFrame | av.VideoFrame):
                    continue  # subtitles: not demuxed, never reached
                mf = _media_frame(frame, start, next_ns)
                next_ns[mf.kind] = mf.pts_ns + mf.duration_ns
                count += 1
                yield mf
        if count == 0:
            raise MediaError(f"{name}: no decodable audio or video frames")
    except av.FFmpegError as err:
        raise MediaError(f"{name}: decoding failed ({_reason(err)})") from err
    finally:
        container.close()


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
