"""What livetok takes from aiomqtt's and paho's internals (livetok/bus/connect.py, module doc), checked
against the installed packages and a real Mosquitto: an upgrade that moves any of it fails here."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
from importlib.metadata import version
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho_client
import pytest
from broker import MosquittoFactory

from livetok.bus.connect import ConnectOptions, Protocol, capture_connack, force_close, make_client, paho_of
from livetok.bus.url import BrokerUrl

ROOT = Path(__file__).resolve().parent.parent


def pinned(name: str) -> str:
    m = re.search(rf"^{re.escape(name)}==(\S+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    assert m, f"{name} is not pinned in requirements.lock"
    return m.group(1)


def test_the_versions_relied_on_are_the_pinned_ones() -> None:
    assert version("aiomqtt") == pinned("aiomqtt") and version("aiomqtt").startswith("2.5.")
    assert version("paho-mqtt") == pinned("paho-mqtt") and version("paho-mqtt").startswith("2.2.")


def test_the_private_names_exist_where_expected() -> None:
    async def go() -> None:
        client = make_client(ConnectOptions(BrokerUrl("mqtt", "127.0.0.1", 1)))
        assert isinstance(paho_of(client), paho_client.Client)  # aiomqtt's Client._client
        assert callable(getattr(paho_of(client), "_sock_close", None))  # paho's Client._sock_close()
        for name in ("_connected", "_disconnected"):  # aiomqtt's connection futures
            assert isinstance(getattr(client, name, None), asyncio.Future), name

    asyncio.run(go())


@pytest.mark.parametrize("protocol", [Protocol.V5, Protocol.V311])
def test_connack_capture_and_force_close_against_a_real_broker(mosquitto_factory: MosquittoFactory,
                                                                protocol: Protocol,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """capture_connack sees the v5 CONNACK's Maximum Packet Size (aiomqtt drops it); force_close
    closes a connected client's socket at once, tells aiomqtt (its reader removed), and leaves no
    "exception was never retrieved" behind."""
    broker = mosquitto_factory(extra=("max_packet_size 4096",))
    opts = ConnectOptions(BrokerUrl("mqtt", "127.0.0.1", broker.port), client_id="internals", protocol=protocol)

    async def go() -> tuple[object, object, int]:
        client = make_client(opts)
        connack = capture_connack(client)
        await client.__aenter__()
        paho = paho_of(client)
        fileno = paho.socket().fileno()
        force_close(client)
        await asyncio.sleep(0.2)  # the broker notices; aiomqtt's futures settle
        return connack.properties, paho.socket(), fileno

    with caplog.at_level(logging.DEBUG):
        props, sock, fileno = asyncio.run(go())
        gc.collect()
    assert sock is None and fileno > 0
    if protocol is Protocol.V5:
        assert getattr(props, "MaximumPacketSize", None) == 4096
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert "internals" in broker.log()  # it was a real session


def test_aiomqtt_still_hides_what_the_publisher_works_around() -> None:
    """Why the publisher publishes through paho: aiomqtt's publish() does not return the PUBACK's
    reason code (a refused message looks delivered). If a release returns it, the publisher can
    use the public API instead."""
    import inspect

    sig = inspect.signature(aiomqtt.Client.publish)
    assert sig.return_annotation in ("None", None, inspect.Signature.empty)
