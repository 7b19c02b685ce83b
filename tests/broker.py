"""A real Mosquitto per test, on a free loopback port, from a config generated in a temporary folder.

    def test_x(mosquitto: Mosquitto) -> None:             # a default broker, started
        mosquitto.url                                      # "mqtt://127.0.0.1:PORT"

    def test_y(mosquitto_factory) -> None:                # brokers with options, all stopped at the end
        b = mosquitto_factory(BrokerOptions(persistence=True, autosave_on_changes=True,
                                            users={"daemon": "pw"}, acl={"daemon": ["readwrite livetok/#"]},
                                            tls=True))
        b.restart(); b.kill(); b.start()
        b.tls_url, b.certs.ca                               # "mqtts://127.0.0.1:PORT", the CA to trust

Options: persistence (with ``autosave_on_changes`` and ``autosave_interval``), ``message_size_limit``,
``max_queued_messages``, ``max_inflight_messages``, users (a password file made with
``mosquitto_passwd -U``) with a per-user ACL file, a TLS listener with certificates made by the
``openssl`` command at test time (:func:`make_certs`: a CA, a server certificate for 127.0.0.1 and
localhost or any SAN you give, a client certificate), and raw extra config lines. The listeners
accept MQTT 3.1, 3.1.1 and 5 and bind 127.0.0.1 only.

Every process is stopped by the fixture that started it (SIGTERM, then SIGKILL), and at interpreter
exit if a test was interrupted; every wait is bounded.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from requires import require

_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        with contextlib.suppress(OSError):
            proc.kill()


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


# -- certificates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """PEM files: the CA (``ca``, ``ca_key``), the server's (``server``, ``server_key``), a client's."""

    ca: Path
    ca_key: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([require("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certs(directory: Path, san: tuple[str, ...] = ("IP:127.0.0.1", "DNS:localhost"),
               name: str = "livetok-test") -> Certs:
    """A fresh CA and a server and a client certificate signed by it (EC P-256, 1 day), made with
    the openssl command. ``san``: the server certificate's subjectAltName entries."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
             "-subj", f"/CN={name} CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    (d / "server.ext").write_text(f"subjectAltName={','.join(san)}\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who, cn in (("server", "livetok-test-broker"), ("client", "livetok-test-client")):
        _openssl("req", "-new", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{who}.crt", "-days", "1", "-extfile", f"{who}.ext", cwd=d)
    return Certs(d / "ca.crt", d / "ca.key", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")


# -- the broker ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerOptions:
    """What the generated mosquitto.conf says (None: Mosquitto's default).

    ``users``: user -> password (then anonymous clients are refused unless ``anonymous``);
    ``acl``: user -> lines like ``"readwrite livetok/host1/#"`` or ``"read livetok/#"``;
    ``tls``: add a TLS listener (``tls_port``) beside the plain one; ``require_certificate``:
    clients must present a certificate signed by the CA; ``san``: the server certificate's names.
    """

    persistence: bool = False
    autosave_on_changes: bool = False
    autosave_interval: int | None = None
    message_size_limit: int | None = None
    max_queued_messages: int | None = None
    max_inflight_messages: int | None = None
    users: dict[str, str] | None = None
    acl: dict[str, list[str]] | None = None
    anonymous: bool | None = None
    tls: bool = False
    require_certificate: bool = False
    san: tuple[str, ...] = ("IP:127.0.0.1", "DNS:localhost")
    extra: tuple[str, ...] = field(default_factory=tuple)


class Mosquitto:
    """One Mosquitto process on 127.0.0.1 (module doc). A context manager; ``start()`` on entry."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, options: BrokerOptions | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.options = options or BrokerOptions()
        self.port = free_port()
        self.tls_port: int | None = free_port() if self.options.tls else None
        self.certs: Certs | None = make_certs(self.workdir / "certs", self.options.san) if self.options.tls else None
        self.config = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._write_config()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        if self.tls_port is None:
            raise RuntimeError("this broker has no TLS listener (BrokerOptions(tls=True))")
        return f"mqtts://{self.host}:{self.tls_port}"

    def url_for(self, user: str, tls: bool = False) -> str:
        """The URL with ``user@`` in it (the password goes in a file or a Secret, never the URL)."""
        base = self.tls_url if tls else self.url
        scheme, rest = base.split("://")
        return f"{scheme}://{user}@{rest}"

    def password_file(self, user: str, directory: Path | None = None) -> Path:
        """A file holding ``user``'s password, as a client's ``--password-file`` wants it."""
        assert self.options.users is not None and user in self.options.users
        path = (directory or self.workdir) / f"{user}.password"
        path.write_text(self.options.users[user] + "\n")
        path.chmod(0o600)
        return path

    # -- config --------------------------------------------------------------------------------

    def _write_config(self) -> None:
        o = self.options
        lines = [
            f"user {getpass.getuser()}",  # as root, Mosquitto would otherwise switch to the mosquitto user
            "per_listener_settings false",
            "log_dest stderr",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            f"listener {self.port} {self.host}",
        ]
        if self.tls_port is not None and self.certs is not None:
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.certs.ca}", f"certfile {self.certs.server}", f"keyfile {self.certs.server_key}",
                f"require_certificate {'true' if o.require_certificate else 'false'}",
            ]
        anonymous = o.anonymous if o.anonymous is not None else not o.users
        lines.append(f"allow_anonymous {'true' if anonymous else 'false'}")
        if o.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "persistence_file mosquitto.db"]
        if o.autosave_on_changes:
            lines.append("autosave_on_changes true")
        if o.autosave_interval is not None:
            lines.append(f"autosave_interval {o.autosave_interval}")
        for key in ("message_size_limit", "max_queued_messages", "max_inflight_messages"):
            value = getattr(o, key)
            if value is not None:
                lines.append(f"{key} {value}")
        if o.users:
            pw = self.workdir / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in o.users.items()))
            pw.chmod(0o600)
            subprocess.run([require("mosquitto_passwd"), "-U", str(pw)], check=True, capture_output=True,
                           timeout=30)
            lines.append(f"password_file {pw}")
        if o.acl is not None:
            acl = self.workdir / "acl"
            acl.write_text("".join(f"user {u}\n" + "".join(f"topic {rule}\n" for rule in rules) + "\n"
                                   for u, rules in o.acl.items()))
            lines.append(f"acl_file {acl}")
        lines += list(o.extra)
        self.config.write_text("\n".join(lines) + "\n")

    # -- process -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        """Start on the same port(s) as before; return once they accept connections."""
        if self.running:
            return self
        binary = require("mosquitto")
        log = open(self.log_path, "ab")  # noqa: SIM115 -- the child holds it; closed right after spawning
        try:
            self.proc = subprocess.Popen([binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        _LIVE.add(self.proc)
        self.starts += 1
        ports = [p for p in (self.port, self.tls_port) if p is not None]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.log()[-2000:]}")
            if all(port_open(p) for p in ports):
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {ports} within {timeout_s} s: {self.log()[-2000:]}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop (SIGTERM: Mosquitto saves its persistence file), SIGKILL after ``timeout_s``."""
        self._end(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """Stop at once (SIGKILL): nothing is saved."""
        self._end(signal.SIGKILL, 10.0)

    def restart(self, down_s: float = 0.0, timeout_s: float = 10.0) -> None:
        """Graceful stop, ``down_s`` seconds down, start again on the same port(s)."""
        self.stop(timeout_s)
        if down_s:
            time.sleep(down_s)
        self.start(timeout_s)

    def _end(self, sig: int, timeout_s: float) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        _LIVE.discard(proc)
        self.proc = None

    def log(self) -> str:
        """Everything Mosquitto has logged so far (all runs)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(5.0)


MosquittoFactory = Callable[..., Mosquitto]


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[MosquittoFactory]:
    """Make started brokers: ``mosquitto_factory(BrokerOptions(...))`` or ``mosquitto_factory(persistence=True)``.
    All are stopped when the test ends."""
    made: list[Mosquitto] = []

    def make(options: BrokerOptions | None = None, **kw: object) -> Mosquitto:
        opts = options or BrokerOptions(**kw)  # type: ignore[arg-type]
        broker = Mosquitto(tmp_path / f"broker{len(made)}", opts)
        made.append(broker)
        return broker.start()

    yield make
    for broker in made:
        broker.stop(5.0)


@pytest.fixture
def mosquitto(mosquitto_factory: MosquittoFactory) -> Mosquitto:
    """A default broker (anonymous, no persistence), started, stopped at the end of the test."""
    return mosquitto_factory()

