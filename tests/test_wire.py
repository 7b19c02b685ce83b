"""Wire format v1 and v2: packet round trips, validation, and .ltk token files (damage included)."""

from __future__ import annotations

import dataclasses
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from livetok.errors import DecodeError
from livetok.wire import (
    FILE_HEADER,
    SYNC,
    AlignedStep,
    Clock,
    Flag,
    LtkWriter,
    Modality,
    Scale,
    StepFlag,
    TokenPacket,
    decode_packet,
    encode_packet,
    flag_names,
    iter_ltk,
    read_ltk,
)

CODEBOOK = "00112233aabbccdd"
RECORD_HEAD = 12  # sync + length + CRC


def audio_packet(seq: int = 0, levels: int = 8) -> TokenPacket:
    """One audio step: grid (1, 1), codes [1, levels]."""
    codes = (np.arange(levels, dtype=np.uint16) * 4099 + seq).reshape(1, levels)
    return TokenPacket(
        source="mic0",
        modality=Modality.AUDIO,
        scale=Scale.FINE,
        seq=seq,
        start_ns=1_700_000_000_000_000_000 + seq * 20_000_000,
        end_ns=1_700_000_000_020_000_000 + seq * 20_000_000,
        clock=Clock.UNIX,
        codebook_id=CODEBOOK,
        flags=Flag.KEYFRAME,
        grid=(1, 1),
        codes=codes,
    )


def video_full_packet(seq: int = 0) -> TokenPacket:
    """A fine video keyframe: all 14x14 positions in order, codes [196, 4]."""
    rng = np.random.default_rng(seq)
    return TokenPacket(
        source="cam/front",
        modality=Modality.VIDEO,
        scale=Scale.FINE,
        seq=seq,
        start_ns=seq * 33_366_667,
        end_ns=(seq + 1) * 33_366_667,
        clock=Clock.MEDIA,
        codebook_id=CODEBOOK,
        flags=Flag.KEYFRAME,
        grid=(14, 14),
        codes=rng.integers(0, 65536, size=(196, 4), dtype=np.uint16),
    )


def video_delta_packet() -> TokenPacket:
    """A coarse video delta: 5 of the 7x7 positions (unsorted), codes [5, 3], vectors [5, 16]."""
    rng = np.random.default_rng(7)
    return TokenPacket(
        source="cämera-ü",  # non-ASCII names must survive
        modality=Modality.VIDEO,
        scale=Scale.COARSE,
        seq=2**64 - 1,
        start_ns=-(2**63),
        end_ns=2**63 - 1,
        clock=Clock.MEDIA,
        codebook_id="ffffffffffffffff",
        flags=Flag.DELTA | Flag.DISCONTINUITY,
        grid=(7, 7),
        codes=rng.integers(0, 65536, size=(5, 3), dtype=np.uint16),
        positions=np.array([48, 0, 17, 3, 30], dtype=np.uint16),
        vectors=rng.standard_normal((5, 16)).astype(np.float16),
    )


def aligned_step() -> AlignedStep:
    audio = audio_packet(seq=4)
    video = TokenPacket(
        source="cam0",
        modality=Modality.VIDEO,
        scale=Scale.COARSE,
        seq=9,
        start_ns=audio.start_ns,
        end_ns=audio.end_ns,
        clock=Clock.UNIX,
        codebook_id=CODEBOOK,
        flags=Flag.DELTA,
        grid=(7, 7),
        codes=np.array([[1, 2], [3, 4]], dtype=np.uint16),
        positions=np.array([5, 6], dtype=np.uint16),
    )
    return AlignedStep(
        group="room1",
        seq=12,
        start_ns=audio.start_ns,
        end_ns=audio.end_ns,
        clock=Clock.UNIX,
        skew_ns=-1_250_000,
        flags=StepFlag.LATE,
        packets=(audio, video),
    )


# --- packets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [audio_packet, video_full_packet, video_delta_packet, aligned_step]
)
def test_round_trip(make) -> None:
    packet = make()
    data = encode_packet(packet)
    decoded = decode_packet(data)
    assert decoded == packet
    assert type(decoded) is type(packet)
    assert encode_packet(decoded) == data  # canonical: one packet, one byte string


