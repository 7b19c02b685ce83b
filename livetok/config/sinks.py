"""The ``sinks:`` section: token files, and the MQTT bus as a sink of ``kind: mqtt``.

The bus has two spellings that mean the same: a sink ``{kind: mqtt, host: ..., ...}`` in this list,
or the ``mqtt:`` section (:mod:`livetok.config.mqtt`; the same keys). Given both, the configuration
is refused (:class:`~livetok.config.root.LivetokConfig`). Whichever spelling, the bus is the sink
named ``mqtt`` (books, metrics, logs); a file sink is named by its ``name``, by default its kind and
its index in this list (``file0``): :func:`sink_name`, the one place that rule is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from livetok.config.base import NAME, Strict
from livetok.config.mqtt import Mqtt

BUS_NAME = "mqtt"  # the bus's sink name, whichever way it is spelled


class _SinkBase(Strict):
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






class MqttSink(Mqtt):
    """The MQTT bus as a sink: the keys of the ``mqtt:`` section, with ``kind: mqtt`` and a host."""

    kind: Literal["mqtt"] = "mqtt"
    host: str = Field(min_length=1, max_length=253,
                      description="broker host name or address (or --sink mqtt://HOST)")


Sink = Annotated[FileSink | MqttSink, Field(discriminator="kind")]


def sink_name(index: int, sink: FileSink | MqttSink) -> str:
    """A sink's name: the bus is ``mqtt``; a file sink's is its ``name``, by default its kind and its
    ``index`` in ``sinks:`` (``file0``)."""
    if isinstance(sink, MqttSink):
        return BUS_NAME
    return sink.name or f"{sink.kind}{index}"
