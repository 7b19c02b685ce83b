"""The daemon's configuration: pydantic models mirroring config.yaml, loaded with line numbers."""

from livetok.config.load import AUDIO_TRACK_KINDS, VIDEO_KINDS, LivetokConfig, load_config
from livetok.config.sections import (
    NAME,
    Alignment,
    FileSink,
    FileSource,
    Group,
    LavfiSource,
    MetricsEndpoint,
    MicSource,
    Mqtt,
    MqttQos,
    MqttTls,
    Queues,
    Sink,
    Source,
    StreamSource,
    SyntheticSource,
    V4l2Source,
)
from livetok.config.tokenizer import AudioConfig, DeltaConfig, RVQConfig, TokenizerConfig, VideoConfig

__all__ = [
    "AUDIO_TRACK_KINDS", "NAME", "VIDEO_KINDS", "Alignment", "AudioConfig", "DeltaConfig", "FileSink", "FileSource",
    "Group", "LavfiSource", "LivetokConfig", "MetricsEndpoint", "MicSource", "Mqtt", "MqttQos", "MqttTls", "Queues",
    "RVQConfig", "Sink", "Source", "StreamSource", "SyntheticSource", "TokenizerConfig", "V4l2Source", "VideoConfig",
    "load_config",
]
