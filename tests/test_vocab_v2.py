"""Layout livetok-vocab/2: named streams after the v1 blocks, the base offset; v1 kept byte for byte."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from busgen import CODEBOOK_ID, VOCAB, step
from hypothesis import given, settings
from hypothesis import strategies as st
from namedgen import CLIP, NAMED, PATCHES, UNITS, UNITS_CID, VOCAB2, named_packet, named_step

from livetok.errors import CodebookError, DecodeError
from livetok.vocab import LAYOUT, LAYOUT_V2, FlatStep, StreamShape, VocabSpec, Vocabulary
from livetok.wire import AlignedStep, Clock, Flag, Modality, Scale, StepFlag, TokenPacket

# sha256 of Vocabulary.from_codebook_file().to_json() before layout 2 existed (main at f0ccb47)
V1_JSON_SHA256 = "910a6dc6391196740b0af9ecf37718f2153ab1008df9f4a08bba25de5dd81c9d"


def test_builtin_streams_keep_layout_1_byte_for_byte() -> None:
    assert hashlib.sha256(VOCAB.to_json().encode()).hexdigest() == V1_JSON_SHA256
    assert VOCAB.to_dict()["layout"] == LAYOUT and VOCAB.spec.is_v1
    # the v1 ids of the built-in streams do not move when named streams are appended
    assert VOCAB2.table()[:len(VOCAB.table())] == VOCAB.table()
    assert VOCAB2.flatten(step(3)).tolist() == VOCAB.flatten(step(3)).tolist()


def test_named_blocks_follow_the_v1_blocks_in_order() -> None:
    """Golden: [marker][levels x codebook_size codes][rows x cols positions] per named stream."""
    rows = [(r.name, r.start, r.size) for r in VOCAB2.table()[len(VOCAB.table()):]]
    assert rows == [
        ("<audio/units>", 12567, 1), ("audio/units/level0", 12568, 500), ("audio/units/position", 13068, 1),
        ("<audio/patches>", 13069, 1), ("audio/patches/level0", 13070, 256), ("audio/patches/level1", 13326, 256),
        ("audio/patches/position", 13582, 8),
        ("<video/clip>", 13590, 1), ("video/clip/level0", 13591, 1024), ("video/clip/position", 14615, 16)]
    assert VOCAB2.size == 14631
    assert VOCAB2.stream(Modality.AUDIO, "units").marker == 12567
    assert VOCAB2.stream(Modality.AUDIO, Scale.FINE).marker == 2
    assert VOCAB2.code_id(Modality.AUDIO, "patches", 1, 255) == 13581
    assert VOCAB2.position_id(Modality.VIDEO, "clip", 15) == 14630
    assert [VOCAB2.describe(i) for i in (12567, 12568 + 499, 13582 + 7, 13591)] == [
        "<audio/units>", "audio/units/level0:499", "audio/patches/position:7", "video/clip/level0:0"]
    # the order of the named streams is the meta's, and it is part of the layout
    swapped = Vocabulary(VocabSpec(CODEBOOK_ID, (*VOCAB.spec.streams, PATCHES, UNITS, CLIP)))
    assert swapped != VOCAB2 and swapped.stream(Modality.AUDIO, "patches").marker == 12567


def test_a_golden_flattened_named_packet() -> None:
    codes = np.array([[7, 200]] * 8, dtype=np.uint16)
    p = TokenPacket("mic", Modality.AUDIO, None, 0, 0, 80, Clock.UNIX, PATCHES.codebook_id or "",
                    Flag.DELTA, (8, 1), codes[:2], positions=np.array([5, 1], dtype=np.uint16), stream="patches")
    s = AlignedStep("g", 0, 0, 80, Clock.UNIX, None, StepFlag.NONE, (p,))
    assert VOCAB2.flatten(s).tolist() == [
        1,                               # <step>
        13069, 7, 10,                    # <audio/patches> <delta> <positions>
        13582 + 5, 13070 + 7, 13326 + 200,   # position 5, level 0 code 7, level 1 code 200
        13582 + 1, 13077, 13526]         # position 1, same codes


def test_to_dict_and_from_dict_round_trip_exactly() -> None:
    doc = VOCAB2.to_dict()
    assert doc["layout"] == LAYOUT_V2 and doc["base"] == 0 and doc["size"] == 14631
    assert [s["name"] for s in doc["named_streams"]] == ["units", "patches", "clip"]
    assert doc["named_streams"][0] == {"modality": "audio", "name": "units", "levels": 1, "codebook_size": 500,
                                       "grid": [1, 1], "codebook_id": UNITS_CID}
    assert doc["special"]["<audio/units>"] == 12567 and doc["special"]["<step>"] == 1
    assert len(doc["added_tokens"]) == 32 and doc["added_tokens"][1] == "<|livetok:step|>"
    back = Vocabulary.from_json(VOCAB2.to_json())
    assert back == VOCAB2 and back.to_dict() == doc and back.to_json() == VOCAB2.to_json()
    shifted = VOCAB2.with_base(30000)
    back = Vocabulary.from_dict(json.loads(shifted.to_json()))
    assert back == shifted and back.base == 30000 and back.size == 30000 + 14631
    # a v1 document still reads, as the same vocabulary as before
    v1 = json.loads(VOCAB.to_json())
    assert Vocabulary.from_dict(v1) == VOCAB and Vocabulary.from_dict(v1).to_dict() == v1


@pytest.mark.parametrize(("change", "match"), [
    (lambda d: d.update(layout="livetok-vocab/3"), "not one of livetok-vocab/1, livetok-vocab/2"),
    (lambda d: d["named_streams"][0].update(name="fine"), "malformed"),
    (lambda d: d["named_streams"][0].update(modality="smell"), "malformed"),
    (lambda d: d["named_streams"].append(dict(d["named_streams"][0])), "malformed"),
    (lambda d: d["named_streams"][1].pop("codebook_id"), "malformed"),
    (lambda d: d.update(base=-1), "malformed"),
    (lambda d: d.update(base="7"), "malformed"),
    (lambda d: d["named_streams"].reverse(), "disagrees"),
    (lambda d: d.update(size=1), "disagrees"),
])
def test_bad_v2_documents_are_refused_in_one_line(change: object, match: str) -> None:
    doc = json.loads(VOCAB2.to_json())
    change(doc)  # type: ignore[operator]
    with pytest.raises(DecodeError, match=match) as err:
        Vocabulary.from_dict(doc)
    assert "\n" not in str(err.value)


def test_named_packets_against_the_wrong_vocabulary() -> None:
    units = named_packet(0, UNITS)
    with pytest.raises(CodebookError, match="only the fine and coarse streams"):
        VOCAB.flatten_packet(units)  # a v1 vocabulary refuses it, as before
    other = TokenPacket("x", Modality.VIDEO, None, 0, 0, 1, Clock.UNIX, CLIP.codebook_id or "", Flag.KEYFRAME,
                        (1, 1), np.zeros((1, 1), np.uint16), stream="faces")
    with pytest.raises(CodebookError, match="no video/faces stream"):
        VOCAB2.flatten_packet(other)
    foreign = TokenPacket("x", Modality.AUDIO, None, 0, 0, 1, Clock.UNIX, "0" * 16, Flag.KEYFRAME, (1, 1),
                          np.zeros((1, 1), np.uint16), stream="units")
    with pytest.raises(CodebookError, match="audio/units is for a1b2c3d4e5f60718"):
        VOCAB2.flatten_packet(foreign)
    with pytest.raises(CodebookError, match="code 500"):
        VOCAB2.flatten_packet(TokenPacket("x", Modality.AUDIO, None, 0, 0, 1, Clock.UNIX, UNITS_CID, Flag.KEYFRAME,
                                          (1, 1), np.full((1, 1), 500, np.uint16), stream="units"))
    with pytest.raises(DecodeError, match="another stream"):
        VOCAB2.unflatten([1, 12567, 13070])  # a patches code inside a units packet
    with pytest.raises(DecodeError, match="<reserved14> is not used"):
        VOCAB2.unflatten([1, 14])
    fine_only = Vocabulary(VocabSpec(CODEBOOK_ID, (*VOCAB.spec.streams[:1], UNITS)))
    with pytest.raises(DecodeError, match="<audio/coarse> is not used"):
        fine_only.unflatten([1, 3])  # the marker of a built-in stream this vocabulary lacks


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="named stream needs a name"):
        StreamShape(Modality.AUDIO, None, 1, 10, (1, 1), name="coarse")
    with pytest.raises(ValueError, match="only named streams"):
        StreamShape(Modality.AUDIO, Scale.FINE, 1, 10, (1, 1), name="units")
    with pytest.raises(ValueError, match="streams repeat"):
        VocabSpec(CODEBOOK_ID, (UNITS, UNITS))
    with pytest.raises(ValueError, match="base"):
        VOCAB2.with_base(-3)


# -- property: any mix of built-in and named packets round-trips, with or without a base ------------

SHAPES = {s.key: s for s in VOCAB2.spec.streams}


@st.composite
def token_packets(draw: st.DrawFn) -> TokenPacket:
    shape: StreamShape = SHAPES[draw(st.sampled_from(sorted(SHAPES)))]
    levels = draw(st.integers(0, shape.levels))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    positions: np.ndarray | None = None
    n = shape.cells
    if draw(st.booleans()):
        n = draw(st.integers(0, shape.cells))
        positions = rng.permutation(shape.cells)[:n].astype(np.uint16)
    codes = rng.integers(0, shape.codebook_size, size=(n, levels), dtype=np.uint16)
    assert shape.codebook_id is not None
    return TokenPacket("src", shape.modality, shape.scale, draw(st.integers(0, 2**40)), 0, 10, Clock.UNIX,
                       shape.codebook_id, Flag(draw(st.integers(0, 31))), shape.grid, codes, positions,
                       stream=shape.name)


@st.composite
def aligned_steps(draw: st.DrawFn) -> AlignedStep:
    packets = draw(st.lists(token_packets(), max_size=6))
    return AlignedStep("g", draw(st.integers(0, 1000)), 0, 10, Clock.UNIX, None, StepFlag(draw(st.integers(0, 7))),
                       tuple(packets))


def same(step_: AlignedStep, flat: FlatStep) -> None:
    assert flat.flags == step_.flags and len(flat.packets) == len(step_.packets)
    for p, f in zip(step_.packets, flat.packets, strict=True):
        assert (f.modality, f.scale, f.stream, f.stream_name, f.flags) == (
            p.modality, p.scale, p.stream, p.stream_name, p.flags & ~Flag.GREEDY)  # GREEDY has no token
        assert (f.positions is None) == (p.positions is None)
        if p.positions is not None:
            assert f.positions is not None and np.array_equal(f.positions, p.positions)
        if p.codes.shape[0]:
            assert f.codes.dtype == np.uint16 and np.array_equal(f.codes, p.codes)
        else:
            assert f.codes.shape[0] == 0  # an empty packet's depth is not in the ids


@settings(max_examples=120, deadline=None)
@given(st.lists(aligned_steps(), min_size=1, max_size=3), st.sampled_from([0, 1, 50257]))
def test_any_steps_round_trip(steps: list[AlignedStep], base: int) -> None:
    vocab = VOCAB2.with_base(base)
    ids = vocab.flatten_steps(steps)
    assert int(ids.min(initial=base)) >= base and int(ids.max(initial=base)) < vocab.size
    back = vocab.unflatten_steps(ids)
    assert len(back) == len(steps)
    for s, b in zip(steps, back, strict=True):
        same(s, b)
    assert vocab.flatten_steps(steps).tolist() == (VOCAB2.flatten_steps(steps) + base).tolist()


def test_real_named_steps_round_trip() -> None:
    steps = [named_step(k) for k in range(3)]
    ids = VOCAB2.flatten_steps(steps)
    for s, b in zip(steps, VOCAB2.unflatten_steps(ids), strict=True):
        same(s, b)
    builtin = VOCAB.flatten(step(0)).size
    # 4 x (<audio/units> <keyframe> 1 code) + (2 + 8 x 2) + (2 + 16 x 1)
    assert VOCAB2.flatten(steps[0]).size == builtin + 4 * 3 + 18 + 18
    assert all(s.key in {"audio/units", "audio/patches", "video/clip"} for s in NAMED)


# -- the worked example in docs/vocab.md ------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "vocab.md"


def doc_rows(marker: str) -> list[list[str]]:
    """The cells of the table right after ``<!-- marker -->`` in docs/vocab.md (header rows left out)."""
    block = DOC.read_text(encoding="utf-8").split(f"<!-- {marker} -->", 1)[1].strip().split("\n\n", 1)[0]
    rows = [[c.strip().strip("`") for c in line.strip().strip("|").split("|")] for line in block.splitlines()]
    return rows[2:]


def doc_example_step() -> AlignedStep:
    fine = TokenPacket("mic", Modality.AUDIO, Scale.FINE, 0, 0, 20, Clock.UNIX, CODEBOOK_ID, Flag.KEYFRAME, (1, 1),
                       np.array([[1, 2, 3, 4]], np.uint16))
    units = TokenPacket("mic", Modality.AUDIO, None, 0, 0, 20, Clock.UNIX, UNITS_CID, Flag.KEYFRAME, (1, 1),
                        np.array([[42]], np.uint16), stream="units")
    patches = TokenPacket("mic", Modality.AUDIO, None, 0, 0, 80, Clock.UNIX, PATCHES.codebook_id or "", Flag.DELTA,
                          (8, 1), np.array([[7, 200], [9, 3]], np.uint16), positions=np.array([5, 1], np.uint16),
                          stream="patches")
    return AlignedStep("g", 0, 0, 80, Clock.UNIX, None, StepFlag.NONE, (fine, units, patches))


def test_doc_v2_worked_example_id_by_id() -> None:
    rows = doc_rows("vocab-v2-example")
    ids = VOCAB2.flatten(doc_example_step()).tolist()
    assert [int(r[0]) for r in rows] == list(range(len(ids)))
    assert [int(r[1]) for r in rows] == ids
    assert [r[2] for r in rows] == [VOCAB2.describe(i) for i in ids]
    same(doc_example_step(), VOCAB2.unflatten(ids))
    # with a base, the same ids shifted (the doc's 50258, 50259, 50263, 50290, ...)
    assert VOCAB2.with_base(50257).flatten(doc_example_step()).tolist() == [i + 50257 for i in ids]
    assert "50258,\n50259, 50263, 50290" in DOC.read_text(encoding="utf-8")


def test_doc_v2_table() -> None:
    rows = doc_rows("vocab-v2-table")
    assert rows[0] == ["0 – 12566", "as in layout 1"]
    got = []
    for r in VOCAB2.table()[len(VOCAB.table()):]:
        span = str(r.start) if r.size == 1 else f"{r.start} – {r.start + r.size - 1}"
        got.append(span)
    assert [r[0] for r in rows[1:]] == got
    # "audio/patches level 1" is the range audio/patches/level1; "... positions 0 – 7" is .../position
    names = [re.sub(r" (level|position)s? (\d+).*", r"/\1\2", r[1]) for r in rows[1:]]
    expect = [r.name + ("0" if r.name.endswith("/position") else "") for r in VOCAB2.table()[len(VOCAB.table()):]]
    assert names == expect
    assert "Size: **14631**" in DOC.read_text(encoding="utf-8") and VOCAB2.size == 14631


def test_doc_added_token_names_are_the_vocabularys() -> None:
    named = re.findall(r"<\|livetok:[^|]+\|>", DOC.read_text(encoding="utf-8"))
    assert len(set(named)) >= 6 and set(named) <= set(VOCAB2.added_tokens())
    assert VOCAB2.added_tokens()[13] == "<|livetok:late|>" and VOCAB2.added_tokens()[31] == "<|livetok:reserved31|>"
