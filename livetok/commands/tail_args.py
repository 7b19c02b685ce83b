"""Command-line options of ``livetok tail`` and ``livetok record``, apart from :mod:`livetok.commands.tail`
so that building the parser for any command imports nothing of the MQTT client."""

from __future__ import annotations

import argparse
from typing import Any

from livetok.commands.flagparser import FlagParser

DEFAULT_PREFIX = "livetok"  # as livetok.bus.topics.DEFAULT_PREFIX, without importing the bus here


class _Intermixed(FlagParser):
    """Lets the FILTER positionals come after options (``record URL -o F.ltk --duration 5 FILTER``):
    plain argparse binds a ``*`` positional at its first chance and rejects later ones."""

    _inner = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._inner:  # parse_known_intermixed_args calls back into here
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def add_bus_arguments(sp: argparse.ArgumentParser) -> None:
    """The connection options ``tail`` and ``record`` share."""
    sp.__class__ = _Intermixed  # the subparser is made by the shared ``add`` helper; only its parsing changes
    sp.add_argument("url", metavar="URL", help="mqtt://[USER@]HOST[:PORT] or mqtts://... (no password in it)")
    sp.add_argument("filters", nargs="*", metavar="FILTER",
                    help="MQTT topic filters (default: every livetok token and step topic)")
    sp.add_argument("--duration", metavar="SECONDS", help="stop after this long")
    sp.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    sp.add_argument("--qos", type=int, choices=(0, 1, 2), default=1, help="subscription QoS (default 1)")
    sp.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT version (default 5)")
    sp.add_argument("--client-id", metavar="ID", help="a fixed client id (needed by --persistent)")
    sp.add_argument("--persistent", action="store_true",
                    help="keep the session on the broker while away (messages queue for this client id)")
    sp.add_argument("--share", metavar="GROUP", help="join the shared subscription $share/GROUP/...")
    sp.add_argument("--password-file", metavar="PATH", help="a file holding the password for the URL's user")
    sp.add_argument("--ca-file", metavar="PEM", help="CA certificates to trust for mqtts:// (default: the system's)")
    sp.add_argument("--cert-file", metavar="PEM", help="client certificate for mqtts://")
    sp.add_argument("--key-file", metavar="PEM", help="the client certificate's key")
    sp.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"topic prefix (default {DEFAULT_PREFIX})")
    sp.add_argument("--connect-attempts", type=int, default=3, metavar="N",
                    help="tries for the first connection before giving up (default 3)")
    sp.add_argument("--keepalive", type=int, default=10, metavar="SECONDS",
                    help="MQTT keepalive: how soon a dead connection is noticed (default 10)")
