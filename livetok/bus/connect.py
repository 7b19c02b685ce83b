"""Connecting to a broker with aiomqtt: the options both ends share, the client they make, and
the translation of aiomqtt/paho/ssl/socket errors into one :class:`~livetok.errors.BusError` line.

aiomqtt turns every socket and TLS failure of ``connect`` into a bare ``MqttError(str(exc))``
(the original exception is dropped), so :func:`bus_error` classifies by the message text as well
as by type; the texts it looks for are those of CPython's ``ssl`` and ``socket`` modules.

**What livetok takes from aiomqtt's and paho's internals**, all of it here and nowhere else (the
publisher needs paho's per-message acknowledgement with its reason code, which aiomqtt's public
``publish`` hides, and both ends need what aiomqtt drops from the CONNACK): aiomqtt 2.5's
``Client._client`` (the paho client), ``Client._connected`` / ``Client._disconnected`` (futures),
and paho 2.2's ``Client._sock_close()``. The versions are pinned (requirements.lock; pyproject
bounds aiomqtt to 2.x) and tests/test_bus_internals.py checks each of these against the installed
packages and a real broker, so an upgrade that moves one fails there, not in production. Everything
else is public paho API (``on_connect``, ``on_publish``, ``on_disconnect``, ``publish``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import ssl
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from livetok.bus.secret import Secret
from livetok.bus.tls import TlsOptions, make_ssl_context
from livetok.bus.url import BrokerUrl
from livetok.errors import BusError, ConfigError

DEFAULT_SESSION_EXPIRY_S = 3600
# paho's own log lines ("failed to receive on socket: ...") duplicate the one event line livetok says
# for the same loss; they go here, silent unless a handler is added (debugging).
PAHO_LOG = logging.getLogger("livetok.bus.paho")
PAHO_LOG.addHandler(logging.NullHandler())
PAHO_LOG.propagate = False


class Protocol(enum.Enum):
    """MQTT protocol version; the value is how configs and the command line spell it."""

    V5 = "5"
    V311 = "3.1.1"


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach and log in to a broker.

    ``persistent``: keep the session (subscriptions and queued QoS>0 messages) across disconnects:
    clean start off and a session expiry of ``session_expiry_s`` (v5), clean session off (3.1.1);
    it needs a fixed ``client_id``. ``timeout_s`` bounds the wait for the broker's CONNACK.
    ``receive_maximum`` (v5): at most this many QoS 1/2 messages unacknowledged towards us.
    ``password`` is never shown by ``repr`` (a :class:`Secret`).
    """

    url: BrokerUrl
    client_id: str | None = None
    protocol: Protocol = Protocol.V5
    keepalive_s: int = 30
    password: Secret | None = field(default=None, repr=False)
    tls: TlsOptions | None = None
    persistent: bool = False
    session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S
    timeout_s: float = 10.0
    receive_maximum: int | None = None

    def __post_init__(self) -> None:
        if self.persistent and not self.client_id:
            raise ConfigError("a persistent session needs a fixed client id (client_id / --client-id)")
        if self.tls is not None and not self.url.tls:
            raise ConfigError(f"TLS options were given for {self.url}: use an mqtts:// URL for TLS")
        if self.password is not None and not self.url.username:
            raise ConfigError(f"a password was given but {self.url} names no user: use mqtt://USER@HOST")
        if not 1 <= self.keepalive_s <= 65535:
            raise ConfigError(f"keepalive {self.keepalive_s} s is outside 1..65535")
        if self.receive_maximum is not None and not 1 <= self.receive_maximum <= 65535:
            raise ConfigError(f"receive maximum {self.receive_maximum} is outside 1..65535")
        if self.client_id is not None and not 1 <= len(self.client_id.encode()) <= 65535:
            raise ConfigError(f"client id {self.client_id!r} must be 1 to 65535 bytes")


def make_client(opts: ConnectOptions, **extra: Any) -> aiomqtt.Client:
    """An unconnected aiomqtt client for ``opts`` (call inside the event loop that will use it).

    ``extra`` goes to :class:`aiomqtt.Client` (``will``, ``queue_type``, ``max_inflight_messages``, ...).
    """
    tls_context: ssl.SSLContext | None = None
    if opts.url.tls:
        tls_context = make_ssl_context(opts.tls or TlsOptions())
    v5 = opts.protocol is Protocol.V5
    kwargs: dict[str, Any] = {
        "identifier": opts.client_id,
        "protocol": aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        "keepalive": opts.keepalive_s,
        "timeout": opts.timeout_s,
        "tls_context": tls_context,
    }
    if opts.url.username:
        kwargs["username"] = opts.url.username
        kwargs["password"] = opts.password.reveal() if opts.password is not None else None
    if v5:
        kwargs["clean_start"] = not opts.persistent
        if opts.persistent or opts.receive_maximum is not None:
            props = Properties(PacketTypes.CONNECT)
            if opts.persistent:
                props.SessionExpiryInterval = opts.session_expiry_s
            if opts.receive_maximum is not None:
                props.ReceiveMaximum = opts.receive_maximum
            kwargs["properties"] = props
    else:
        kwargs["clean_session"] = not opts.persistent
    kwargs["logger"] = PAHO_LOG
    kwargs.update(extra)
    return aiomqtt.Client(opts.url.host, opts.url.port, **kwargs)


def paho_of(client: aiomqtt.Client) -> Any:
    """The paho client inside an aiomqtt one (aiomqtt 2.5's ``_client``; module doc). Typed loosely:
    paho's stubs declare its callbacks as ``None``."""
    return client._client