def test_decoded_fields_are_typed() -> None:
    decoded = decode_packet(encode_packet(video_delta_packet()))
    assert isinstance(decoded, TokenPacket)
    assert decoded.modality is Modality.VIDEO and decoded.modality.name.lower() == "video"
    assert decoded.scale is Scale.COARSE
    assert decoded.clock is Clock.MEDIA
    assert decoded.flags == Flag.DELTA | Flag.DISCONTINUITY
    assert decoded.codes.dtype == np.uint16 and decoded.codes.shape == (5, 3)
    assert decoded.positions is not None and decoded.positions.dtype == np.uint16
    assert decoded.vectors is not None and decoded.vectors.dtype == np.float16
    assert decoded.codes.flags.writeable  # a copy, not a view of the input bytes


def test_decode_accepts_bytearray_and_memoryview() -> None:
    packet = audio_packet()
    data = encode_packet(packet)
    assert decode_packet(bytearray(data)) == packet
    assert decode_packet(memoryview(data)) == packet


def test_aligned_step_unknown_skew_and_empty_group() -> None:
    step = AlignedStep("", 0, 5, 5, Clock.MEDIA, None, StepFlag.MISSING_VIDEO, ())
    decoded = decode_packet(encode_packet(step))
    assert isinstance(decoded, AlignedStep)
    assert decoded.skew_ns is None
    assert decoded.packets == ()
    assert decoded == step


def test_equality_compares_arrays() -> None:
    a = video_delta_packet()
    b = video_delta_packet()
    assert a == b
    changed = b.codes.copy()
    changed[0, 0] ^= 1
    assert a != TokenPacket(**{**vars(b), "codes": changed})
    assert a != TokenPacket(**{**vars(b), "vectors": None})


def test_flag_names() -> None:
    assert flag_names(Flag.NONE) == []
    assert flag_names(Flag.GAP | Flag.KEYFRAME) == ["keyframe", "gap"]
    assert flag_names(Flag.DISCONTINUITY | Flag.DELTA) == ["delta", "discontinuity"]
    assert flag_names(StepFlag.MISSING_AUDIO | StepFlag.LATE) == ["missing_audio", "late"]
    assert flag_names(Flag.GREEDY | Flag.KEYFRAME) == ["keyframe", "greedy"]
    assert [m.name.lower() for m in Modality] == ["audio", "video"]
    assert [m.name.lower() for m in Scale] == ["fine", "coarse"]


def test_wire_header_bytes() -> None:
    data = encode_packet(audio_packet(seq=3))
    assert data[:6] == b"LTKP\x01\x00"
    assert struct.unpack_from("<Q", data, 26)[0] == 3  # seq, per docs/wire-format.md
    assert data[50:58] == bytes.fromhex(CODEBOOK)
    assert data[58:62] == b"mic0"
    assert len(data) == 58 + 4 + 2 * 8


def test_unknown_flag_bits_are_ignored() -> None:
    data = bytearray(encode_packet(audio_packet()))
    data[12:14] = struct.pack("<H", 0xFF00 | Flag.GAP)
    decoded = decode_packet(data)
    assert isinstance(decoded, TokenPacket)
    assert decoded.flags == Flag.GAP


def test_the_greedy_flag_is_bit_4_and_round_trips() -> None:
    """GREEDY (a catch-up batch's codes, docs/wire-format.md 2.4) took the first reserved bit: it is
    kept; the bits above it are still ignored."""
    packet = audio_packet()
    data = bytearray(encode_packet(dataclasses.replace(packet, flags=Flag.KEYFRAME | Flag.GREEDY)))
    assert struct.unpack_from("<H", data, 12)[0] == 0x0011
    decoded = decode_packet(data)
    assert isinstance(decoded, TokenPacket) and decoded.flags == Flag.KEYFRAME | Flag.GREEDY
    data[12:14] = struct.pack("<H", 0xFFE0 | Flag.GREEDY)
    decoded = decode_packet(data)
    assert isinstance(decoded, TokenPacket) and decoded.flags == Flag.GREEDY


@pytest.mark.parametrize(
    ("offset", "value", "match"),
    [
        (0, b"X", "magic"),
        (4, b"\x03", "version 3"),
        (4, b"\x02", "scale 0 in a version 2"),
        (5, b"\x07", "kind"),
        (6, b"\x02", "modality"),
        (7, b"\x05", "scale"),
        (8, b"\x09", "clock"),
        (9, b"\x02", "dtype"),
        (10, b"\x80", "layout"),
        (14, b"\x00\x00", "grid"),
    ],
)
def test_bad_header_fields_raise_decode_error(offset: int, value: bytes, match: str) -> None:
    data = bytearray(encode_packet(audio_packet()))
    data[offset : offset + len(value)] = value
    with pytest.raises(DecodeError, match=match):
        decode_packet(data)


