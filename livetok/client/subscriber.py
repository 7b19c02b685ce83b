"""The consumer: subscribe to livetok topics and get decoded packets and steps you can trust.

    async with Subscriber("mqtt://broker:1883", "livetok/+/+/steps") as sub:
        async for msg in sub:
            msg.step, msg.run_id, msg.continuity, msg.received_unix_ns
        sub.stats.total.gaps

Delivery, as this module implements it:

* Every message is stamped (monotonic and wall-clock ns) when it comes off the socket, and
  waits in a bounded buffer (``buffer_messages``) until the caller takes it. When the buffer is
  full the oldest message is dropped and counted (``stats.dropped``); the consumer then sees it
  as a gap, like any other loss. Under MQTT v5 the broker is told (Receive Maximum) not to have
  more QoS 1/2 messages unacknowledged towards us than the buffer holds, so those do not
  overflow it (except, briefly, with redeliveries after a reconnect).
* QoS 1/2 messages are acknowledged to the broker when the caller takes them (or when they are
  dropped or skipped), not when they arrive: a consumer that falls behind makes the broker hold
  messages (its in-flight window, then its queue), and with a persistent session what was not
  yet taken is sent again after a crash or a reconnect (and counted as duplicates if it was).
* Continuity per stream (``livetok.client.continuity``, applied by ``livetok.client.decoding``):
  gaps, duplicates, late arrivals and daemon restarts (a new run id) are counted across reconnects.
  Duplicates and messages of an older run are counted and skipped unless ``deliver_duplicates``.
* The connection is kept up: a lost connection is retried with capped exponential backoff
  (forever by default), re-subscribing; counters and buffered messages survive. Refusals that
  retrying cannot fix (login, TLS verification, a refused subscription) raise
  :class:`~livetok.errors.BusError` with ``retryable`` False.
* Each source's retained meta (``{prefix}/{instance}/{source}/meta``) and each instance's
  availability are subscribed to beside the data (``meta=True``) and exposed as :attr:`meta`,
  :attr:`available`; under MQTT 3.1.1, which has no message properties, the run id of a message
  comes from its source's (or instance's) meta. They are only yielded when the caller's own
  filters match them.
"""
# Over 450 lines because the Subscriber is one state machine: connecting, reconnecting, the buffer and
# the acknowledgements share its state (a message is acknowledged on the connection it came on). Its
# types are in message.py, the decoding in decoding.py.

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

from aiomqtt import Message as MqttMessage
from aiomqtt import MqttError

from livetok.bus.connect import (
    Backoff,
    ConnectOptions,
    Protocol,
    bus_error,
    capture_connack,
    force_close,
    make_client,
    reason_failed,
    reason_text,
)
from livetok.bus.meta import SourceMeta
from livetok.bus.secret import Secret, read_secret_file
from livetok.bus.tls import TlsOptions
from livetok.bus.topics import (
    DEFAULT_PREFIX,
    check_filter,
    check_name,
    check_prefix,
    companion_filters,
    data_filters,
    filter_covers,
    split_shared,
)
from livetok.bus.url import parse_broker_url
from livetok.client.continuity import StreamStats
from livetok.client.decoding import Decoder
from livetok.client.message import Message, SubscriberStats
from livetok.errors import BusError, ConfigError
from livetok.vocab import Vocabulary


class _Intake:
    """Stands in for aiomqtt's incoming-message queue (its ``queue_type`` hook), so that each
    message is stamped the moment paho hands it over and lands in the subscriber's own buffer,
    which outlives the connection. aiomqtt's message iterator waits on :meth:`get`, which never
    returns: that iterator is only used to learn that the connection dropped."""

    def __init__(self, sub: Subscriber, gen: int) -> None:
        self._sub, self._gen = sub, gen

    def put_nowait(self, item: MqttMessage) -> None:
        self._sub._receive(item, self._gen)

    async def get(self) -> MqttMessage:
        await asyncio.get_running_loop().create_future()  # never completes; cancelled on disconnect
        raise AssertionError("unreachable")

    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True


_Entry = tuple[int, int, int, MqttMessage]  # (monotonic ns, unix ns, connection generation, message)