@dataclass
class Connack:
    """What the broker's CONNACK said beyond success, filled in when it arrives."""

    session_present: bool = False  # the broker kept our persistent session (subscriptions, queue)
    properties: Properties | None = None  # v5: Receive Maximum, Maximum Packet Size, ...


def capture_connack(client: aiomqtt.Client) -> Connack:
    """Record the CONNACK's session-present flag and v5 properties, which aiomqtt drops: wraps
    paho's on_connect (aiomqtt's own handler still runs after). Call before connecting."""
    connack = Connack()
    paho = paho_of(client)
    on_connect: Any = paho.on_connect  # typed loosely: paho's stubs say "None"

    def connected(c: Any, userdata: Any, flags: Any, rc: Any, props: Properties | None = None) -> None:
        connack.session_present = bool(getattr(flags, "session_present", False))
        connack.properties = props
        on_connect(c, userdata, flags, rc, props)

    paho.on_connect = connected
    return connack


def force_close(client: aiomqtt.Client) -> None:
    """Close a client's socket whatever state it is in, without waiting.

    aiomqtt leaves the socket of a failed or timed-out connect open (paho closes it only after a
    keepalive period); a late CONNACK on it would make a second session under our client id, so
    the socket is closed here through paho, the one handle aiomqtt keeps of it.
    """
    paho = getattr(client, "_client", None)  # paho_of, for a client that may be half made
    if paho is None:
        return
    with contextlib.suppress(Exception):
        paho._sock_close()  # paho 2.2: closes the socket and tells aiomqtt (on_socket_close)
    # A lost connection leaves aiomqtt's futures holding an exception nobody awaits (we learnt of the
    # loss from paho): mark them retrieved, or asyncio logs "Future exception was never retrieved".
    for name in ("_disconnected", "_connected"):
        fut = getattr(client, name, None)
        if isinstance(fut, asyncio.Future) and fut.done() and not fut.cancelled():
            fut.exception()


# CONNACK reason codes that retrying with the same credentials cannot fix (v5 values, and the
# v3.1.1 return codes 1, 2, 4, 5).
_FATAL_CONNACK = {
    0x84: "the broker does not support this MQTT version",
    0x85: "the broker refused the client id",
    0x86: "bad user name or password",
    # Mosquitto answers a wrong password with this one too
    0x87: "not authorized (a wrong user name or password, or a user the broker does not admit)",
    0x8A: "the user is banned",
    0x8C: "bad authentication method",
}
_FATAL_CONNACK_V311 = {
    1: "the broker does not support this MQTT version",
    2: "the broker refused the client id",
    4: "bad user name or password",
    5: "not authorized (a wrong user name or password, or a user the broker does not admit)",
}


def bus_error(err: BaseException, opts: ConnectOptions, doing: str = "connect to") -> BusError:
    """``err`` (from aiomqtt, paho, ssl or socket) as one BusError line naming the broker, with
    ``retryable`` False for refusals that retrying cannot fix (login, TLS verification)."""
    url = opts.url
    who = f" as user {url.username!r}" if url.username else ""
    text = _plain(err)
    rc = getattr(err, "rc", None)
    value = rc.value if isinstance(rc, ReasonCode) else rc
    if isinstance(err, MqttConnectError) and isinstance(value, int):
        table = _FATAL_CONNACK if isinstance(rc, ReasonCode) else _FATAL_CONNACK_V311
        if value in table:
            return BusError(f"broker {url} refused the connection{who}: {table[value]}", retryable=False)
        return BusError(f"broker {url} refused the connection: {text}", retryable=True)
    low = text.lower()
    if isinstance(err, ssl.SSLCertVerificationError) or "certificate_verify_failed" in low \
            or "certificate verify failed" in low:
        detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl.c")[0].strip(" :")
        return BusError(f"TLS: the certificate of broker {url} was not accepted: {detail or text}", retryable=False)
    if isinstance(err, ssl.SSLError) or "[ssl" in low or "tlsv1 alert" in low or "wrong version number" in low:
        return BusError(f"TLS with broker {url} failed: {text}", retryable=False)
    if "timed out" in low:
        return BusError(f"cannot {doing} broker {url}: no answer within {opts.timeout_s:g} s", retryable=True)
    return BusError(f"cannot {doing} broker {url}: {text}", retryable=True)


def _plain(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err)
    # "[Errno 111] Connection refused" -> "Connection refused"
    if text.startswith("[Errno") and "] " in text:
        text = text.split("] ", 1)[1]
    return text or type(err).__name__


def reason_failed(code: object) -> bool:
    """True when a SUBACK entry (a v5 ReasonCode or a v3.1.1 granted-QoS int) is a refusal."""
    value = code.value if isinstance(code, ReasonCode) else code
    return isinstance(value, int) and value >= 0x80


def reason_text(code: object) -> str:
    if isinstance(code, ReasonCode):
        return str(code)
    return "failure" if code == 0x80 else str(code)


class Backoff:
    """Capped exponential backoff with jitter: ``initial_s``, doubling up to ``max_s``, each delay
    drawn uniformly from its upper half so that many clients restarting together spread out."""

    def __init__(self, initial_s: float = 0.2, max_s: float = 10.0) -> None:
        if not 0 < initial_s <= max_s:
            raise ConfigError(f"backoff needs 0 < initial ({initial_s}) <= max ({max_s})")
        self.initial_s, self.max_s = initial_s, max_s
        self._next = initial_s

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.max_s, self._next * 2)
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self._next = self.initial_s
