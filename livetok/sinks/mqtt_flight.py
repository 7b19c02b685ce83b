"""What the MQTT sink keeps beside its books: the bus's counters (:class:`BusStats`, in the stats
document and the metrics) and a message handed to paho awaiting its acknowledgement (:class:`Flight`)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from paho.mqtt.reasoncodes import ReasonCode

from livetok.sinks.base import Outgoing


@dataclass
class BusStats:
    """The bus's own counters, beyond the sink's books (written / dropped / failed)."""

    connected: bool = False
    connects: int = 0
    reconnects: int = 0  # connections made after the first
    connect_failures: int = 0
    published: int = 0  # PUBLISH packets handed to paho (resends included)
    resent: int = 0  # of which messages sent again after a lost connection
    refused: Counter[str] = field(default_factory=Counter)  # by reason: broker reason codes, "too large"
    in_flight: int = 0
    resend_depth: int = 0
    receive_maximum: int = 0
    max_packet_bytes: int | None = None
    stats_published: int = 0
    control_refused: int = 0  # meta / availability / stats messages too large for the broker
    last_error: str = ""

    def as_json(self, buffered: int) -> dict[str, Any]:
        return {"connected": self.connected, "connects": self.connects, "reconnects": self.reconnects,
                "connect_failures": self.connect_failures, "published": self.published, "resent": self.resent,
                "refused": sum(self.refused.values()), "refused_by_reason": dict(self.refused),
                "in_flight": self.in_flight, "buffered": buffered, "receive_maximum": self.receive_maximum,
                "max_packet_bytes": self.max_packet_bytes, "control_refused": self.control_refused,
                "last_error": self.last_error}


@dataclass
class Flight:
    """A message handed to paho, waiting for its acknowledgement."""

    item: Outgoing | None  # None: a control message (meta, availability), not in the books
    order: int  # submission order, to resend in order after a lost connection
    sent_ns: int
    done: asyncio.Future[ReasonCode | int] | None = None


class Lost(Exception):
    """The connection is gone (paho said so, or a publish could not be queued)."""
