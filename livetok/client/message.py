"""What a subscriber gives: each message decoded (:class:`Message`) and its counters (:class:`SubscriberStats`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from livetok.bus.meta import SourceMeta
from livetok.bus.topics import TopicKind
from livetok.client.continuity import Continuity, StreamKey, StreamStats
from livetok.wire import AlignedStep, Modality, Scale, TokenPacket


@dataclass(frozen=True)
class Message:
    """One message from the bus, decoded.

    ``modality``, ``scale`` and ``stream_name`` are the topic's (TOKENS: ``stream_name`` is
    ``fine``, ``coarse`` or a named stream's name, ``scale`` None for a named stream).
    ``packet`` (TOKENS) or ``step`` (STEPS) is the decoded wire packet; ``meta`` (META) the
    source's meta; ``text`` the payload as text (AVAILABLE: ``online``/``stopped``/``offline``;
    STATS: the JSON, parsed into ``data``). ``run_id``: the daemon run (v5 property, else from
    meta; None when unknown). ``continuity``/``missing``: what this message was for its stream
    (None for meta, availability and stats). Receive times are taken when the message came off
    the socket: ``received_mono_ns`` (``time.monotonic_ns``), ``received_unix_ns`` (``time.time_ns``).
    """

    topic: str
    kind: TopicKind
    instance: str
    source: str | None
    group: str | None
    modality: Modality | None
    scale: Scale | None
    run_id: str | None
    qos: int
    retain: bool
    received_mono_ns: int
    received_unix_ns: int
    payload: bytes = field(repr=False)
    packet: TokenPacket | None = field(default=None, repr=False)
    step: AlignedStep | None = field(default=None, repr=False)
    meta: SourceMeta | None = field(default=None, repr=False)
    text: str | None = None
    data: Any = field(default=None, repr=False)
    continuity: Continuity | None = None
    missing: int = 0
    stream: StreamKey | None = None
    stream_name: str | None = None

    @property
    def seq(self) -> int | None:
        item = self.packet if self.packet is not None else self.step
        return None if item is None else item.seq


@dataclass
class SubscriberStats:
    """A snapshot of the subscriber's counters.

    ``streams``: per stream (see :class:`StreamStats`); ``total``: their sum. ``messages``: every
    message taken off the broker; ``foreign``: on topics that are not livetok's (skipped);
    ``meta_errors``: meta documents that did not parse; ``dropped``: thrown away because the
    buffer was full; ``buffered``: waiting now. ``connects``/``reconnects``/``disconnects``: the
    connection's history; ``last_error``: the most recent problem, one line; ``resumed``:
    connections on which the broker still held this subscriber's persistent session.
    """

    streams: dict[StreamKey, StreamStats]
    total: StreamStats
    messages: int = 0
    foreign: int = 0
    meta_errors: int = 0
    dropped: int = 0
    buffered: int = 0
    connects: int = 0
    reconnects: int = 0
    disconnects: int = 0
    connected: bool = False
    last_error: str | None = None
    resumed: int = 0  # connections on which the broker still held our persistent session
