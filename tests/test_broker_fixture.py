"""The test fixtures themselves: the per-test Mosquitto with every option, and the fault proxy."""

from __future__ import annotations

import select
import socket
import ssl
import subprocess

import pytest
from broker import BrokerOptions, MosquittoFactory, port_open
from netproxy import NetProxy
from requires import require

# an MQTT 3.1.1 CONNECT (clean session, keepalive 60, client id "t") and the CONNACK it gets
CONNECT = bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 1]) + b"t"
CONNACK_OK = bytes([0x20, 2, 0, 0])


def _read(sock: socket.socket, n: int, timeout_s: float) -> bytes:
    data = b""
    while len(data) < n:
        ready, _, _ = select.select([sock], [], [], timeout_s)
        if not ready:
            break
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_a_broker_with_every_option_starts_restarts_and_dies(mosquitto_factory: MosquittoFactory) -> None:
    b = mosquitto_factory(BrokerOptions(
        persistence=True, autosave_on_changes=True, autosave_interval=1, message_size_limit=4096,
        max_queued_messages=100, max_inflight_messages=10, users={"u": "p"}, acl={"u": ["readwrite livetok/#"]},
        tls=True, extra=("max_keepalive 120",)))
    conf = b.config.read_text()
    for line in ("persistence true", "autosave_on_changes true", "autosave_interval 1", "message_size_limit 4096",
                 "max_queued_messages 100", "max_inflight_messages 10", "allow_anonymous false", "password_file",
                 "acl_file", "require_certificate false", "max_keepalive 120", "listener"):
        assert line in conf, line
    assert "u:p" not in (b.workdir / "passwd").read_text()  # hashed by mosquitto_passwd -U
    assert b.tls_port is not None and b.certs is not None
    # the TLS listener verifies with the generated CA, for both names the certificate holds
    ctx = ssl.create_default_context(cafile=str(b.certs.ca))
    for name in ("127.0.0.1", "localhost"):
        with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname=name) as tls:
            assert tls.version() is not None
    # a third-party client logs in with the password
    pub = subprocess.run([require("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(b.port), "-u", "u", "-P", "p",
                          "-t", "livetok/x", "-m", "hi", "-q", "1"], capture_output=True, timeout=10)
    assert pub.returncode == 0, pub.stderr
    port = b.port
    b.kill()
    assert not b.running and not port_open(port)
    b.start()
    b.restart()
    assert b.running and b.port == port and port_open(port) and b.starts == 3


@pytest.mark.slow
def test_the_proxy_forwards_cuts_and_black_holes(mosquitto_factory: MosquittoFactory) -> None:
    b = mosquitto_factory()
    with NetProxy(b.port) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(CONNECT)
            assert _read(s, 4, 5) == CONNACK_OK
            assert proxy.cut() == 1
            assert _read(s, 1, 5) == b""  # closed under it
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            proxy.blackhole()
            s.sendall(CONNECT)
            assert _read(s, 4, 0.3) == b""  # silence: nothing forwarded, nothing closed
            proxy.restore()
            assert _read(s, 4, 5) == CONNACK_OK  # what waited in the buffers flows on
        assert proxy.accepted == 2
