"""Daemon configuration: sources, groups, alignment, sinks and queues, as in config.yaml.

Pydantic models mirroring the YAML, ``extra="forbid"``; every field states its unit and bound.
Sources are a list discriminated by ``kind``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _SourceBase(_Strict):
    name: str = Field(pattern=NAME, description="unique source name; used in packets and topics")
    latency_ms: float = Field(
        0.0, ge=-10_000, le=10_000,
        description="known capture-to-timestamp delay of this source (ms); subtracted from its capture times")
    audio_latency_ms: float = Field(
        0.0, ge=-10_000, le=10_000,
        description="further delay of this source's audio (ms), e.g. a camera whose sound lags its picture; "
        "subtracted from its audio times")


class StreamSource(_SourceBase):
    kind: Literal["stream"] = "stream"
    url: str = Field(description="rtsp://, http(s)://, udp://, rtp://, srt:// URL (or anything FFmpeg opens)")
    format: str | None = Field(None, description="FFmpeg input format when it cannot be guessed (e.g. mpegts)")
    transport: Literal["tcp", "udp"] | None = Field(None, description="RTSP transport")
    audio: bool = Field(True, description="use the stream's audio track (if any) as this source's audio")
    open_timeout_s: float = Field(10.0, gt=0, le=120, description="give up opening after this long (s)")
    read_timeout_s: float = Field(3.0, gt=0, le=60, description="a read stalled this long counts as a lost source (s)")
    options: dict[str, str] = Field(default_factory=dict, description="extra FFmpeg options")


class V4l2Source(_SourceBase):
    kind: Literal["v4l2"] = "v4l2"
    device: str = Field("/dev/video0", description="V4L2 device path")
    size: str | None = Field(None, pattern=r"^\d{2,5}x\d{2,5}$", description="capture size, WIDTHxHEIGHT (px)")
    fps: float | None = Field(None, gt=0, le=1000, description="capture rate (frames/s)")
    pixel_format: str | None = Field(None, description="V4L2 input format, e.g. mjpeg, yuyv422")
    read_timeout_s: float = Field(3.0, gt=0, le=60, description="a read stalled this long counts as a lost camera (s)")


class FileSource(_SourceBase):
    kind: Literal["file"] = "file"
    path: Path = Field(description="media file played as live (real-time pacing)")
    loop: bool = Field(False, description="start again at the end (a discontinuity is flagged)")
    audio: bool = Field(True, description="use the file's audio track as this source's audio")


class LavfiSource(_SourceBase):
    kind: Literal["lavfi"] = "lavfi"
    graph: str = Field(description="FFmpeg lavfi source graph, e.g. testsrc2=size=640x480:rate=30")


class MicSource(_SourceBase):
    kind: Literal["mic"] = "mic"
    device: str | int | None = Field(None, description="PortAudio input device name or index; null = default")
    rate: int | None = Field(None, ge=8000, le=192000, description="capture rate (Hz); null = device default")
    channels: int = Field(1, ge=1, le=32, description="captured channels (count); downmixed to mono")
    block_ms: float = Field(20.0, ge=2, le=500, description="PortAudio block size (ms)")


class SyntheticSource(_SourceBase):
    kind: Literal["synthetic"] = "synthetic"
    size: str = Field("640x480", pattern=r"^\d{2,5}x\d{2,5}$", description="WIDTHxHEIGHT (px)")
    fps: float = Field(30.0, gt=0, le=240, description="frames/s")
    rate: int = Field(16000, ge=8000, le=96000, description="audio rate (Hz)")
    marker_interval_s: float = Field(2.0, gt=0.1, le=3600, description="a white flash and a 1 kHz beep this often (s)")
    audio_offset_ms: float = Field(0.0, ge=-5000, le=5000, description="beep later than the flash by this much (ms)")


Source = Annotated[
    StreamSource | V4l2Source | FileSource | LavfiSource | MicSource | SyntheticSource, Field(discriminator="kind")
]


class Group(_Strict):
    """Sources aligned together into steps: at most one video and one audio."""

    name: str = Field(pattern=NAME, description="group name (aligned-step packets carry it)")
    video: str | None = Field(None, description="name of the source whose video this group uses")
    audio: str | None = Field(
        None, description="name of the source whose audio this group uses (a mic, or a stream's track)")
    markers: bool = Field(
        False, description="measure A/V skew from sync markers (white flash + 1 kHz beep); always on for synthetic")

    @model_validator(mode="after")
    def _one(self) -> Group:
        if self.video is None and self.audio is None:
            raise ValueError("a group needs a video or an audio source")
        return self


class Alignment(_Strict):
    step_ms: float = Field(80.0, gt=0, le=10_000, description="aligned step length (ms); 80 = the coarse audio step")
    lateness_ms: float = Field(
        500.0, ge=0, le=60_000, description="emit a step this long after its end even if a modality is missing (ms)")


class _SinkBase(_Strict):
    name: str | None = Field(None, pattern=NAME, description="name in metrics and logs; default KIND + index (file0)")
    queue_messages: int = Field(
        20_000, ge=1, le=10_000_000,
        description="messages held for this sink while it is slow or failing (count); oldest dropped when full")
    queue_mb: float = Field(
        64.0, gt=0, le=65_536, description="...and at most this much (MB); oldest dropped when full")


class FileSink(_SinkBase):
    kind: Literal["file"] = "file"
    path: Path = Field(description=".ltk token file: created, or appended to when it is one; never truncated")
    aligned: bool = Field(True, description="write aligned-step packets")
    per_modality: bool = Field(True, description="write per-modality token packets")
    rotate_mb: float | None = Field(
        None, gt=0, le=1_000_000, description="start a new file when this one would exceed this size (MB)")
    rotate_s: float | None = Field(
        None, ge=1, le=365 * 86400, description="start a new file when this one is this old (s)")
    keep: int | None = Field(
        None, ge=1, le=100_000, description="rotated files kept (count; the oldest deleted); null = all")


Sink = Annotated[FileSink, Field(discriminator="kind")]


class Queues(_Strict):
    video_frames: int = Field(
        8, ge=1, le=1024, description="frames held per source before the tokenizer (count); oldest dropped when full")
    audio_blocks: int = Field(
        64, ge=1, le=4096, description="audio blocks held per source (count); oldest dropped when full")
    batch_wait_ms: float = Field(5.0, ge=0, le=1000, description="wait this long for more frames to fill a batch (ms)")