class Subscriber:
    """Subscribe to livetok topics (module doc). An async context manager and async iterator.

    ``url``: ``mqtt[s]://[USER@]HOST[:PORT]``. ``filters``: one filter or several (default: every
    token and step topic under ``prefix``); ``$share/GROUP/...`` filters are allowed, or give
    ``share`` to make them all shared (each message then goes to one member of the group, and
    each member sees the others' messages as gaps). ``qos``: the subscription's maximum QoS.
    ``persistent`` (needs ``client_id``): the broker keeps the session and queues QoS>0 messages
    while this subscriber is away, for ``session_expiry_s``. ``protocol``: "5" or "3.1.1".
    ``password`` (str or Secret) or ``password_file``: never shown in repr, logs or errors.
    ``tls``: CA, client certificate, minimum version (mqtts:// URLs). ``connect_attempts``: tries
    for the first connection (None: forever); later reconnects retry forever unless
    ``reconnect_timeout_s`` is given.

    Args:
        url: the broker, ``mqtt[s]://[USER@]HOST[:PORT]`` (no password in it).
        filters: one topic filter or several; None: every token and step topic under ``prefix``.
        **options: the keywords above and in docs/bus.md ("The consumer"), each with its unit.

    Raises:
        ConfigError: a bad URL, filter or option, here at construction.
        BusError: from ``async with`` and the iterator: unreachable, timed out or lost after the
            retries (``retryable``), or a refused login, certificate or subscription (not).
    """

    def __init__(
        self,
        url: str,
        filters: str | Sequence[str] | None = None,
        *,
        qos: int = 1,
        client_id: str | None = None,
        protocol: Protocol | str = Protocol.V5,
        persistent: bool = False,
        session_expiry_s: int = 3600,
        share: str | None = None,
        password: str | Secret | None = None,
        password_file: str | os.PathLike[str] | None = None,
        tls: TlsOptions | None = None,
        keepalive_s: int = 30,
        timeout_s: float = 10.0,
        prefix: str = DEFAULT_PREFIX,
        meta: bool = True,
        deliver_duplicates: bool = False,
        buffer_messages: int = 10_000,
        connect_attempts: int | None = 5,
        reconnect_timeout_s: float | None = None,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ConfigError(f"qos {qos!r} is not 0, 1 or 2")
        if buffer_messages < 1:
            raise ConfigError(f"buffer_messages {buffer_messages} must be at least 1")
        if connect_attempts is not None and connect_attempts < 1:
            raise ConfigError(f"connect_attempts {connect_attempts} must be at least 1 (None: forever)")
        if password is not None and password_file is not None:
            raise ConfigError("give a password or a password file, not both")
        secret = read_secret_file(password_file) if password_file is not None else (
            Secret(password) if isinstance(password, str) else password)
        try:
            proto = protocol if isinstance(protocol, Protocol) else Protocol(str(protocol))
        except ValueError:
            raise ConfigError(f"MQTT protocol {protocol!r} is not '5' or '3.1.1'") from None
        self._opts = ConnectOptions(
            url=parse_broker_url(url), client_id=client_id, protocol=proto, keepalive_s=keepalive_s,
            password=secret, tls=tls, persistent=persistent, session_expiry_s=session_expiry_s, timeout_s=timeout_s,
            # the broker may not have more QoS 1/2 messages out to us than the buffer holds, so
            # those never overflow it: a slow consumer makes them wait at the broker instead
            receive_maximum=min(buffer_messages, 65535))
        self._prefix = check_prefix(prefix)
        wanted = [filters] if isinstance(filters, str) else list(filters or data_filters(self._prefix))
        if not wanted:
            raise ConfigError("no topic filter given")
        if share is not None:
            check_name(share, "share group")
        self._user_filters = [split_shared(check_filter(f))[1] for f in wanted]
        subs = [f if share is None or f.startswith("$share/") else f"$share/{share}/{f}" for f in wanted]
        if meta:
            for f in wanted:
                for extra in companion_filters(f, self._prefix):
                    covered = any(filter_covers(u, extra) for u in self._user_filters)
                    if not covered and extra not in subs:
                        subs.append(extra)
        self._subscriptions = list(dict.fromkeys(subs))
        self._qos = qos
        self._buffer_max = buffer_messages
        self._connect_attempts = connect_attempts
        self._reconnect_timeout_s = reconnect_timeout_s
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)

        self._decoder = Decoder(self._user_filters, deliver_duplicates, self._say_error)
        self._inbox: deque[_Entry] = deque()
        self._wake: asyncio.Event | None = None
        self._client: Any = None  # aiomqtt.Client of the current connection
        self._watch: asyncio.Task[None] | None = None
        self._confirm: asyncio.Task[None] | None = None  # a resumed session's SUBACK, awaited aside
        self._refused: BusError | None = None  # a subscription refused after connecting
        self._gen = 0
        self._lost: BaseException | None = None  # set while the connection is down
        self._reconnecting = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._reconnect_deadline: float | None = None
        self._closed = False
        self._counts = {"dropped": 0, "connects": 0, "reconnects": 0, "disconnects": 0, "resumed": 0}
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return f"Subscriber({str(self._opts.url)!r}, {self._subscriptions!r}, connected={self.connected})"

    # -- public state ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The broker, as ``mqtt[s]://[USER@]HOST:PORT`` (never with a password)."""
        return str(self._opts.url)

    @property
    def subscriptions(self) -> list[str]:
        """The filters actually subscribed to (the caller's, shared if asked, then meta/availability)."""
        return list(self._subscriptions)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._lost is None

    @property
    def stats(self) -> SubscriberStats:
        d = self._decoder
        streams = d.tracker.stats()
        total = StreamStats()
        for s in streams.values():
            total.add(s)
        c = self._counts
        return SubscriberStats(streams, total, d.messages, d.foreign, d.meta_errors, c["dropped"],
                               len(self._inbox), c["connects"], c["reconnects"], c["disconnects"], self.connected,
                               self._last_error, c["resumed"])

    @property
    def meta(self) -> dict[tuple[str, str], SourceMeta]:
        """The latest meta per (instance, source) seen so far (updated as messages are taken)."""
        return dict(self._decoder.meta)

    @property
    def available(self) -> dict[str, str]:
        """The latest availability per instance: ``online``, ``stopped`` or ``offline``."""
        return dict(self._decoder.available)

    def vocabulary(self, codebook_id: str) -> Vocabulary | None:
        """The joint vocabulary as published in the latest meta that covers ``codebook_id``, if seen.

        Args:
            codebook_id: a packet's ``codebook_id``: the built-in codebooks' or, for a named stream
                (layout 2), its tokenizer's.

        Returns:
            The vocabulary, or None before any meta naming ``codebook_id`` arrived. A source's own
            is ``sub.meta[(instance, source)].vocab``.
        """
        return self._decoder.vocabs.get(codebook_id)

    def _say_error(self, line: str) -> None:
        self._last_error = line

    # -- connection --------------------------------------------------------------------------------

    async def __aenter__(self) -> Subscriber:
        self._wake = asyncio.Event()
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._connect_once()
                return self
            except BusError as err:
                self._last_error = str(err)
                last = self._connect_attempts is not None and attempt >= self._connect_attempts
                if not err.retryable or last:
                    await self.close()
                    tries = f" (gave up after {attempt} attempts)" if attempt > 1 else ""
                    raise BusError(f"{err}{tries}", retryable=err.retryable) from err.__cause__
            except BaseException:
                await self.close()
                raise
            await asyncio.sleep(self._backoff.next_delay())

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Disconnect (gracefully, within a few seconds) and end iteration; safe to call twice."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._drop_client(graceful=True)

    async def _connect_once(self) -> None:
        self._gen += 1
        gen = self._gen
        client = make_client(self._opts, queue_type=cast(Any, lambda maxsize=0: _Intake(self, gen)))
        # QoS 1/2 acknowledgements go out when the caller takes a message (module doc); paho's
        # switch for that is on the client aiomqtt wraps, and must be set before connecting
        client._client.manual_ack_set(True)
        connack = capture_connack(client)
        try:
            await client.__aenter__()
        except asyncio.CancelledError:
            force_close(client)
            raise
        except (MqttError, OSError) as err:
            force_close(client)
            raise bus_error(err, self._opts) from err
        # A resumed persistent session already holds our subscriptions, and the broker sends what it
        # queued for us the moment it accepts the connection, ahead of the SUBACK of a subscribe sent
        # now: behind a backlog of minutes (up to our Receive Maximum of messages, each through
        # paho) that SUBACK takes longer than any timeout, and giving up leaves the backlog unacked
        # for the next try. So then the subscription is renewed (filters may have changed) and its
        # SUBACK awaited aside; a refusal still ends iteration with BusError.
        resumed = self._opts.persistent and connack.session_present
        if not resumed:
            try:
                codes = await client.subscribe([(f, self._qos) for f in self._subscriptions])
            except asyncio.CancelledError:
                force_close(client)
                raise
            except (MqttError, OSError) as err:
                force_close(client)
                raise bus_error(err, self._opts, "subscribe at") from err
            refused = self._refusal(codes)
            if refused is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.__aexit__(None, None, None), 2.0)
                force_close(client)
                raise refused
        if self._closed:  # closed while connecting
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.__aexit__(None, None, None), 2.0)
            force_close(client)
            return
        self._client = client
        self._lost = None
        self._counts["connects"] += 1
        self._backoff.reset()
        self._watch = asyncio.create_task(self._watch_connection(client, gen), name="livetok-subscriber-watch")
        if resumed:
            self._counts["resumed"] += 1
            self._confirm = asyncio.create_task(self._confirm_subscriptions(client, gen),
                                                name="livetok-subscriber-suback")

    def _refusal(self, codes: Sequence[Any]) -> BusError | None:
        refused = [(f, c) for f, c in zip(self._subscriptions, codes, strict=False) if reason_failed(c)]
        if not refused:
            return None
        what = ", ".join(f"{f!r} ({reason_text(c)})" for f, c in refused)
        return BusError(f"broker {self._opts.url} refused the subscription to {what}", retryable=False)

    async def _confirm_subscriptions(self, client: Any, gen: int) -> None:
        """Renew the subscriptions of a resumed session; its SUBACK may wait behind the backlog."""
        try:
            codes = await client.subscribe([(f, self._qos) for f in self._subscriptions], timeout=math.inf)
        except (MqttError, OSError):
            return  # the connection went: the watch says so, and the next connection subscribes
        refused = self._refusal(codes)
        if refused is not None and gen == self._gen:
            self._refused = refused
            self._last_error = str(refused)
            if self._wake is not None:
                self._wake.set()

    async def _watch_connection(self, client: Any, gen: int) -> None:
        """Wait for the connection to drop (aiomqtt's iterator raises then) and say so."""
        try:
            async for _ in client.messages:
                pass
        except MqttError as err:
            if gen == self._gen and not self._closed:
                self._lost = err
                if self._wake is not None:
                    self._wake.set()

    async def _drop_client(self, graceful: bool) -> None:
        client, self._client = self._client, None
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
        confirm, self._confirm = self._confirm, None
        if confirm is not None:
            confirm.cancel()
        if client is None:
            return
        try:
            if graceful:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.__aexit__(None, None, None), 2.0)
        finally:
            force_close(client)  # also when cancelled: never leave a socket behind

    async def _reconnect(self) -> None:
        """Reconnect after a loss. ``_lost`` stays set until a new connection is up, so a caller
        cancelled in here (``get(timeout_s)``) finds the subscriber still reconnecting next time."""
        if not self._reconnecting:
            self._reconnecting = True
            self._counts["disconnects"] += 1
            if self._lost is not None:
                self._last_error = str(bus_error(self._lost, self._opts, "stay connected to"))
            self._reconnect_deadline = (None if self._reconnect_timeout_s is None
                                        else time.monotonic() + self._reconnect_timeout_s)
            await self._drop_client(graceful=False)
        while not self._closed:
            await asyncio.sleep(self._backoff.next_delay())
            if self._closed:
                return
            try:
                await self._connect_once()
            except BusError as e:
                self._last_error = str(e)
                deadline = self._reconnect_deadline
                if not e.retryable or (deadline is not None and time.monotonic() > deadline):
                    self._reconnecting = False
                    raise
                continue
            self._reconnecting = False
            self._counts["reconnects"] += 1
            return

    # -- messages ----------------------------------------------------------------------------------

    def _receive(self, msg: MqttMessage, gen: int) -> None:
        """paho's on_message, on the event loop thread: stamp, buffer, wake the reader."""
        self._inbox.append((time.monotonic_ns(), time.time_ns(), gen, msg))
        if len(self._inbox) > self._buffer_max:
            self._ack(self._inbox.popleft())
            self._counts["dropped"] += 1
        if self._wake is not None:
            self._wake.set()

    def _ack(self, entry: _Entry) -> None:
        """Acknowledge a QoS 1/2 message on the connection it came on (a message id means nothing
        on another connection; the broker resends what a persistent session did not get acked)."""
        _, _, gen, msg = entry
        client = self._client
        if msg.qos and gen == self._gen and client is not None:
            with contextlib.suppress(Exception):
                client._client.ack(msg.mid, msg.qos)

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> Message:
        if self._wake is None:
            raise RuntimeError("use 'async with Subscriber(...)' before iterating")
        while True:
            while self._inbox:
                entry = self._inbox.popleft()
                self._ack(entry)
                out = self._decoder.decode(entry[0], entry[1], entry[3])
                if out is not None:
                    return out
            if self._closed:
                raise StopAsyncIteration
            if self._refused is not None:
                raise self._refused
            if self._lost is not None:
                # The reconnection runs as a task of its own: a caller that gives up waiting
                # (get(timeout_s)) must not cancel it half-way, or a short timeout against a
                # growing backoff would keep it from ever connecting.
                task = self._reconnect_task
                if task is None or task.done():
                    task = self._reconnect_task = asyncio.create_task(self._reconnect(),
                                                                      name="livetok-subscriber-reconnect")
                try:
                    await asyncio.shield(task)
                finally:
                    if task.done():
                        self._reconnect_task = None
                continue
            self._wake.clear()
            await self._wake.wait()

    async def get(self, timeout_s: float | None = None) -> Message | None:
        """The next message, or None after ``timeout_s`` or once closed."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout_s)
        except (TimeoutError, StopAsyncIteration):
            return None
