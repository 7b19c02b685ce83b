"""The daemon's MQTT sink: every token packet and aligned step on the bus, with delivery you can count.

One task on the daemon's event loop (aiomqtt 2.5 over paho; MQTT v5 by default, 3.1.1 as an option):

* **Buffer.** The sink's channel is the outbound buffer, bounded by messages and bytes (default:
  ``mqtt.buffer_s`` = 60 s of the configured streams). It carries tokens through a broker outage;
  when full, the *oldest* messages are dropped and counted. On reconnect it drains in order: first
  the messages that were in flight when the connection was lost (resent: at most that many
  duplicates reach a consumer), then the rest.
* **In flight** at most the broker's Receive Maximum (v5 CONNACK; 20 under 3.1.1, Mosquitto's
  default): the sink publishes through paho directly (aiomqtt's ``publish`` awaits each PUBACK in
  turn and hides its reason code) and settles each message from paho's ``on_publish`` callback.
* **Delivery is confirmed, never assumed.** QoS 1/2: a message is *written* when the broker
  acknowledges it with a success reason code; a PUBACK carrying a failure (v5: 0x87 not
  authorized, 0x97 quota exceeded, 0x95 packet too large, ...) is counted as *refused* (failed),
  never as delivered, and not retried. QoS 0: written when handed to the socket.
* **Too large.** Every publish — tokens, steps, and also meta, availability and the stats document —
  is checked against the broker's Maximum Packet Size (v5 CONNACK) and ``mqtt.max_packet_bytes``
  before it is sent: one that exceeds it is refused, counted (tokens and steps as refused/failed in
  the books, the others in ``control_refused``) and said once per topic. Sent, the broker would drop
  the connection and paho would resend it after every reconnect, forever (measured).
* **Reconnect** with capped backoff (0.2 s doubling to 10 s; 30 s after a refused login or TLS),
  one line per distinct failure, no secret ever in it. Capture and the other sinks go on. The sink's
  state is ``connecting`` until the first connection, ``ok`` while connected, ``disconnected``
  after a loss. At the stop, a bus that never connected drops (and counts) what it held at once:
  no retry within the shutdown deadline is more likely to reach it than all those before.
* **Topics** (docs/bus.md): ``{prefix}/{instance}/available`` retained (``online`` once connected,
  ``stopped`` on a clean exit, ``offline`` as the Last Will), ``.../{source}/{modality}/{scale}``,
  ``.../{group}/steps``, ``.../{source}/meta`` retained, ``.../stats`` every ``stats_interval_s``.
  v5 token and step messages carry the content type and the run id as a user property, and
  expire after ``message_expiry_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from types import TracebackType
from typing import Any

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from livetok.bus.connect import Backoff, Protocol, bus_error, capture_connack, force_close, make_client, paho_of
from livetok.bus.meta import SourceMeta
from livetok.bus.properties import packet_properties
from livetok.bus.topics import available_topic, steps_topic, token_topic
from livetok.bus.url import BrokerUrl
from livetok.config import LivetokConfig, Mqtt
from livetok.errors import BusError
from livetok.runtime.log import NOTICE
from livetok.sinks.base import Outgoing, Sink
from livetok.sinks.channel import SinkChannel
from livetok.sinks.mqtt_control import BusControl
from livetok.sinks.mqtt_flight import BusStats, Flight, Lost
from livetok.sinks.mqtt_setup import connect_options, default_instance, load_password, packet_size, source_metas
from livetok.vocab import Vocabulary

V311_INFLIGHT = 20  # Mosquitto's max_inflight_messages default; 3.1.1 has no Receive Maximum
MAX_WINDOW = 1000  # never more in flight than this, whatever the broker allows


class MqttSink(BusControl, Sink):
    """Publishes the daemon's messages (module doc). ``metas``: the retained meta of each source;
    ``stats``: makes the stats document (the runner's), published every ``stats_interval_s``."""

    def __init__(self, cfg: Mqtt, *, run_id: str, metas: list[SourceMeta], name: str = "mqtt",
                 queue_messages: int = 20_000, queue_bytes: int = 64_000_000) -> None:
        super().__init__(name, queue_messages, queue_bytes)
        self.cfg = cfg
        self.run_id = run_id
        self.metas = metas
        self.instance = cfg.instance or default_instance()
        self.prefix = cfg.prefix
        self.bus = BusStats()
        self.opts = connect_options(cfg, load_password(cfg), self.instance)
        self.v5 = self.opts.protocol is Protocol.V5
        self._props = packet_properties(run_id, cfg.message_expiry_s) if self.v5 else None
        self._props_len = len(self._props.pack()) if self._props is not None else 0
        self._topics: dict[tuple[str, str, str], tuple[str, bytes]] = {}
        self._resend: deque[Flight] = deque()
        self._flights: dict[int, Flight] = {}
        self._order = 0
        self._wake = asyncio.Event()
        self._lost = False
        self._client: aiomqtt.Client | None = None
        self._said: str = ""
        self._oversize_said: set[str] = set()
        self._meta_tasks: set[asyncio.Task[None]] = set()  # metas a reload changed, being republished
        self.latency_kind = "publish"

    @property
    def url(self) -> BrokerUrl:
        return self.opts.url

    def gauges(self) -> dict[str, float]:
        b = self.bus
        return {"connected": int(b.connected), "connects": b.connects, "reconnects": b.reconnects,
                "connect_failures": b.connect_failures, "published": b.published, "resent": b.resent,
                "refused": sum(b.refused.values()), "in_flight": len(self._flights), "resend_depth": len(self._resend),
                "receive_maximum": b.receive_maximum, "stats_published": b.stats_published,
                "control_refused": b.control_refused}

    def held_by(self) -> Counter[tuple[str, str]]:
        """Messages taken from the channel and not yet settled: in flight, or waiting to be resent."""
        return Counter(f.item.key for f in [*self._flights.values(), *self._resend] if f.item is not None)

    def state_doc(self, channel: SinkChannel | None) -> dict[str, Any]:
        """The bus part of the stats document."""
        doc = self.bus.as_json(self.buffered(channel))
        doc.update(dropped=self.stats.dropped, written=self.stats.written, failed=self.stats.failed,
                   broker=str(self.url))
        return doc

    def buffered(self, channel: SinkChannel | None) -> int:
        return (channel.depth if channel is not None else 0) + len(self._resend)

    def sources_changed(self, cfg: LivetokConfig, vocab: Vocabulary, plugins: dict[str, Any]) -> None:
        """A reload changed the sources: their meta as ``cfg`` has them (docs/bus.md: published at start
        and change), the run's ``started_unix_ns`` kept; those that changed (a token rate, a new source)
        republished now when connected, else with every meta at the next connect."""
        started = self.metas[0].started_unix_ns if self.metas else None
        metas = source_metas(cfg, vocab, self.run_id, self.instance, plugins, started)
        before = {m.source: m.to_json() for m in self.metas}
        changed = [m for m in metas if before.get(m.source) != m.to_json()]
        self.metas = metas
        client = self._client
        if changed and client is not None and self.bus.connected:
            task = asyncio.create_task(self._republish(client, changed), name=f"{self.name}-meta")
            self._meta_tasks.add(task)
            task.add_done_callback(self._meta_tasks.discard)

    # -- topics ------------------------------------------------------------------------------------
    def topic(self, item: Outgoing) -> tuple[str, bytes]:
        key = (item.stream, item.modality, item.scale)
        t = self._topics.get(key)
        if t is None:
            name = (steps_topic(self.prefix, self.instance, item.stream) if item.is_step
                    else token_topic(self.prefix, self.instance, item.stream, item.modality, item.scale))
            t = self._topics[key] = (name, name.encode())
        return t

    def qos(self, item: Outgoing) -> int:
        return self.cfg.qos.steps if item.is_step else self.cfg.qos.tokens

    # -- the task --------------------------------------------------------------------------------
    async def run(self, channel: SinkChannel) -> None:
        """Connect, publish, reconnect, until the channel is closed and everything is settled."""
        channel.listen(self._wake.set)
        backoff = Backoff(0.2, 10.0)
        stats_task = asyncio.create_task(self._stats_loop(channel), name=f"{self.name}-stats")
        try:
            while True:
                try:
                    await self._session(channel, backoff)
                    return  # the channel closed and every message is settled
                except (Lost, aiomqtt.MqttError, OSError, BusError) as err:
                    self._disconnected(err)
                    if channel.closed and self._hopeless(err):
                        self._drop_held(channel)
                        return
                delay = backoff.next_delay()
                if channel.closed and not channel.depth and not self._resend:
                    return
                if channel.closed:  # stopping: retry (within the deadline) at the same pace
                    await asyncio.sleep(delay)
                    continue
                with contextlib.suppress(TimeoutError):  # the stop cuts the wait short
                    await asyncio.wait_for(channel.wait_closed(), delay)
                if channel.closed and self.bus.connects == 0:
                    self._drop_held(channel)
                    return
        except asyncio.CancelledError:
            self._abandon()
            raise
        finally:
            stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stats_task
            if self._client is not None:
                force_close(self._client)

    def _hopeless(self, err: BaseException) -> bool:
        """Stopping: can a retry within the shutdown deadline still deliver? Not when the broker
        refuses us (login, certificate), nor when it was never reached."""
        return self.bus.connects == 0 or (isinstance(err, BusError) and not err.retryable)

    def _drop_held(self, channel: SinkChannel) -> None:
        """What is held for the broker, dropped and counted (the stop, a broker that cannot be reached)."""
        self.stats.count("dropped", [f.item for f in self._resend if f.item is not None] + channel.abandon())
        self._resend.clear()

    async def _session(self, channel: SinkChannel, backoff: Backoff) -> None:
        client = await self._connect(backoff)
        try:
            await self._announce(client)
            await self._pump(client, channel)
            await self._goodbye(client)
        finally:
            self.bus.connected = False
            self._client = None
            force_close(client)

    async def _connect(self, backoff: Backoff) -> aiomqtt.Client:
        will = aiomqtt.Will(available_topic(self.prefix, self.instance), b"offline", self.cfg.qos.meta, True)
        client = make_client(self.opts, will=will, max_inflight_messages=MAX_WINDOW)  # ours is the real window
        paho = paho_of(client)
        connack = capture_connack(client)
        # aiomqtt's own handlers, called after ours (typed loosely: paho's stubs say "None").
        on_publish: Any = paho.on_publish
        on_disconnect: Any = paho.on_disconnect

        def published(c: Any, userdata: Any, mid: int, rc: Any, props: Any = None) -> None:
            self._settle(mid, rc)
            on_publish(c, userdata, mid, rc, props)

        def disconnected(c: Any, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
            self._lost = True
            self._wake.set()
            for f in self._flights.values():  # a control message being awaited learns of it at once
                if f.done is not None and not f.done.done():
                    f.done.set_exception(Lost())
            on_disconnect(c, userdata, flags, rc, props)

        paho.on_publish, paho.on_disconnect = published, disconnected
        self._lost = False
        try:
            await asyncio.wait_for(client.__aenter__(), self.cfg.connect_timeout_s + 1)
        except TimeoutError:
            force_close(client)
            raise BusError(f"cannot connect to broker {self.url}: no answer within {self.cfg.connect_timeout_s:g} s",
                           retryable=True) from None
        except aiomqtt.MqttError as err:
            force_close(client)
            error = bus_error(err, self.opts)
            if not error.retryable:
                backoff.max_s = 30.0  # a refused login or certificate will not fix itself soon
            raise error from None
        self._client = client
        props = connack.properties
        rm = getattr(props, "ReceiveMaximum", None) if self.v5 else None
        self.bus.receive_maximum = min(int(rm) if rm else (65535 if self.v5 else V311_INFLIGHT), MAX_WINDOW)
        broker_max = getattr(props, "MaximumPacketSize", None) if self.v5 else None
        limits = [x for x in (broker_max, self.cfg.max_packet_bytes) if x]
        self.bus.max_packet_bytes = int(min(limits)) if limits else None
        self.bus.connected = True
        self.stats.state = "ok"
        self.bus.connects += 1
        self.bus.reconnects += self.bus.connects > 1
        backoff.max_s = 10.0
        backoff.reset()
        if self._said:
            self.say(f"connected to {self.url} again; sending what was held back first", NOTICE)
        self._said = ""
        return client

    def _disconnected(self, err: BaseException) -> None:
        """The connection failed or was lost: in-flight messages go back to the front, in order."""
        self.bus.connected = False
        if self.bus.connects:
            self.stats.state = "disconnected"
        if self._flights:
            back = sorted(self._flights.values(), key=lambda f: f.order)
            self._flights.clear()
            for f in reversed(back):
                if f.item is not None:
                    self._resend.appendleft(f)
                if f.done is not None and not f.done.done():
                    f.done.set_exception(Lost())
                    f.done.exception()  # retrieved: nobody awaits it any more
        self.bus.in_flight = 0
        self.bus.resend_depth = len(self._resend)
        if isinstance(err, BusError):
            text = str(err)
            self.bus.connect_failures += 1
        elif isinstance(err, (Lost, aiomqtt.MqttError)):
            text = f"lost the connection to broker {self.url}"
        else:
            text = str(bus_error(err, self.opts))
        self.bus.last_error = self.stats.last_error = text
        if text != self._said:  # one line per distinct failure, not one per retry
            self._said = text
            self.say(f"{text}; retrying with backoff, tokens held in a buffer of {self.queue_messages} messages "
                     "(oldest dropped and counted beyond)")

    # -- publishing ----------------------------------------------------------------------------------
    async def _pump(self, client: aiomqtt.Client, channel: SinkChannel) -> None:
        paho = paho_of(client)
        window = self.bus.receive_maximum
        while True:
            if self._lost:
                raise Lost()
            while len(self._flights) < window and (self._resend or channel.depth):
                resent = bool(self._resend)
                flight = self._resend.popleft() if resent else self._new_flight(channel)
                assert flight.item is not None
                self._send(paho, flight, resent)
            self.bus.in_flight = len(self._flights)
            self.bus.resend_depth = len(self._resend)
            if channel.closed and not channel.depth and not self._resend and not self._flights:
                return
            self._wake.clear()
            if self._lost:
                raise Lost()
            if len(self._flights) < window and (self._resend or channel.depth):
                continue
            await self._wake.wait()

    def _new_flight(self, channel: SinkChannel) -> Flight:
        item = channel.take()
        self._order += 1
        return Flight(item, self._order, 0)

    def _send(self, paho: Any, flight: Flight, resent: bool) -> None:
        item = flight.item
        assert item is not None
        topic, raw_topic = self.topic(item)
        qos = self.qos(item)
        limit = self.bus.max_packet_bytes
        if limit is not None and packet_size(raw_topic, len(item.data), qos, self._props_len) > limit:
            self.bus.refused["too large"] += 1
            self.stats.count("failed", [item])
            if self.stats.last_error != "too large":
                self.stats.last_error = "too large"
                self.say(f"a {len(item.data)}-byte message on {topic} exceeds the broker's maximum packet size "
                         f"({limit} bytes): refused before sending, counted (a larger max_packet_size on the broker "
                         "lets such messages through)")
            return
        now = time.monotonic_ns()
        info = paho.publish(topic, item.data, qos, False, self._props)
        if info.rc != 0:
            self._resend.appendleft(flight)
            raise Lost()
        self.bus.published += 1
        self.bus.resent += resent
        flight.sent_ns = now
        self.stats.latencies.append((item, now - item.capture_ns))
        if qos == 0:
            self.stats.count("written", [item])
        else:
            self._flights[info.mid] = flight

    def _settle(self, mid: int, rc: Any) -> None:
        """paho's on_publish: the broker acknowledged message ``mid`` with reason code ``rc``."""
        flight = self._flights.pop(mid, None)
        if flight is None:
            return
        self._wake.set()
        code = rc.value if isinstance(rc, ReasonCode) else int(rc or 0)
        if flight.done is not None and not flight.done.done():
            flight.done.set_result(code)
        if flight.item is None:
            return
        if code >= 0x80:  # a v5 failure reason: never delivered, never retried
            self.bus.refused[str(rc)] += 1
            self.stats.count("failed", [flight.item])
            first = self.stats.last_error != f"broker refused: {rc}"
            self.stats.last_error = f"broker refused: {rc}"
            if first:
                self.say(f"broker {self.url} refused a message on {self.topic(flight.item)[0]}: {rc} "
                         "(counted as refused)")
        else:
            self.stats.count("written", [flight.item])

    def _abandon(self) -> None:
        """Cancelled at the shutdown deadline: what is in flight is unconfirmed (failed), what waits
        to be resent is dropped."""
        unconfirmed = [f.item for f in self._flights.values() if f.item is not None]
        self.stats.count("failed", unconfirmed)
        self.stats.count("dropped", [f.item for f in self._resend if f.item is not None])
        self._flights.clear()
        self._resend.clear()

    async def __aenter__(self) -> MqttSink:
        self.stats.state = "connecting"  # "ok" once connected (docs/bus.md)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for task in list(self._meta_tasks):  # a reload's republish still pending: the connection ends here
            task.cancel()
        if self._client is not None:
            force_close(self._client)
        await super().__aexit__(exc_type, exc, tb)

    async def write_batch(self, batch: list[Outgoing]) -> None:  # pragma: no cover - run() is overridden
        raise NotImplementedError
