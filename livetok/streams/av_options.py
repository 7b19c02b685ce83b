"""What an FFmpeg URL is and how it is opened: its kind (file, lavfi, device, network), whether it
listens for a sender, the options a capture thread passes (:class:`AvSourceOptions`) and the socket
timeouts livetok adds (:func:`effective_av_options`)."""

from __future__ import annotations

import enum
import urllib.parse
from dataclasses import dataclass, field

from livetok.runtime.backoff import BackoffPolicy

US = 1_000_000

# FFmpeg input formats that are devices: live, never paced, never looped.
DEVICE_FORMATS = frozenset({"v4l2", "video4linux2", "alsa", "x11grab", "fbdev", "kmsgrab", "oss", "pulse", "jack"})
# URL schemes served by FFmpeg protocols that honour the generic ``rw_timeout`` option.
RW_TIMEOUT_SCHEMES = frozenset({"http", "https", "tcp", "udp", "rtp", "srt", "rtmp", "rtmps", "tls"})
# Schemes whose input always waits for a sender (it binds a port, it never connects).
LISTEN_SCHEMES = frozenset({"udp", "udplite", "rtp"})
# ... and those that do with their ``listen`` option or URL parameter (a server waiting for a client).
LISTEN_OPTION_SCHEMES = frozenset({"tcp", "tls", "http", "https", "rtmp", "rtmps", "unix"})
# A listening source's wait for data: no timeout that a sender could ever outlast (30 days, s). The
# stop interrupt (livetok.streams.interrupt) still ends it at once.
LISTEN_WAIT_S = 30 * 86_400.0


class SourceKind(enum.Enum):
    """What a URL is, which decides pacing, end-of-stream handling and the timeout options."""

    FILE = "file"  # a media file played as live: paced, may loop, ends at its end
    GENERATED = "generated"  # lavfi: paced like a file
    DEVICE = "device"  # a V4L2 camera (or another FFmpeg input device)
    NETWORK = "network"  # RTSP, HTTP, UDP, RTP, SRT ...: an end of stream means reconnect


@dataclass(frozen=True)
class AvSourceOptions:
    """How to open and read one PyAV source.

    ``av_options`` go to FFmpeg as they are (demuxer/protocol/device options, e.g.
    ``{"rtsp_transport": "udp"}`` or ``{"video_size": "1280x720", "framerate": "30",
    "input_format": "mjpeg"}`` for V4L2); livetok adds socket timeouts derived from
    ``read_timeout_s`` unless they are given here.
    """

    format: str | None = None  # FFmpeg input format ("v4l2", "lavfi", "mpegts"...); None: guessed (v4l2: /dev/video*)
    av_options: dict[str, str] = field(default_factory=dict)  # FFmpeg options, strings as on the ffmpeg command line
    open_timeout_s: float = 5.0  # connecting and probing the streams (s)
    read_timeout_s: float = 3.0  # one read with no data at all -> stall (s)
    realtime: bool | None = None  # pace to the PTS on the monotonic clock; None: for files and lavfi only
    loop: bool = False  # files and lavfi: start again at the end (DISCONTINUITY flagged, media time continues)
    want_audio: bool = True  # decode the first audio stream too (needs an audio Handoff)
    want_video: bool = True  # decode the first video stream
    jump_s: float = 5.0  # a timestamp step forward larger than this, or any step back, flags a discontinuity (s)
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    # In the first 3 s of a connection, a network stream may fall this far behind its own pace
    # waiting for room in a full hand-over queue before the oldest capture is dropped: the burst of
    # its start (delivered at once after probing) is absorbed instead of cut (s); 0: drop at once,
    # as devices and files always do, and every source after its start.
    catch_up_s: float = 1.0
    # The most video frames per second handed over, chosen on the capture clock (livetok.streams.rate);
    # None: every frame.
    token_fps: float | None = None

    def __post_init__(self) -> None:
        if self.open_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError("open_timeout_s and read_timeout_s must be positive")
        if self.catch_up_s < 0:
            raise ValueError("catch_up_s must not be negative")
        if self.token_fps is not None and not self.token_fps > 0:
            raise ValueError("token_fps must be positive")


def source_kind(url: str, fmt: str | None) -> SourceKind:
    """Classify a URL/path with its (optional) input format."""
    if fmt == "lavfi":
        return SourceKind.GENERATED
    if (fmt is not None and fmt in DEVICE_FORMATS) or url.startswith("/dev/"):
        return SourceKind.DEVICE
    if "://" in url and not url.startswith("file:"):
        return SourceKind.NETWORK
    return SourceKind.FILE


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_listening(url: str, av_options: dict[str, str] | None = None) -> bool:
    """Whether the URL waits for a sender instead of connecting to one: udp://, rtp://, srt:// in
    listener mode, tcp/http/rtmp with ``listen``, rtsp with ``rtsp_flags=listen`` (the option in
    ``av_options`` or as a URL parameter)."""
    scheme = _scheme(url)
    if scheme in LISTEN_SCHEMES:
        return True
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)

    def option(name: str) -> str:
        given = (av_options or {}).get(name)
        return given if given is not None else (query.get(name) or [""])[-1]

    if scheme == "srt":
        return option("mode") == "listener"
    if scheme in LISTEN_OPTION_SCHEMES:
        return option("listen") not in ("", "0")
    if scheme in ("rtsp", "rtsps"):
        return "listen" in option("rtsp_flags").split("+")
    return False


def effective_av_options(url: str, options: AvSourceOptions) -> dict[str, str]:
    """FFmpeg options with the socket timeouts livetok adds (the caller's values win)."""
    scheme = _scheme(url)
    # A second above PyAV's read timeout: PyAV's ends a read as a recognisable stall (av.ExitError),
    # the socket timeout is the backstop for waits PyAV does not time (closing, seeking).
    socket_us = str(int((options.read_timeout_s + 1.0) * US))
    out: dict[str, str] = {}
    if is_listening(url, options.av_options):
        pass  # a listener waits for its sender as long as it takes: no socket timeout
    elif scheme in ("rtsp", "rtsps"):
        out["timeout"] = socket_us  # RTSP: socket I/O timeout (µs); called stimeout before FFmpeg 5
    elif scheme in RW_TIMEOUT_SCHEMES:
        out["rw_timeout"] = socket_us  # any protocol: a read/write waiting longer fails (µs)
    if scheme == "udp":
        out["overrun_nonfatal"] = "1"  # a full receive FIFO drops packets rather than ending the stream
    out.update(options.av_options)
    return out
