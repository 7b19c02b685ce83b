"""The MQTT sink's control messages, beside the tokens: ``online``/``stopped`` availability and every
source's meta (retained, awaited), and the stats document every ``stats_interval_s``; each checked
against the broker's maximum packet size first (one that does not fit is counted, said once per
topic, never sent). :class:`BusControl` is that half of :class:`~livetok.sinks.mqtt.MqttSink`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from livetok.bus.connect import paho_of
from livetok.bus.meta import SourceMeta
from livetok.bus.properties import META_CONTENT_TYPE
from livetok.bus.topics import available_topic, meta_topic, stats_topic
from livetok.config import Mqtt
from livetok.sinks.channel import SinkChannel
from livetok.sinks.mqtt_flight import BusStats, Flight, Lost
from livetok.sinks.mqtt_setup import packet_size

CLOSE_S = 2.0  # waiting for the last acknowledgement and the DISCONNECT at a clean exit (s)
# A stats document is published once this share of stats_interval_s has passed since the last: the
# runner posts one per metrics interval, which divides stats_interval_s, give or take the loop's lag.
STATS_DUE = 0.9


class BusControl:
    """Availability, meta and stats messages of the MQTT sink (module doc)."""

    cfg: Mqtt
    prefix: str
    instance: str
    metas: list[SourceMeta]
    v5: bool
    bus: BusStats
    _client: aiomqtt.Client | None
    _flights: dict[int, Flight]
    _oversize_said: set[str]

    say: Callable[..., None]  # the sink's own (Sink.say)

    async def _announce(self, client: aiomqtt.Client) -> None:
        """``online`` and every source's meta, retained, before any token."""
        await self._control(client, available_topic(self.prefix, self.instance), b"online")
        for meta in self.metas:
            await self._control(client, meta_topic(self.prefix, self.instance, meta.source), meta.to_json().encode(),
                                content_type=META_CONTENT_TYPE)

    async def _republish(self, client: aiomqtt.Client, metas: list[SourceMeta]) -> None:
        """The metas a reload changed, on the connection now, while the tokens go on; one lost with the
        connection is sent by the next one's announcement, which sends every meta."""
        with contextlib.suppress(Lost, TimeoutError, aiomqtt.MqttError):
            for meta in metas:
                await self._control(client, meta_topic(self.prefix, self.instance, meta.source),
                                    meta.to_json().encode(), content_type=META_CONTENT_TYPE)

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """A clean exit: ``stopped`` (retained; the Last Will is not sent), then DISCONNECT."""
        with contextlib.suppress(Lost, TimeoutError, aiomqtt.MqttError):
            await asyncio.wait_for(self._control(client, available_topic(self.prefix, self.instance), b"stopped"),
                                   CLOSE_S)
            await asyncio.wait_for(client.__aexit__(None, None, None), CLOSE_S)

    async def _control(self, client: aiomqtt.Client, topic: str, payload: bytes,
                       content_type: str | None = None) -> None:
        """A retained control message, awaited (not in the books: it is not a token)."""
        props = None
        if self.v5 and content_type is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = content_type
        if not self._control_fits(topic, payload, self.cfg.qos.meta, props):
            return
        info = paho_of(client).publish(topic, payload, self.cfg.qos.meta, True, props)
        if info.rc != 0:
            raise Lost()
        if self.cfg.qos.meta == 0:
            return
        flight = Flight(None, -1, time.monotonic_ns(), asyncio.get_running_loop().create_future())
        self._flights[info.mid] = flight
        assert flight.done is not None
        await asyncio.wait_for(asyncio.shield(flight.done), self.cfg.connect_timeout_s)

    def _control_fits(self, topic: str, payload: bytes, qos: int, props: Properties | None) -> bool:
        """Whether a control message (meta, availability, stats) fits the broker's limit; one that does
        not is counted in ``control_refused`` and said once per topic. Sent, it would cost the
        connection (and, at QoS > 0, come back after every reconnect)."""
        limit = self.bus.max_packet_bytes
        size = packet_size(topic.encode(), len(payload), qos, len(props.pack()) if props is not None else 0)
        if limit is None or size <= limit:
            return True
        self.bus.control_refused += 1
        if topic not in self._oversize_said:
            self._oversize_said.add(topic)
            self.say(f"{topic} ({size} bytes) exceeds the broker's maximum packet size ({limit} bytes): not "
                     "published, counted in control_refused (raise max_packet_size on the broker)")
        return False

    async def _stats_loop(self, channel: SinkChannel) -> None:
        """The run's stats document (posted on the channel once per metrics interval), published
        retained every ``stats_interval_s`` while connected."""
        topic = stats_topic(self.prefix, self.instance)
        props = None
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = META_CONTENT_TYPE
            props.MessageExpiryInterval = max(1, round(3 * self.cfg.stats_interval_s))
        last = time.monotonic()
        while True:
            stats = await channel.next_stats()
            now = time.monotonic()
            if now - last < STATS_DUE * self.cfg.stats_interval_s:
                continue
            last = now
            client = self._client
            if client is None or not self.bus.connected:
                continue
            try:
                doc = json.dumps(stats, separators=(",", ":"), allow_nan=False).encode()
            except (ValueError, TypeError) as err:
                self.say(f"stats document not published: {err}")
                continue
            if not self._control_fits(topic, doc, self.cfg.qos.stats, props):
                continue
            info = paho_of(client).publish(topic, doc, self.cfg.qos.stats, True, props)
            if info.rc == 0:
                self.bus.stats_published += 1
