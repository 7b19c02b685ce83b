"""The sinks wing: where the daemon's messages go, each sink beside the others behind one protocol.

* ``base``: the protocol (:class:`Sink`: ``async with`` to open and close, ``run(channel)`` to write
  what its channel gives, never raising), its books (:class:`SinkStats`);
* ``message``: the message every sink gets (:class:`Outgoing`: a packet or a step, encoded once);
* ``channel``: each sink's bounded, drop-oldest input (:class:`SinkChannel`), and the stats board;
* ``file``: ``.ltk`` token files; ``mqtt`` (with ``mqtt_setup``): the MQTT bus;
* ``registry``: sinks by kind, made from the configuration with everything they need.
"""

from livetok.sinks.base import Sink, SinkStats
from livetok.sinks.channel import SinkChannel
from livetok.sinks.file import FileSink
from livetok.sinks.message import STEP, Outgoing
from livetok.sinks.registry import SinkContext, make_sink, open_sinks

__all__ = ["STEP", "FileSink", "Outgoing", "Sink", "SinkChannel", "SinkContext", "SinkStats", "make_sink",
           "open_sinks"]
