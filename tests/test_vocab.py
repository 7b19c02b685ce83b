"""The joint vocabulary: a frozen table, flatten/unflatten round trips over random steps, stability."""

from __future__ import annotations

import json

import numpy as np
import pytest
from busgen import packet, step
from hypothesis import given, settings
from hypothesis import strategies as st

from livetok.errors import CodebookError, DecodeError
from livetok.tokenizers import load_codebooks
from livetok.vocab import N_SPECIAL, FlatStep, Special, StreamShape, VocabSpec, Vocabulary
from livetok.wire import AlignedStep, Clock, Flag, Modality, Scale, StepFlag, TokenPacket

VOCAB = Vocabulary.from_codebook_file()
CID = VOCAB.codebook_id


def test_the_table_is_frozen() -> None:
    """Golden: these ids are a contract with every model trained on them; never renumber."""
    assert [(int(s), s.name) for s in Special] == [
        (0, "PAD"), (1, "STEP"), (2, "AUDIO_FINE"), (3, "AUDIO_COARSE"), (4, "VIDEO_FINE"), (5, "VIDEO_COARSE"),
        (6, "KEYFRAME"), (7, "DELTA"), (8, "GAP"), (9, "DISCONTINUITY"), (10, "POSITIONS"), (11, "MISSING_AUDIO"),
        (12, "MISSING_VIDEO"), (13, "LATE")]
    assert N_SPECIAL == 32
    rows = [(r.name, r.start, r.size) for r in VOCAB.table()[15:]]
    assert rows == [
        ("audio/fine/level0", 32, 1024), ("audio/fine/level1", 1056, 1024), ("audio/fine/level2", 2080, 1024),
        ("audio/fine/level3", 3104, 1024), ("audio/fine/position", 4128, 1),
        ("audio/coarse/level0", 4129, 1024), ("audio/coarse/level1", 5153, 1024), ("audio/coarse/position", 6177, 1),
        ("video/fine/level0", 6178, 1024), ("video/fine/level1", 7202, 1024), ("video/fine/level2", 8226, 1024),
        ("video/fine/level3", 9250, 1024), ("video/fine/position", 10274, 196),
        ("video/coarse/level0", 10470, 1024), ("video/coarse/level1", 11494, 1024),
        ("video/coarse/position", 12518, 49)]
    assert VOCAB.size == 12567
    assert VOCAB.code_id(Modality.VIDEO, Scale.COARSE, 1, 1023) == 12517
    assert VOCAB.describe(7202 + 517) == "video/fine/level1:517" and VOCAB.describe(10274 + 13) == \
        "video/fine/position:13" and VOCAB.describe(1) == "<step>" and VOCAB.describe(20) == "<reserved20>"


def test_a_golden_flattened_step() -> None:
    codes_a = np.array([[1, 2, 3, 4]], dtype=np.uint16)
    a = TokenPacket("mic", Modality.AUDIO, Scale.FINE, 0, 0, 20, Clock.UNIX, CID, Flag.KEYFRAME, (1, 1), codes_a)
    codes_v = np.array([[5, 6], [7, 8]], dtype=np.uint16)
    v = TokenPacket("cam", Modality.VIDEO, Scale.COARSE, 0, 0, 33, Clock.UNIX, CID, Flag.DELTA | Flag.GAP, (7, 7),
                    codes_v, positions=np.array([48, 0], dtype=np.uint16))
    s = AlignedStep("g", 0, 0, 80, Clock.UNIX, None, StepFlag.LATE, (a, v))
    assert VOCAB.flatten(s).tolist() == [
        1, 13,                                    # <step> <late>
        2, 6, 33, 1058, 2083, 3108,               # <audio/fine> <keyframe> codes 1, 2, 3, 4 at levels 0..3
        5, 7, 8, 10, 12518 + 48, 10475, 11500,    # <video/coarse> <delta> <gap> <positions> pos 48, 5, 6
        12518, 10477, 11502]                      # pos 0, codes 7, 8


def test_two_constructions_agree_and_depend_only_on_the_codebooks() -> None:
    cbs = load_codebooks()
    from_set = Vocabulary.from_codebooks(cbs)
    assert from_set == VOCAB and from_set.to_dict() == VOCAB.to_dict()
    assert Vocabulary.from_json(VOCAB.to_json()) == VOCAB
    # the order streams are described in does not matter
    shuffled = VocabSpec(CID, tuple(reversed(VOCAB.spec.streams)))
    assert Vocabulary(shuffled).to_dict() == VOCAB.to_dict()
    doc = json.loads(VOCAB.to_json())
    doc["ranges"][3]["start"] += 1
    with pytest.raises(DecodeError, match="disagrees"):
        Vocabulary.from_dict(doc)