def test_truncated_or_padded_packet_raises() -> None:
    data = encode_packet(video_delta_packet())
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_packet(data[:cut])
    with pytest.raises(DecodeError, match="describes"):
        decode_packet(data + b"\x00")


def test_position_outside_grid_raises() -> None:
    data = bytearray(encode_packet(video_delta_packet()))
    pos_offset = 58 + len("cämera-ü".encode())
    data[pos_offset : pos_offset + 2] = struct.pack("<H", 49)  # 7x7 grid: 0..48
    with pytest.raises(DecodeError, match="position"):
        decode_packet(data)


def test_huge_claimed_sizes_raise_without_allocating() -> None:
    data = bytearray(encode_packet(audio_packet()))
    data[18:20] = b"\xff\xff"  # levels 65535: claims far more bytes than present
    with pytest.raises(DecodeError, match="describes"):
        decode_packet(data)
    step = bytearray(encode_packet(aligned_step()))
    step[44 + 5 : 44 + 9] = b"\xff\xff\xff\xff"  # first nested length
    with pytest.raises(DecodeError, match="claims"):
        decode_packet(step)


def test_nested_packet_on_other_clock_is_rejected() -> None:
    audio = audio_packet()  # UNIX clock
    with pytest.raises(ValueError, match="clock"):
        AlignedStep("g", 0, 0, 1, Clock.MEDIA, None, StepFlag.NONE, (audio,))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("source", "x" * 256),
        ("source", "é" * 128),  # 256 bytes in UTF-8
        ("codebook_id", "00112233AABBCCDD"),
        ("codebook_id", "0011"),
        ("seq", -1),
        ("seq", 2**64),
        ("end_ns", 0),  # before start_ns
        ("flags", 32),
        ("modality", 2),
        ("grid", (0, 1)),
        ("grid", (2, 2)),  # 4 cells but codes has 1 position and no positions array
        ("codes", np.zeros((1, 8), dtype=np.int64)),
        ("codes", np.zeros(8, dtype=np.uint16)),
        ("positions", np.array([1], dtype=np.uint16)),  # outside the 1x1 grid
        ("vectors", np.zeros((1, 4), dtype=np.float32)),
        ("vectors", np.zeros((2, 4), dtype=np.float16)),
    ],
)
def test_invalid_packet_fields_raise_value_error(field: str, value: object) -> None:
    fields = vars(audio_packet())
    with pytest.raises(ValueError):
        TokenPacket(**{**fields, field: value})


def test_longest_source_name_round_trips() -> None:
    packet = TokenPacket(**{**vars(audio_packet()), "source": "é" * 127 + "x"})  # 255 bytes
    assert decode_packet(encode_packet(packet)) == packet


# --- .ltk files -------------------------------------------------------------------------


def write_file(path: Path, packets: list) -> bytes:
    with LtkWriter(path) as writer:
        for packet in packets:
            writer.write(packet)
    return path.read_bytes()


def record_bounds(blob: bytes) -> list[int]:
    """Byte offsets where each record starts, plus the end of the file."""
    bounds = [len(FILE_HEADER)]
    while bounds[-1] < len(blob):
        (length,) = struct.unpack_from("<I", blob, bounds[-1] + 4)
        bounds.append(bounds[-1] + RECORD_HEAD + length)
    return bounds


def test_file_with_1000_packets_round_trips(tmp_path: Path) -> None:
    packets: list[TokenPacket | AlignedStep] = [
        audio_packet(seq=i) if i % 3 else video_full_packet(seq=i) for i in range(999)
    ]
    packets.append(aligned_step())
    write_file(tmp_path / "many.ltk", packets)
    result = read_ltk(tmp_path / "many.ltk")
    assert result.errors == []
    assert len(result.packets) == 1000
    assert result.packets == packets


