"""Sinks by kind: the configuration's ``sinks:`` (and the ``mqtt:`` section) made into sink objects.

Each kind's factory gets everything its sink needs at construction (:class:`SinkContext`): no sink
reaches back into the daemon later. The bus's meta is derived here, from the configuration and the
codebooks' vocabulary, before torch loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livetok.config import FileSink as FileSinkConfig
from livetok.config import LivetokConfig
from livetok.config import MqttSink as MqttSinkConfig
from livetok.sinks.base import Sink
from livetok.sinks.file import FileSink
from livetok.vocab import Vocabulary


@dataclass(frozen=True)
class SinkContext:
    """What a sink is made with, beside its own settings: the run (its id) and the codebooks'
    vocabulary (the bus's retained meta describes it)."""

    run_id: str
    vocab: Vocabulary | None  # None when no sink needs it (no bus)
    plugins: dict[str, Any] = field(default_factory=dict)  # the loaded plug-in tokenizers (their streams' specs)


def _file(cfg: LivetokConfig, name: str, settings: FileSinkConfig | MqttSinkConfig, ctx: SinkContext) -> Sink:
    assert isinstance(settings, FileSinkConfig)
    return FileSink(settings, name)


def _mqtt(cfg: LivetokConfig, name: str, settings: FileSinkConfig | MqttSinkConfig, ctx: SinkContext) -> Sink:
    from livetok.sinks.mqtt import MqttSink  # aiomqtt and paho: only when there is a bus
    from livetok.sinks.mqtt_setup import buffer_bounds, default_instance, source_metas

    bus = cfg.bus
    assert bus is not None and ctx.vocab is not None
    messages, nbytes = buffer_bounds(cfg, ctx.plugins)
    metas = source_metas(cfg, ctx.vocab, ctx.run_id, bus.instance or default_instance(), ctx.plugins)
    return MqttSink(bus, run_id=ctx.run_id, metas=metas, name=name, queue_messages=messages, queue_bytes=nbytes)


Factory = Callable[[LivetokConfig, str, FileSinkConfig | MqttSinkConfig, SinkContext], Sink]
KINDS: dict[str, Factory] = {"file": _file, "mqtt": _mqtt}


def make_sink(cfg: LivetokConfig, name: str, run_id: str, vocab: Vocabulary | None = None,
              plugins: dict[str, Any] | None = None) -> Sink:
    """The sink called ``name`` in ``cfg`` (a file sink's name, or ``mqtt`` for the bus), not yet
    opened. ``vocab``: the codebooks' vocabulary; None: read from the codebook file's header."""
    for n, settings in cfg.named_sinks():
        if n == name:
            return KINDS[settings.kind](cfg, name, settings, _context(cfg, run_id, vocab, plugins))
    raise KeyError(name)


def open_sinks(cfg: LivetokConfig, run_id: str, vocab: Vocabulary | None = None,
               plugins: dict[str, Any] | None = None) -> list[Sink]:
    """Sink objects for the configuration's sinks and MQTT bus, in fan-out order (not yet opened:
    ``async with`` each). The bus's password and TLS files are read here: a problem is one line
    before anything starts."""
    ctx = _context(cfg, run_id, vocab, plugins)
    return [KINDS[settings.kind](cfg, name, settings, ctx) for name, settings in cfg.named_sinks()]


def _context(cfg: LivetokConfig, run_id: str, vocab: Vocabulary | None,
             plugins: dict[str, Any] | None = None) -> SinkContext:
    if vocab is None and cfg.bus is not None:  # the codebook file's header alone: no torch, no tensors
        from livetok.tokenizers.codebooks import resolve_codebook_path  # a bare id names a packaged set

        vocab = Vocabulary.from_codebook_file(resolve_codebook_path(cfg.tokenizer.codebooks))
    return SinkContext(run_id, vocab, plugins or {})