def test_real_steps_round_trip_and_flatten_is_one_call() -> None:
    steps = [step(k) for k in range(3)]
    ids = VOCAB.flatten_steps(steps)
    assert ids.dtype == np.int32 and int(ids.max()) < VOCAB.size
    back = VOCAB.unflatten_steps(ids)
    assert len(back) == 3
    for s, b in zip(steps, back, strict=True):
        _same(s, b)
    one = VOCAB.flatten(steps[0])
    # <step>; 4 x (<audio/fine> <keyframe> 4 codes); <audio/coarse> <keyframe> 2; video fine 196 x 4; coarse 49 x 2
    assert one.size == 1 + 4 * 6 + 4 + (2 + 196 * 4) + (2 + 49 * 2)
    # padding for batches is ignored
    assert len(VOCAB.unflatten_steps(np.concatenate([one, [0, 0, 0]]))) == 1


def test_foreign_and_bad_input() -> None:
    other = packet(0)
    foreign = TokenPacket("x", Modality.AUDIO, Scale.FINE, 0, 0, 1, Clock.UNIX, "0" * 16, Flag.NONE, (1, 1),
                          other.codes)
    with pytest.raises(CodebookError, match="codebooks"):
        VOCAB.flatten_packet(foreign)
    too_deep = TokenPacket("x", Modality.AUDIO, Scale.COARSE, 0, 0, 1, Clock.UNIX, CID, Flag.NONE, (1, 1),
                           np.zeros((1, 3), np.uint16))
    with pytest.raises(CodebookError, match="3 levels"):
        VOCAB.flatten_packet(too_deep)
    with pytest.raises(DecodeError, match="start with <step>"):
        VOCAB.unflatten([2, 33])
    with pytest.raises(DecodeError, match="outside the vocabulary"):
        VOCAB.unflatten([1, 99999])
    assert VOCAB.unflatten([1, 2, 33, 1058]).packets[0].codes.tolist() == [[1, 2]]  # two levels of four
    with pytest.raises(DecodeError, match="level 0, level 1"):
        VOCAB.unflatten([1, 2, 1058, 33])  # levels out of order
    with pytest.raises(DecodeError, match="another stream"):
        VOCAB.unflatten([1, 2, 6178])  # a video code inside an audio packet
    with pytest.raises(DecodeError, match="exactly 1"):
        VOCAB.unflatten([1, 1])


# -- property: any step round-trips ----------------------------------------------------------------

SHAPES = {(s.modality, s.scale): s for s in VOCAB.spec.streams}


@st.composite
def token_packets(draw: st.DrawFn) -> TokenPacket:
    modality = draw(st.sampled_from(list(Modality)))
    scale = draw(st.sampled_from(list(Scale)))
    shape: StreamShape = SHAPES[(modality, scale)]
    levels = draw(st.integers(0, shape.levels))
    flags = Flag(draw(st.integers(0, 31)))
    partial = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if partial:
        n = draw(st.integers(0, shape.cells))
        positions: np.ndarray | None = rng.permutation(shape.cells)[:n].astype(np.uint16)
    else:
        n, positions = shape.cells, None
    codes = rng.integers(0, shape.codebook_size, size=(n, levels), dtype=np.uint16)
    vectors = rng.standard_normal((n, 3)).astype(np.float16) if draw(st.booleans()) else None
    return TokenPacket("src", modality, scale, draw(st.integers(0, 2**40)), 0, 10, Clock.UNIX, CID, flags,
                       shape.grid, codes, positions, vectors)


@st.composite
def aligned_steps(draw: st.DrawFn) -> AlignedStep:
    packets = draw(st.lists(token_packets(), max_size=6))
    return AlignedStep("g", draw(st.integers(0, 1000)), 0, 10, Clock.UNIX, None, StepFlag(draw(st.integers(0, 7))),
                       tuple(packets))


def _same(step_: AlignedStep, flat: FlatStep) -> None:
    assert flat.flags == step_.flags
    assert len(flat.packets) == len(step_.packets)
    for p, f in zip(step_.packets, flat.packets, strict=True):
        assert (f.modality, f.scale, f.flags) == (p.modality, p.scale, p.flags & ~Flag.GREEDY)  # no token for it
        if p.positions is None:
            assert f.positions is None
        else:
            assert f.positions is not None and np.array_equal(f.positions, p.positions)
        if p.codes.shape[0] == 0:
            assert f.codes.shape[0] == 0  # an empty packet's depth is not in the ids
        else:
            assert f.codes.dtype == np.uint16 and np.array_equal(f.codes, p.codes)


@settings(max_examples=150, deadline=None)
@given(aligned_steps())
def test_any_step_round_trips(s: AlignedStep) -> None:
    ids = VOCAB.flatten(s)
    assert ids.ndim == 1 and int(ids.min(initial=0)) >= 0 and int(ids.max(initial=0)) < VOCAB.size
    _same(s, VOCAB.unflatten(ids))


@settings(max_examples=40, deadline=None)
@given(st.lists(aligned_steps(), min_size=1, max_size=4))
def test_many_steps_round_trip(steps: list[AlignedStep]) -> None:
    back = VOCAB.unflatten_steps(VOCAB.flatten_steps(steps))
    assert len(back) == len(steps)
    for s, b in zip(steps, back, strict=True):
        _same(s, b)