def test_record_framing_matches_spec(tmp_path: Path) -> None:
    packet = audio_packet()
    blob = write_file(tmp_path / "one.ltk", [packet])
    data = encode_packet(packet)
    assert blob[:8] == b"LTKF\x01\x00\x00\x00"
    assert blob[8:12] == SYNC == bytes.fromhex("a54c5452")
    assert struct.unpack_from("<II", blob, 12) == (len(data), zlib.crc32(data))
    assert blob[20:] == data


def test_write_encoded_and_flush(tmp_path: Path) -> None:
    packet = audio_packet()
    path = tmp_path / "raw.ltk"
    writer = LtkWriter(path)
    writer.write_encoded(encode_packet(packet))
    writer.flush()
    assert read_ltk(path).packets == [packet]  # readable before close
    writer.close()
    assert writer.closed
    with pytest.raises(ValueError):
        LtkWriter(tmp_path / "x.ltk").write_encoded(b"not a packet")


def test_truncation_at_every_offset(tmp_path: Path) -> None:
    packets = [audio_packet(0), video_delta_packet(), audio_packet(2)]
    blob = write_file(tmp_path / "full.ltk", packets)
    bounds = record_bounds(blob)
    assert len(bounds) == 4
    cut_path = tmp_path / "cut.ltk"
    for cut in range(len(blob) + 1):
        cut_path.write_bytes(blob[:cut])
        if cut < len(FILE_HEADER):
            with pytest.raises(DecodeError):
                read_ltk(cut_path)
            continue
        result = read_ltk(cut_path)
        complete = sum(1 for end in bounds[1:] if end <= cut)
        assert result.packets == packets[:complete], cut
        expected_errors = 0 if cut in bounds else 1
        assert len(result.errors) == expected_errors, (cut, result.errors)
        if expected_errors:
            assert f"offset {bounds[complete]}" in result.errors[0]


@pytest.mark.parametrize("where", ["sync", "length", "crc", "payload", "last"])
def test_corrupt_middle_record_is_skipped(tmp_path: Path, where: str) -> None:
    packets = [audio_packet(0), video_full_packet(1), audio_packet(2)]
    blob = bytearray(write_file(tmp_path / "ok.ltk", packets))
    bounds = record_bounds(bytes(blob))
    start, end = bounds[1], bounds[2]
    index = {"sync": 0, "length": 5, "crc": 9, "payload": (start + end) // 2 - start}.get(
        where, end - start - 1
    )
    blob[start + index] ^= 0x40
    path = tmp_path / "bad.ltk"
    path.write_bytes(bytes(blob))
    result = read_ltk(path)
    assert result.packets == [packets[0], packets[2]]
    assert len(result.errors) == 1
    assert f"offset {start}" in result.errors[0]
    assert str(path) in result.errors[0]


def test_garbage_between_records_is_skipped(tmp_path: Path) -> None:
    packets = [audio_packet(0), audio_packet(1)]
    blob = write_file(tmp_path / "ok.ltk", packets)
    cut = record_bounds(blob)[1]
    junk = SYNC + b"\xff\xff\x00\x00" + b"junk" + SYNC[:2]  # a false sync marker inside
    path = tmp_path / "junk.ltk"
    path.write_bytes(blob[:cut] + junk + blob[cut:])
    result = read_ltk(path)
    assert result.packets == packets
    assert len(result.errors) == 1
    assert f"skipped to offset {cut + len(junk)}" in result.errors[0]


def test_record_with_good_crc_but_bad_packet(tmp_path: Path) -> None:
    bad = bytearray(encode_packet(audio_packet(1)))
    bad[4] = 9  # a future version: framing is fine, the packet is not readable
    path = tmp_path / "mixed.ltk"
    with LtkWriter(path) as writer:
        writer.write(audio_packet(0))
        writer.write_encoded(bytes(bad))
        writer.write(audio_packet(2))
    result = read_ltk(path)
    assert result.packets == [audio_packet(0), audio_packet(2)]
    assert len(result.errors) == 1 and "version 9" in result.errors[0]


