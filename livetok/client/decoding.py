"""Messages as they come off the broker -> decoded :class:`~livetok.client.message.Message` objects,
and what they tell on the way: each source's meta and vocabulary, each instance's availability,
each stream's continuity (:mod:`livetok.client.continuity`). No I/O: the subscriber feeds it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any, cast

from aiomqtt import Message as MqttMessage

from livetok.bus.meta import SourceMeta
from livetok.bus.properties import run_id_of
from livetok.bus.topics import TopicInfo, TopicKind, filter_matches, parse_topic
from livetok.client.continuity import Continuity, ContinuityTracker, StreamKey
from livetok.client.message import Message
from livetok.errors import DecodeError
from livetok.vocab import Vocabulary
from livetok.wire import AlignedStep, TokenPacket, decode_packet

_SKIPPED = (Continuity.DUPLICATE, Continuity.STALE)


class Decoder:
    """Decodes one subscriber's messages (module doc). ``user_filters``: the caller's own (meta and
    availability on other topics are taken in but not yielded); ``on_error``: the latest problem."""

    def __init__(self, user_filters: list[str], deliver_duplicates: bool, on_error: Callable[[str], None]) -> None:
        self.user_filters = user_filters
        self.deliver_duplicates = deliver_duplicates
        self.on_error = on_error
        self.tracker = ContinuityTracker()
        self.meta: dict[tuple[str, str], SourceMeta] = {}
        self.available: dict[str, str] = {}
        self.vocabs: dict[str, Vocabulary] = {}
        self.messages = 0  # every message taken off the broker
        self.foreign = 0  # on topics that are not livetok's
        self.meta_errors = 0  # meta documents that did not parse

    def decode(self, mono: int, unix: int, msg: MqttMessage) -> Message | None:
        """A message as it came off the socket at ``mono``/``unix`` ns -> a Message, or None (skipped)."""
        self.messages += 1
        topic = msg.topic.value
        info = parse_topic(topic)
        if info is None:
            self.foreign += 1
            return None
        payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
        base: dict[str, Any] = {"topic": topic, "kind": info.kind, "instance": info.instance, "source": info.source,
                "group": info.group, "modality": info.modality, "scale": info.scale,
                "stream_name": info.stream_name, "qos": msg.qos,
                "retain": bool(msg.retain), "received_mono_ns": mono, "received_unix_ns": unix, "payload": payload}
        if info.kind in (TopicKind.TOKENS, TopicKind.STEPS):
            return self._data(info, msg, base)
        wanted = any(filter_matches(f, topic) for f in self.user_filters)
        if info.kind is TopicKind.META:
            meta = self._take_meta(info, payload, topic)
            return Message(**base, run_id=meta.run_id if meta else None, meta=meta) if wanted else None
        text = payload.decode("utf-8", "replace")
        if info.kind is TopicKind.AVAILABLE:
            if text:
                self.available[info.instance] = text
            else:
                self.available.pop(info.instance, None)
            return Message(**base, run_id=None, text=text) if wanted else None
        data = None
        with contextlib.suppress(ValueError):
            data = json.loads(text)
        return Message(**base, run_id=None, text=text, data=data) if wanted else None

    def _data(self, info: TopicInfo, msg: MqttMessage, base: dict[str, Any]) -> Message | None:
        steps = info.kind is TopicKind.STEPS
        name = cast(str, info.group if steps else info.source)
        key = StreamKey(info.instance, name, info.modality, info.scale, info.stream or "")
        try:
            item = decode_packet(base["payload"])
        except DecodeError as err:
            self.tracker.invalid(key)
            self.on_error(f"{base['topic']}: {err}")
            return None
        if steps != isinstance(item, AlignedStep) or (isinstance(item, TokenPacket) and (
                item.modality, item.stream_name) != (info.modality, info.stream_name)):
            self.tracker.invalid(key)
            self.on_error(f"{base['topic']}: the payload is a packet of another kind or stream than the topic")
            return None
        run_id = run_id_of(msg.properties)
        from_meta = False
        if run_id is None:
            meta = None if steps else self.meta.get((info.instance, name))
            run_id = meta.run_id if meta is not None else self._instance_run(info.instance)
            from_meta = run_id is not None
        obs = self.tracker.observe(key, item.seq, run_id, from_meta)
        if obs.continuity in _SKIPPED and not self.deliver_duplicates:
            return None
        if steps:
            return Message(**base, run_id=run_id, step=cast(AlignedStep, item), continuity=obs.continuity,
                           missing=obs.missing, stream=key)
        return Message(**base, run_id=run_id, packet=cast(TokenPacket, item), continuity=obs.continuity,
                       missing=obs.missing, stream=key)

    def _take_meta(self, info: TopicInfo, payload: bytes, topic: str) -> SourceMeta | None:
        key = (info.instance, cast(str, info.source))
        if not payload:  # a cleared retained message: the source is gone
            self.meta.pop(key, None)
            return None
        try:
            meta = SourceMeta.from_json(payload)
        except DecodeError as err:
            self.meta_errors += 1
            self.on_error(f"{topic}: {err}")
            return None
        self.meta[key] = meta
        # by every codebook id it covers (a named stream's tokenizer has its own); the latest meta
        # wins, as a restarted daemon may have added a tokenizer (layout 2: more named streams)
        for cid in {meta.codebook_id} | {s.shape.codebook_id or meta.codebook_id for s in meta.vocab.streams}:
            self.vocabs[cid] = meta.vocab
        return meta

    def _instance_run(self, instance: str) -> str | None:
        """The run id of ``instance`` by its meta: the most recently started run among its sources
        (a source dropped from the configuration leaves an older retained meta behind)."""
        best: SourceMeta | None = None
        for (inst, _), m in self.meta.items():
            if inst == instance and (best is None or (m.started_unix_ns or 0) >= (best.started_unix_ns or 0)):
                best = m
        return None if best is None else best.run_id
