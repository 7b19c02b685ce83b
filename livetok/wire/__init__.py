"""Wire format v1 (and v2: plug-in tokenizers' named streams): token packets, aligned steps, `.ltk` files.

The byte-level specification is docs/wire-format.md; this package is its reference
implementation. Decoding bad bytes raises :class:`livetok.errors.DecodeError` only.
"""

from livetok.wire.ltkfile import (
    FILE_HEADER,
    LTK_VERSION,
    SYNC,
    LtkReadResult,
    LtkWriter,
    iter_ltk,
    read_ltk,
)
from livetok.wire.model import (
    UNKNOWN_SKEW,
    AlignedStep,
    Clock,
    Flag,
    Modality,
    Scale,
    StepFlag,
    TokenPacket,
    flag_names,
)
from livetok.wire.packet import (
    PACKET_MAGIC,
    READ_VERSIONS,
    WIRE_VERSION,
    WIRE_VERSION_NAMED,
    decode_packet,
    encode_packet,
    packet_version,
)

__all__ = [
    "FILE_HEADER",
    "LTK_VERSION",
    "PACKET_MAGIC",
    "READ_VERSIONS",
    "SYNC",
    "UNKNOWN_SKEW",
    "WIRE_VERSION",
    "WIRE_VERSION_NAMED",
    "AlignedStep",
    "Clock",
    "Flag",
    "LtkReadResult",
    "LtkWriter",
    "Modality",
    "Scale",
    "StepFlag",
    "TokenPacket",
    "decode_packet",
    "encode_packet",
    "flag_names",
    "iter_ltk",
    "packet_version",
    "read_ltk",
]
