"""The joint vocabulary: one integer id space for every token livetok produces, text optionally
before it (docs/vocab.md).

``layout`` (the special tokens, the streams' shapes, the table's rows, layouts 1 and 2), ``flat`` (steps as flat id
sequences and back), ``vocabulary`` (:class:`Vocabulary`: the id space of one codebook set, its
table, its JSON form in the meta). Light: numpy only, for model servers.
"""

from livetok.vocab.flat import FlatPacket, FlatStep
from livetok.vocab.layout import (
    ADDED_TOKENS,
    LAYOUT,
    LAYOUT_V2,
    LAYOUTS,
    N_SPECIAL,
    SPECIAL_NAMES,
    STREAM_ORDER,
    Special,
    StreamIds,
    StreamShape,
    VocabRange,
    VocabSpec,
    parse_stream_key,
    parse_stream_ref,
    stream_key,
)
from livetok.vocab.vocabulary import Vocabulary

__all__ = ["ADDED_TOKENS", "LAYOUT", "LAYOUTS", "LAYOUT_V2", "N_SPECIAL", "SPECIAL_NAMES", "STREAM_ORDER",
           "FlatPacket", "FlatStep", "Special", "StreamIds", "StreamShape", "VocabRange", "VocabSpec", "Vocabulary",
           "parse_stream_key", "parse_stream_ref", "stream_key"]