def test_iter_ltk_yields_errors_inline(tmp_path: Path) -> None:
    blob = bytearray(write_file(tmp_path / "a.ltk", [audio_packet(0), audio_packet(1)]))
    blob[len(FILE_HEADER)] ^= 0xFF  # first record's sync
    path = tmp_path / "b.ltk"
    path.write_bytes(bytes(blob))
    items = list(iter_ltk(path))
    assert len(items) == 2
    assert isinstance(items[0], DecodeError)
    assert items[1] == audio_packet(1)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"LTK", "not a .ltk"),
        (b"RIFF\x00\x00\x00\x00WAVE", "not a .ltk"),
        (b"LTKF\x02\x00\x00\x00", "version 2"),
    ],
)
def test_not_an_ltk_file_raises(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "x.ltk"
    path.write_bytes(content)
    with pytest.raises(DecodeError, match=match) as info:
        read_ltk(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(DecodeError):
        iter_ltk(path)  # raised on the call, before the first next()


def test_missing_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "nope.ltk"
    with pytest.raises(DecodeError) as info:
        read_ltk(path)
    assert str(path) in str(info.value)
    with pytest.raises(DecodeError):
        read_ltk(tmp_path)  # a directory


def test_header_only_file_is_empty_and_clean(tmp_path: Path) -> None:
    path = tmp_path / "h.ltk"
    write_file(path, [])
    result = read_ltk(path)
    assert result.packets == [] and result.errors == []


# --- the worked examples in docs/wire-format.md ------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "wire-format.md"


def doc_section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(title) + len(title)
    found = re.search(r"^##", text[start:], re.MULTILINE)  # the next (sub)section
    return text[start : start + found.start()] if found else text[start:]


def dump_bytes(section: str) -> bytes:
    """The bytes of the hex-dump lines ("0010  4c 54 ...") of a section, in order."""
    rows = re.findall(r"^[0-9a-f]{4}  ((?:[0-9a-f]{2} )*[0-9a-f]{2})", section, re.MULTILINE)
    return bytes.fromhex("".join(rows))


def doc_delta_packet() -> TokenPacket:
    return TokenPacket(
        "cam0", Modality.VIDEO, Scale.COARSE, 8, 0, 33_366_667, Clock.MEDIA,
        "fedcba9876543210", Flag.DELTA, (7, 7), np.array([[5, 6], [7, 8]], dtype=np.uint16),
        positions=np.array([9, 40], dtype=np.uint16),
        vectors=np.array([[1.0, -0.5], [0.25, 2.0]], dtype=np.float16),
    )  # fmt: skip


def test_doc_audio_example_matches_encoder() -> None:
    packet = TokenPacket(
        "mic0", Modality.AUDIO, Scale.FINE, 3, 1_700_000_000_000_000_000,
        1_700_000_000_020_000_000, Clock.UNIX, "0123456789abcdef", Flag.KEYFRAME, (1, 1),
        np.array([[17, 300, 4095, 65535]], dtype=np.uint16),
    )  # fmt: skip
    data = encode_packet(packet)
    section = doc_section("### 7.1")
    documented = re.search(r"<!-- example-packet-hex -->\s*```\s*([0-9a-f]+)\s*```", section)
    assert documented is not None
    assert bytes.fromhex(documented.group(1)) == data
    assert f"crc32 {zlib.crc32(data):#010x}" in section
    assert decode_packet(bytes.fromhex(documented.group(1))) == packet


def test_doc_delta_and_step_examples_match_encoder() -> None:
    delta = encode_packet(doc_delta_packet())
    assert dump_bytes(doc_section("### 7.2")) == delta
    step = AlignedStep("", 5, 0, 33_366_667, Clock.MEDIA, None, StepFlag.MISSING_AUDIO,
                       (doc_delta_packet(),))  # fmt: skip
    shown = dump_bytes(doc_section("### 7.3"))
    assert len(shown) > 48 and encode_packet(step).startswith(shown)


# -- wire v2: a plug-in tokenizer's named stream -------------------------------------------------------


def named_packet(stream: str = "units", positions: bool = False, vectors: bool = False) -> TokenPacket:
    """A named stream's packet (scale None): 3 k-means units of 1 level, all of a 1 x 3 grid or 3 of a 1 x 4."""
    return TokenPacket(
        source="mic0", modality=Modality.AUDIO, scale=None, seq=9, start_ns=100, end_ns=132_000_100,
        clock=Clock.UNIX, codebook_id=CODEBOOK, flags=Flag.KEYFRAME, grid=(1, 4) if positions else (1, 3),
        codes=np.array([[7], [65535], [0]], np.uint16),
        positions=np.array([0, 1, 3], np.uint16) if positions else None,
        vectors=np.ones((3, 2), np.float16) if vectors else None, stream=stream,
    )


@pytest.mark.parametrize(("positions", "vectors"), [(False, False), (True, False), (False, True), (True, True)])
def test_a_named_stream_round_trips_as_version_2(positions: bool, vectors: bool) -> None:
    p = named_packet("units-ü", positions, vectors)
    data = encode_packet(p)
    assert data[4] == 2 and data[7] == 255  # version, scale byte
    back = decode_packet(data)
    assert back == p and isinstance(back, TokenPacket)
    assert back.scale is None and back.stream == "units-ü" and back.stream_name == "units-ü"


def test_version_2_layout_the_stream_name_follows_the_source() -> None:
    data = encode_packet(named_packet("units"))
    head = 58
    assert data[head : head + 4] == b"mic0"
    assert data[head + 4] == 5 and data[head + 5 : head + 10] == b"units"
    assert len(data) == head + 4 + 1 + 5 + 2 * 3  # codes [3, 1]


def test_the_built_in_scales_stay_version_1_and_are_named_by_their_scale() -> None:
    p = audio_packet()
    assert encode_packet(p)[4] == 1 and p.stream == "" and p.stream_name == "fine"


def test_a_step_is_version_2_exactly_when_it_holds_a_named_stream() -> None:
    v1 = AlignedStep("g", 0, 0, 1, Clock.UNIX, None, StepFlag.NONE, (audio_packet(),))
    v2 = AlignedStep("g", 0, 0, 1, Clock.UNIX, None, StepFlag.NONE, (audio_packet(), named_packet()))
    assert encode_packet(v1)[4] == 1
    data = encode_packet(v2)
    assert data[4] == 2 and decode_packet(data) == v2
    # a v2 packet inside a step that says v1: refused (a v1 reader must see the v2 at the step's first byte)
    bad = bytearray(data)
    bad[4] = 1
    with pytest.raises(DecodeError, match="version 2 inside a version 1 aligned step"):
        decode_packet(bytes(bad))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"scale": None, "stream": "fine"}, "needs a name but fine/coarse"),
    ({"scale": None, "stream": ""}, "needs a name"),
    ({"scale": None, "stream": "x" * 256}, "more than 255"),
    ({"scale": Scale.FINE, "stream": "units"}, "only named streams carry a name"),
])
def test_named_stream_rules(kwargs: dict[str, object], match: str) -> None:
    base = {"source": "s", "modality": Modality.AUDIO, "seq": 0, "start_ns": 0, "end_ns": 1, "clock": Clock.UNIX,
            "codebook_id": CODEBOOK, "flags": Flag.NONE, "grid": (1, 1), "codes": np.zeros((1, 1), np.uint16)}
    with pytest.raises(ValueError, match=match):
        TokenPacket(**base, **kwargs)  # type: ignore[arg-type]


