"""The message the runner gives every sink: a token packet or an aligned step, encoded once.

Made by the pipeline's :class:`~livetok.pipeline.outbound.WireStamper` (where host time becomes wire
time), handed to every sink that takes it through its own channel.
"""

from __future__ import annotations

from dataclasses import dataclass

from livetok.wire import AlignedStep, TokenPacket

STEP = "step"  # the modality and scale of an aligned step's message


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for the sinks.

    ``stream``: the source (token packets) or the group (steps); ``modality`` / ``scale``: ``audio`` |
    ``video`` and ``fine`` | ``coarse`` for packets, ``step`` for both on steps; ``capture_ns``: host
    monotonic time at which its input was complete (for capture-to-write latency); ``data``: the wire
    bytes (docs/wire-format.md).
    """

    wire: TokenPacket | AlignedStep
    data: bytes
    stream: str
    modality: str
    scale: str
    capture_ns: int

    @property
    def is_step(self) -> bool:
        return self.modality == STEP

    @property
    def key(self) -> tuple[str, str]:
        """Accounting key: (source, modality) for packets, (group, "step") for steps."""
        return self.stream, self.modality
