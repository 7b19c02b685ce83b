"""What leaves the engine for the sinks: packets and steps converted to the wire clock and encoded, once.

:class:`WireStamper` is the one place where host monotonic time becomes wire time and where the
clock label is decided (``Clock.UNIX``: the :class:`~livetok.sync.WallClock` offset sampled at start,
constant for the run, so UNIX stamps never jump even if NTP steps the realtime clock). Every sink
gets the same :class:`Outgoing` message: the wire packet and its bytes, encoded once.
"""

from __future__ import annotations

import dataclasses

from livetok.pipeline.results import HostPacket, HostStep
from livetok.sinks.message import STEP, Outgoing
from livetok.sync import WallClock
from livetok.wire import AlignedStep, Clock, TokenPacket, encode_packet


class WireStamper:
    """Host monotonic ns -> the wire clock (UNIX ns), and encoding."""

    clock = Clock.UNIX

    def __init__(self, wall: WallClock | None = None) -> None:
        self.wall = wall if wall is not None else WallClock()

    def packet(self, hp: HostPacket) -> TokenPacket:
        to_unix = self.wall.to_unix
        return dataclasses.replace(hp.packet, start_ns=to_unix(hp.start_ns), end_ns=to_unix(hp.end_ns),
                                   clock=self.clock)

    def step(self, hs: HostStep) -> AlignedStep:
        to_unix = self.wall.to_unix
        return AlignedStep(group=hs.group, seq=hs.seq, start_ns=to_unix(hs.start_ns), end_ns=to_unix(hs.end_ns),
                           clock=self.clock, skew_ns=hs.skew_ns, flags=hs.flags,
                           packets=tuple(self.packet(hp) for hp in hs.items))

    def outgoing_packet(self, hp: HostPacket) -> Outgoing:
        wire = self.packet(hp)
        return Outgoing(wire, encode_packet(wire), hp.source, hp.modality.name.lower(), hp.stream_name,
                        hp.capture_ns)

    def outgoing_step(self, hs: HostStep) -> Outgoing:
        wire = self.step(hs)
        return Outgoing(wire, encode_packet(wire), hs.group, STEP, STEP, hs.end_ns)
