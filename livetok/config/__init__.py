"""The configuration: one pydantic model per section of config.yaml, and reading the file.

``root`` (:class:`LivetokConfig`: the sections, the checks across them, the effective groups, the
sinks' names, the bus in either spelling), ``load`` (:func:`load_config`: YAML with line numbers),
and a module per section: ``tokenizer``, ``sources``, ``groups`` (and ``alignment``), ``sinks``,
``mqtt``, ``runtime`` (``queues`` and ``metrics``). Imports nothing of livetok but ``errors``:
every other package may read the configuration, and none is below it but the foundations.
"""

from livetok.config.base import NAME
from livetok.config.groups import Alignment, Group
from livetok.config.load import load_config
from livetok.config.mqtt import Mqtt, MqttQos, MqttTls
from livetok.config.root import LivetokConfig
from livetok.config.runtime import MetricsEndpoint, Queues
from livetok.config.sinks import BUS_NAME, FileSink, MqttSink, Sink, sink_name
from livetok.config.sources import (
    AUDIO_TRACK_KINDS,
    VIDEO_KINDS,
    FileSource,
    LavfiSource,
    MicSource,
    Source,
    StreamSource,
    SyntheticSource,
    V4l2Source,
)
from livetok.config.tokenizer import AudioConfig, DeltaConfig, RVQConfig, TokenizerConfig, VideoConfig

__all__ = [
    "AUDIO_TRACK_KINDS", "BUS_NAME", "NAME", "VIDEO_KINDS", "Alignment", "AudioConfig", "DeltaConfig", "FileSink",
    "FileSource", "Group", "LavfiSource", "LivetokConfig", "MetricsEndpoint", "MicSource", "Mqtt", "MqttQos",
    "MqttSink", "MqttTls", "Queues", "RVQConfig", "Sink", "Source", "StreamSource", "SyntheticSource",
    "TokenizerConfig", "V4l2Source", "VideoConfig", "load_config", "sink_name",
]
