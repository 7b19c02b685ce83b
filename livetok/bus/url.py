"""Broker URLs: ``mqtt://[USER@]HOST[:PORT]`` and ``mqtts://[USER@]HOST[:PORT]`` (TLS).

Default ports: 1883 for ``mqtt``, 8883 for ``mqtts``. An IPv6 host goes in brackets
(``mqtt://[::1]:1883``). A password in the URL is refused: URLs end up in process lists, shell
histories, logs and config dumps, so passwords come from a file (or from code), never a URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from livetok.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_HOST = re.compile(r"[A-Za-z0-9._-]{1,253}\Z")


@dataclass(frozen=True)
class BrokerUrl:
    """A parsed broker URL; ``str()`` gives it back in canonical form (never with a password)."""

    scheme: str  # "mqtt" or "mqtts"
    host: str  # a name, an IPv4 address, or an IPv6 address without brackets
    port: int
    username: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{host}:{self.port}"


def _redacted(url: str) -> str:
    """``url`` with anything between ``://`` and ``@`` replaced, so an error never echoes a password."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse ``mqtt[s]://[USER@]HOST[:PORT]``; every problem is one ConfigError line."""
    shown = _redacted(url)
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise ConfigError(f"broker URL {shown!r} must look like mqtt://[USER@]HOST[:PORT] or mqtts://...")
    if rest.endswith("/"):
        rest = rest[:-1]  # a trailing slash is harmless
    if any(c in rest for c in "/?#"):
        raise ConfigError(f"broker URL {shown!r} has a path, query or fragment; give only [USER@]HOST[:PORT]")
    userinfo, at, hostport = rest.rpartition("@")
    username: str | None = None
    if at:
        if ":" in userinfo:
            raise ConfigError(
                f"broker URL {shown!r} contains a password: passwords are never taken from a URL or the "
                "command line; put it in a file (--password-file) and give only the user name in the URL"
            )
        username = unquote(userinfo)
        if not username:
            raise ConfigError(f"broker URL {shown!r} has an empty user name before '@'")
    host, port_text = _split_host_port(hostport, shown)
    port = DEFAULT_PORTS[scheme]
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ConfigError(f"broker URL {shown!r}: port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    return BrokerUrl(scheme, host, port, username)


def _split_host_port(hostport: str, shown: str) -> tuple[str, str | None]:
    if hostport.startswith("["):
        host, close, tail = hostport[1:].partition("]")
        if not close or not host or any(c not in "0123456789abcdefABCDEF:." for c in host):
            raise ConfigError(f"broker URL {shown!r}: bad IPv6 address in brackets")
        if tail and not tail.startswith(":"):
            raise ConfigError(f"broker URL {shown!r}: expected ':PORT' after the IPv6 address")
        return host, tail[1:] if tail else None
    host, colon, port = hostport.partition(":")
    if not host:
        raise ConfigError(f"broker URL {shown!r} has no host")
    if not _HOST.match(host):
        raise ConfigError(f"broker URL {shown!r}: {host!r} is not a host name or address")
    return host, port if colon else None
