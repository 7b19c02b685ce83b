"""The ``sources:`` section: cameras, streams, files, lavfi graphs, microphones, the synthetic source.

A list discriminated by ``kind``; every field states its unit and bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from livetok.config.base import NAME, Strict

# Source kinds that give video, and those whose own audio track a group may use.
VIDEO_KINDS = {"stream", "v4l2", "file", "lavfi", "synthetic"}
AUDIO_TRACK_KINDS = {"stream", "file", "synthetic"}
MIN_SIDE, MAX_SIDE = 16, 8192  # px: a frame size outside this is a typo (00x00), or 30 GB frames (99999x99999)


def _frame_size(size: str | None) -> str | None:
    if size is not None:
        w, h = (int(x) for x in size.split("x"))
        if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
            raise ValueError(f"{size}: width and height must be from {MIN_SIDE} to {MAX_SIDE} px")
    return size


class _SourceBase(Strict):
    name: str = Field(pattern=NAME, description="unique source name; used in packets and topics")
    latency_ms: float = Field(
        0.0, ge=-10_000, le=10_000,
        description="known capture-to-timestamp delay of this source (ms); subtracted from its capture times")
    audio_latency_ms: float = Field(
        0.0, ge=-10_000, le=10_000,
        description="further delay of this source's audio (ms), e.g. a camera whose sound lags its picture; "
        "subtracted from its audio times")
    tokenizers: list[str] | None = Field(
        None, max_length=64, description="names of the tokenizers this source feeds (tokenizers:); null = every "
        "configured tokenizer of each modality it has")
    priority: int = Field(
        0, ge=-100, le=100, description="under overload, sources of lower priority shed their fine video tokens "
        "first (docs/daemon.md, Overload); equal priorities shed evenly")


TOKEN_FPS_MIN, TOKEN_FPS_MAX = 0.01, 1000.0  # token_fps bounds (frames/s); also the --token-fps flags


class _VideoSourceBase(_SourceBase):
    token_fps: float | None = Field(
        None, ge=TOKEN_FPS_MIN, le=TOKEN_FPS_MAX,
        description="token frames per second (frames/s): one frame per 1/token_fps s of capture time is tokenized, "
        "the rest skipped before any conversion (counted in skipped_by_rate); null: every frame")


class StreamSource(_VideoSourceBase):
    kind: Literal["stream"] = "stream"
    url: str = Field(min_length=1,
                     description="rtsp://, http(s)://, udp://, rtp://, srt:// URL (or anything FFmpeg opens)")
    format: str | None = Field(None, min_length=1,
                               description="FFmpeg input format when it cannot be guessed (e.g. mpegts)")
    transport: Literal["tcp", "udp"] | None = Field(None, description="RTSP transport")
    audio: bool = Field(True, description="use the stream's audio track (if any) as this source's audio")
    open_timeout_s: float = Field(10.0, gt=0, le=120, description="give up opening after this long (s)")
    read_timeout_s: float = Field(
        3.0, gt=0, le=60, description="a read stalled this long counts as a lost source, which reconnects (s); a "
        "listening source (udp, rtp, srt listener) keeps its socket and reports a wait instead")
    options: dict[str, str] = Field(default_factory=dict, description="extra FFmpeg options")


class V4l2Source(_VideoSourceBase):
    kind: Literal["v4l2"] = "v4l2"
    device: str = Field("/dev/video0", min_length=1, description="V4L2 device path")
    size: str | None = Field(None, pattern=r"^\d{2,5}x\d{2,5}$", description="capture size, WIDTHxHEIGHT (px)")
    _size = field_validator("size")(_frame_size)
    fps: float | None = Field(None, gt=0, le=1000, description="capture rate (frames/s)")
    pixel_format: str | None = Field(None, min_length=1, description="V4L2 input format, e.g. mjpeg, yuyv422")
    read_timeout_s: float = Field(3.0, gt=0, le=60, description="a read stalled this long counts as a lost camera (s)")


class FileSource(_VideoSourceBase):
    kind: Literal["file"] = "file"
    path: Path = Field(description="media file played as live (real-time pacing)")
    loop: bool = Field(False, description="start again at the end (a discontinuity is flagged)")
    audio: bool = Field(True, description="use the file's audio track as this source's audio")


class LavfiSource(_VideoSourceBase):
    kind: Literal["lavfi"] = "lavfi"
    graph: str = Field(min_length=1, description="FFmpeg lavfi source graph, e.g. testsrc2=size=640x480:rate=30")


class MicSource(_SourceBase):
    kind: Literal["mic"] = "mic"
    device: str | int | None = Field(None, description="PortAudio input device name or index; null = default")
    rate: int | None = Field(None, ge=8000, le=192000, description="capture rate (Hz); null = device default")
    channels: int = Field(1, ge=1, le=32, description="captured channels (count); downmixed to mono")
    block_ms: float = Field(20.0, ge=2, le=500, description="PortAudio block size (ms)")


class SyntheticSource(_VideoSourceBase):
    kind: Literal["synthetic"] = "synthetic"
    size: str = Field("640x480", pattern=r"^\d{2,5}x\d{2,5}$", description="WIDTHxHEIGHT (px)")
    _size = field_validator("size")(_frame_size)
    fps: float = Field(30.0, gt=0, le=240, description="frames/s")
    rate: int = Field(16000, ge=8000, le=96000, description="audio rate (Hz)")
    marker_interval_s: float = Field(2.0, gt=0.1, le=3600, description="a white flash and a 1 kHz beep this often (s)")
    audio_offset_ms: float = Field(0.0, ge=-5000, le=5000, description="beep later than the flash by this much (ms)")


Source = Annotated[
    StreamSource | V4l2Source | FileSource | LavfiSource | MicSource | SyntheticSource, Field(discriminator="kind")
]
