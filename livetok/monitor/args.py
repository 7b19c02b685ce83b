"""Command-line options of ``livetok monitor``, apart from the monitor itself so that building the
parser imports neither the MQTT client nor rich."""

from __future__ import annotations

import argparse

DEFAULT_URL = "mqtt://localhost"
DEFAULT_PREFIX = "livetok"  # as livetok.bus.topics.DEFAULT_PREFIX, without importing the bus here


def add_monitor_arguments(sp: argparse.ArgumentParser) -> None:
    # Numbers are taken as strings and checked by the monitor, so a bad value is one line and exit 78.
    sp.add_argument("url", nargs="?", default=DEFAULT_URL, metavar="URL",
                    help=f"mqtt://[USER@]HOST[:PORT] or mqtts://... (default {DEFAULT_URL})")
    sp.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"topic prefix (default {DEFAULT_PREFIX})")
    sp.add_argument("--password-file", metavar="PATH", help="a file holding the password for the URL's user")
    sp.add_argument("--ca-file", metavar="PEM", help="CA certificates to trust for mqtts:// (default: the system's)")
    sp.add_argument("--cert-file", metavar="PEM", help="client certificate for mqtts://")
    sp.add_argument("--key-file", metavar="PEM", help="the client certificate's key")
    sp.add_argument("--late-video", default="100", metavar="MS",
                    help="video capture-to-publish p99 above this is late (ms, default 100)")
    sp.add_argument("--late-audio", default="150", metavar="MS",
                    help="audio capture-to-publish p99 above this is late (ms, default 150)")
    sp.add_argument("--skew", default="40", metavar="MS",
                    help="|A/V skew| above this is out of sync (ms, default 40)")
    sp.add_argument("--stale", default="3", metavar="N",
                    help="no stats for N stats intervals is stalled (default 3)")
    sp.add_argument("--history", default="120", metavar="N",
                    help="samples kept per series for the sparklines (default 120)")
    sp.add_argument("--refresh", default="1", metavar="SECONDS", help="redraw this often (s, default 1)")
    sp.add_argument("--once", action="store_true",
                    help="print one snapshot as plain text and exit")
    sp.add_argument("--json", action="store_true", help="with --once: the snapshot as one JSON object")
    sp.add_argument("--wait", default="3", metavar="SECONDS",
                    help="--once: collect for at most this long before printing (s, default 3)")
    sp.add_argument("--connect-attempts", default="3", metavar="N",
                    help="tries for the first connection before giving up (default 3)")
