"""Named streams (a plug-in tokenizer's, wire v2) to test the consumer side with, before and apart
from the daemon's plug-in wiring: their shapes, a layout-2 vocabulary holding them, packets, steps
and a meta that lists them.

Three streams of made-up plug-in tokenizers, each with its own codebook id:
``audio/units`` (k-means units: 1 level x 500, one cell, 20 ms), ``audio/patches``
(spectrogram patches: 2 levels x 256 on an 8 x 1 grid, 80 ms) and ``video/clip`` (an image
encoder's VQ: 1 level x 1024 on a 4 x 4 grid, one per frame).
"""

from __future__ import annotations

import numpy as np
from busgen import CODEBOOK_ID, T0, VOCAB, packet, step

from livetok.vocab import StreamShape, VocabSpec, Vocabulary
from livetok.wire import AlignedStep, Clock, Flag, Modality, StepFlag, TokenPacket

UNITS_CID = "a1b2c3d4e5f60718"
PATCHES_CID = "0badc0ffee000001"
CLIP_CID = "c11b000000000002"
UNITS = StreamShape(Modality.AUDIO, None, 1, 500, (1, 1), name="units", codebook_id=UNITS_CID)
PATCHES = StreamShape(Modality.AUDIO, None, 2, 256, (8, 1), name="patches", codebook_id=PATCHES_CID)
CLIP = StreamShape(Modality.VIDEO, None, 1, 1024, (4, 4), name="clip", codebook_id=CLIP_CID)
NAMED = (UNITS, PATCHES, CLIP)
STEP_NS = {"units": 20_000_000, "patches": 80_000_000, "clip": 33_333_333}
VOCAB2 = Vocabulary(VocabSpec(CODEBOOK_ID, VOCAB.spec.streams + NAMED))


def named_packet(seq: int, shape: StreamShape, source: str = "cam0", flags: Flag = Flag.KEYFRAME,
                 seed: int | None = None) -> TokenPacket:
    """A full-grid packet of the named stream ``shape`` with codes drawn from ``seed`` (default: the seq)."""
    rng = np.random.default_rng(seq if seed is None else seed)
    codes = rng.integers(0, shape.codebook_size, size=(shape.cells, shape.levels), dtype=np.uint16)
    ns = STEP_NS[shape.name]
    assert shape.codebook_id is not None
    return TokenPacket(source, shape.modality, None, seq, T0 + seq * ns, T0 + (seq + 1) * ns, Clock.UNIX,
                       shape.codebook_id, flags, shape.grid, codes, stream=shape.name)


def named_step(seq: int, group: str = "g0", source: str = "cam0") -> AlignedStep:
    """An 80 ms v2 step: the built-in streams (as busgen.step), then 4 units, 1 patches, 1 clip packet."""
    builtin = step(seq, group, source)
    pkts = list(builtin.packets)
    pkts += [named_packet(seq * 4 + k, UNITS, source) for k in range(4)]
    pkts += [named_packet(seq, PATCHES, source), named_packet(seq, CLIP, source)]
    return AlignedStep(group, seq, builtin.start_ns, builtin.end_ns, Clock.UNIX, None, StepFlag.NONE, tuple(pkts))


__all__ = ["CLIP", "CLIP_CID", "NAMED", "PATCHES", "PATCHES_CID", "STEP_NS", "UNITS", "UNITS_CID", "VOCAB2",
           "named_packet", "named_step", "packet"]