def test_scale_255_in_version_1_and_a_truncated_name_are_decode_errors() -> None:
    data = encode_packet(named_packet())
    bad = bytearray(data)
    bad[4] = 1
    with pytest.raises(DecodeError, match="scale 255 in a version 1"):
        decode_packet(bytes(bad))
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_packet(data[:cut])
    bad = bytearray(data)
    bad[62] = 200  # the name's length runs past the end
    with pytest.raises(DecodeError, match="stream name runs past"):
        decode_packet(bytes(bad))


def test_doc_v2_example_matches_encoder() -> None:
    packet = TokenPacket(
        "mic0", Modality.AUDIO, None, 3, 1_700_000_000_000_000_000, 1_700_000_000_032_000_000, Clock.UNIX,
        "0123456789abcdef", Flag.KEYFRAME, (1, 1), np.array([[42]], dtype=np.uint16), stream="units",
    )
    section = doc_section("### 7.4")
    documented = re.search(r"<!-- example-v2-packet-hex -->\s*```\s*([0-9a-f]+)\s*```", section)
    assert documented is not None
    assert bytes.fromhex(documented.group(1)) == encode_packet(packet)
    assert decode_packet(bytes.fromhex(documented.group(1))) == packet
    rows = dict(re.findall(r"^\| (0x[0-9a-f]{2}) +\| `([0-9a-f ]+)`", section, re.M))
    data = encode_packet(packet)
    for off, hexbytes in rows.items():  # every row of the table is the bytes at its offset
        raw = bytes.fromhex(hexbytes)
        assert data[int(off, 16) : int(off, 16) + len(raw)] == raw, off
