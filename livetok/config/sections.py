"""Daemon configuration: sources, groups, alignment, sinks and queues, as in config.yaml.

Pydantic models mirroring the YAML, ``extra="forbid"``; every field states its unit and bound.
Sources are a list discriminated by ``kind``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = r"^[A-Za-z0-9_.-]{1,64}$"
MIN_SIDE, MAX_SIDE = 16, 8192  # px: a frame size outside this is a typo (00x00), or 30 GB frames (99999x99999)


def _frame_size(size: str | None) -> str | None:
    if size is not None:
        w, h = (int(x) for x in size.split("x"))
        if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
            raise ValueError(f"{size}: width and height must be from {MIN_SIDE} to {MAX_SIDE} px")
    return size


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


class V4l2Source(_SourceBase):
    kind: Literal["v4l2"] = "v4l2"
    device: str = Field("/dev/video0", min_length=1, description="V4L2 device path")
    size: str | None = Field(None, pattern=r"^\d{2,5}x\d{2,5}$", description="capture size, WIDTHxHEIGHT (px)")
    _size = field_validator("size")(_frame_size)
    fps: float | None = Field(None, gt=0, le=1000, description="capture rate (frames/s)")
    pixel_format: str | None = Field(None, min_length=1, description="V4L2 input format, e.g. mjpeg, yuyv422")
    read_timeout_s: float = Field(3.0, gt=0, le=60, description="a read stalled this long counts as a lost camera (s)")


class FileSource(_SourceBase):
    kind: Literal["file"] = "file"
    path: Path = Field(description="media file played as live (real-time pacing)")
    loop: bool = Field(False, description="start again at the end (a discontinuity is flagged)")
    audio: bool = Field(True, description="use the file's audio track as this source's audio")


class LavfiSource(_SourceBase):
    kind: Literal["lavfi"] = "lavfi"
    graph: str = Field(min_length=1, description="FFmpeg lavfi source graph, e.g. testsrc2=size=640x480:rate=30")


class MicSource(_SourceBase):
    kind: Literal["mic"] = "mic"
    device: str | int | None = Field(None, description="PortAudio input device name or index; null = default")
    rate: int | None = Field(None, ge=8000, le=192000, description="capture rate (Hz); null = device default")
    channels: int = Field(1, ge=1, le=32, description="captured channels (count); downmixed to mono")
    block_ms: float = Field(20.0, ge=2, le=500, description="PortAudio block size (ms)")


class SyntheticSource(_SourceBase):
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



class MqttQos(_Strict):
    tokens: Literal[0, 1, 2] = Field(1, description="QoS of per-modality token messages")
    steps: Literal[0, 1, 2] = Field(1, description="QoS of aligned-step messages")
    meta: Literal[0, 1, 2] = Field(1, description="QoS of the retained meta and availability messages")
    stats: Literal[0, 1, 2] = Field(0, description="QoS of the stats messages")


class MqttTls(_Strict):
    enabled: bool = Field(False, description="TLS to the broker (mqtts://); the broker's certificate and name are "
                          "always verified: there is no insecure switch")
    ca_file: Path | None = Field(None, description="PEM CA bundle to trust; null = the system's CAs")
    cert_file: Path | None = Field(None, description="client certificate (PEM), for brokers that require one")
    key_file: Path | None = Field(None, description="the client certificate's key (PEM)")
    min_version: Literal["1.2", "1.3"] = Field("1.2", description="lowest TLS version accepted")


class Mqtt(_Strict):
    """The MQTT bus: every token packet, step, meta and stats message published to one broker."""

    host: str | None = Field(None, min_length=1, max_length=253,
                             description="broker host name or address; null = no MQTT (or --sink mqtt://HOST)")
    port: int | None = Field(None, ge=1, le=65535, description="broker port; null = 1883, or 8883 with TLS")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT version; 3.1.1 has no properties or reason codes")
    client_id: str | None = Field(None, min_length=1, max_length=128,
                                  description="MQTT client id; null = livetok-INSTANCE (livetok-HOSTNAME by default)")
    prefix: str = Field("livetok", pattern=r"^[A-Za-z0-9_.-]{1,64}(/[A-Za-z0-9_.-]{1,64}){0,7}$",
                        description="first topic levels: {prefix}/{instance}/...")
    instance: str | None = Field(None, pattern=NAME, description="this daemon's topic level; null = the host name")
    keepalive_s: int = Field(15, ge=2, le=3600, description="MQTT keepalive (s): how soon a dead connection is noticed")
    qos: MqttQos = Field(MqttQos(), description="QoS per message class")
    message_expiry_s: int | None = Field(
        60, ge=1, le=86_400 * 365,
        description="v5 message expiry of token and step messages (s): a consumer back after an hour does not get "
        "an hour of stale tokens; null = never")
    username: str | None = Field(None, min_length=1, max_length=256, description="user name to log in with")
    password_file: Path | None = Field(
        None, description="file holding the password (never in the config itself, argv or the environment)")
    password_credential: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="name of a systemd credential holding the password ($CREDENTIALS_DIRECTORY/NAME, LoadCredential=)")
    tls: MqttTls = Field(MqttTls(), description="TLS")
    buffer_s: float = Field(60.0, gt=0, le=86_400,
                            description="outbound buffer sized for this long of the configured streams (s): tokens "
                            "are carried through a broker outage this long; oldest dropped (counted) beyond")
    buffer_messages: int | None = Field(None, ge=16, le=10_000_000,
                                        description="outbound buffer bound (messages); null = from buffer_s")
    buffer_mb: float | None = Field(None, gt=0, le=65_536,
                                    description="outbound buffer bound (MB); null = from buffer_s")
    max_packet_bytes: int | None = Field(
        None, ge=256, le=268_435_455,
        description="refuse (count, never send) messages whose MQTT packet exceeds this (bytes); the broker's own "
        "limit from its v5 CONNACK applies too. Set it to Mosquitto's message_size_limit, which is not advertised")
    stats_interval_s: float = Field(5.0, ge=0.5, le=3600, description="publish the stats JSON this often (s)")
    connect_timeout_s: float = Field(10.0, gt=0, le=120, description="give up one connection attempt after this (s)")

    @field_validator("host")
    @classmethod
    def _host(cls, host: str | None) -> str | None:
        # Checked here, not at the first connection: "mqtt://broker" or "broker:1883" would pass as a
        # string and then fail to resolve forever in a running service.
        if host is not None and not re.fullmatch(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*", host):
            raise ValueError(f"{host!r} is not a host name or address (no scheme, port or path: the port is "
                             "mqtt.port, TLS is mqtt.tls.enabled)")
        return host

    @model_validator(mode="after")
    def _secrets(self) -> Mqtt:
        if self.password_file is not None and self.password_credential is not None:
            raise ValueError("give password_file or password_credential, not both")
        if (self.password_file is not None or self.password_credential is not None) and self.username is None:
            raise ValueError("a password needs a username")
        if self.tls.cert_file is None and self.tls.key_file is not None:
            raise ValueError("tls.key_file needs tls.cert_file")
        return self


class MetricsEndpoint(_Strict):
    """The Prometheus endpoint (docs/service.md)."""

    listen: str | None = Field(
        None, pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$",
        description="HOST:PORT to serve /metrics on, e.g. 127.0.0.1:9464; null = off")

    @field_validator("listen")
    @classmethod
    def _port(cls, listen: str | None) -> str | None:
        # the pattern lets 0 and 99999 through; checked here so that check-config refuses them, not the start
        if listen is not None and not 0 < int(listen.rpartition(":")[2]) < 65536:
            raise ValueError(f"{listen}: the port must be from 1 to 65535")
        return listen
