"""Named streams (wire v2) on the consumer side: topics whose last level is a stream name, meta's
stream table (v1 and v2), and livetok.client against a real Mosquitto: v2 packets and steps
decoded, continuity per (source, modality, stream), the layout-2 vocabulary from meta."""

from __future__ import annotations

import asyncio
import json
from fractions import Fraction

import pytest
from broker import Mosquitto
from busgen import CODEBOOK_ID, VOCAB, TestPublisher, meta, packet
from namedgen import PATCHES, UNITS, UNITS_CID, VOCAB2, named_packet, named_step
from test_client import take

from livetok.bus import topics
from livetok.bus.meta import SourceMeta, StreamDescription, new_run_id
from livetok.bus.topics import TopicInfo, TopicKind, parse_topic
from livetok.client import Continuity, StreamKey, Subscriber
from livetok.errors import ConfigError, DecodeError
from livetok.wire import Modality, Scale, encode_packet


def test_the_last_topic_level_is_the_stream_name() -> None:
    assert topics.token_topic("livetok", "h", "mic", Modality.AUDIO, "units") == "livetok/h/mic/audio/units"
    assert topics.token_topic("livetok", "h", "mic", "audio", "fine") == "livetok/h/mic/audio/fine"
    assert parse_topic("livetok/h/mic/audio/units") == TopicInfo(
        TopicKind.TOKENS, "livetok", "h", source="mic", modality=Modality.AUDIO, scale=None, stream="units")
    assert parse_topic("livetok/h/cam/video/clip.v2") == TopicInfo(
        TopicKind.TOKENS, "livetok", "h", source="cam", modality=Modality.VIDEO, scale=None, stream="clip.v2")
    # the words that name a topic's kind are never a stream's name: those topics keep their meaning
    assert parse_topic("livetok/h/mic/audio/meta") == TopicInfo(TopicKind.META, "livetok/h", "mic", source="audio")
    for word in ("steps", "meta", "available", "stats"):
        with pytest.raises(ConfigError, match="not fine, coarse or a stream name"):
            topics.token_topic("livetok", "h", "mic", Modality.AUDIO, word)
    with pytest.raises(ConfigError):
        topics.token_topic("livetok", "h", "mic", Modality.AUDIO, "a/b")
    assert topics.tokens_filter(scale="units") == "livetok/+/+/+/units"


def named_meta(run_id: str, source: str = "cam0") -> SourceMeta:
    """A v2 meta: the built-in streams and the three named ones, with their tokenizers."""
    return SourceMeta.build(run_id=run_id, instance="host1", source=source, vocab=VOCAB2, streams=[
        StreamDescription(Modality.AUDIO, Scale.FINE, 4, 50.0),
        StreamDescription(Modality.AUDIO, Scale.COARSE, 2, 12.5),
        StreamDescription(Modality.VIDEO, Scale.FINE, 4, None, 30.0),
        StreamDescription(Modality.VIDEO, Scale.COARSE, 2, None, 30.0),
        StreamDescription(Modality.AUDIO, None, 1, 50.0, stream="units", tokenizer="units", kind="torchscript",
                          step_ns=Fraction(20_000_000), vector_size=None),
        StreamDescription(Modality.AUDIO, None, None, 12.5, stream="patches", tokenizer="spec",
                          kind="spectrogram-patches", step_ns=Fraction(80_000_000)),
        StreamDescription(Modality.VIDEO, None, None, None, 30.0, stream="clip", tokenizer="clip", kind="onnx",
                          vector_size=512)])


def test_meta_lists_named_streams_and_reads_v1_and_v2() -> None:
    run_id = new_run_id()
    m = named_meta(run_id)
    doc = json.loads(m.to_json())
    assert doc["wire_version"] == 2 and doc["vocab"]["layout"] == "livetok-vocab/2"
    assert doc["streams"]["audio/units"] == {
        "rate_hz": 50.0, "nominal_fps": None, "grid": [1, 1], "levels": 1, "codebook_size": 500,
        "code_offsets": [12568], "position_offset": 13068, "tokenizer": "units", "kind": "torchscript",
        "name": "units", "modality": "audio", "step_ns": "20000000/1", "vector_size": None,
        "codebook_id": UNITS_CID}
    assert doc["streams"]["video/clip"]["step_ns"] is None and doc["streams"]["video/clip"]["vector_size"] == 512
    assert "tokenizer" not in doc["streams"]["audio/fine"]  # a built-in stream described as in v1
    back = SourceMeta.from_json(m.to_json())
    assert back == m and back.vocab == VOCAB2 and back.to_json() == m.to_json()
    units = back.stream(Modality.AUDIO, "units")
    assert units is not None and units.name == "units" and units.scale is None
    assert units.step_ns == Fraction(20_000_000) and units.kind == "torchscript"
    # v1 meta (no stream table beyond the scales) still reads; its streams have no tokenizer fields
    v1 = SourceMeta.from_json(meta(run_id).to_json())
    assert v1.wire_version == 1 and v1.vocab == VOCAB
    assert (s := v1.stream(Modality.AUDIO, Scale.FINE)) is not None and s.tokenizer is None and s.step_ns is None
    # a named stream listed without its tokenizer's fields is taken as it is
    del doc["streams"]["audio/units"]["tokenizer"], doc["streams"]["audio/units"]["step_ns"]
    assert SourceMeta.from_dict(doc).streams["audio/units"].step_ns is None


@pytest.mark.parametrize("bad", ["0/1", "1.5", "20000000", 20000000, "-1/3"])
def test_a_bad_step_ns_in_meta_is_a_decode_error(bad: object) -> None:
    doc = json.loads(named_meta(new_run_id()).to_json())
    doc["streams"]["audio/units"]["step_ns"] = bad
    with pytest.raises(DecodeError, match="step_ns"):
        SourceMeta.from_dict(doc)


def test_meta_build_refuses_a_stream_the_vocabulary_lacks() -> None:
    with pytest.raises(ConfigError, match="no audio/units stream"):
        SourceMeta.build(run_id=new_run_id(), instance="h", source="s", vocab=VOCAB,
                         streams=[StreamDescription(Modality.AUDIO, None, stream="units")])


def test_named_packets_and_v2_steps_through_a_real_broker(mosquitto: Mosquitto) -> None:
    """Continuity is per (source, modality, stream): a gap in audio/patches is not one in audio/units."""
    units = [named_packet(k, UNITS) for k in range(3)]
    patches = [named_packet(0, PATCHES), named_packet(2, PATCHES)]  # seq 1 never sent
    steps = [named_step(0), named_step(1)]
    fine = packet(0)

    async def main() -> None:
        async with Subscriber(mosquitto.url, ["livetok/+/+/+/+", "livetok/+/+/steps"]) as sub:
            async with TestPublisher(mosquitto.url) as pub:
                await pub.send_raw(topics.meta_topic("livetok", "host1", "cam0"),
                                   named_meta(pub.run_id).to_json().encode(), retain=True)
                # a units packet on the patches topic: counted invalid, not delivered
                await pub.send_raw("livetok/host1/cam0/audio/patches", encode_packet(units[0]))
                await pub.send_all([*units, *patches, *steps, fine])
                got = await take(sub, 8)
            assert [m.seq for m in got] == [0, 1, 2, 0, 2, 0, 1, 0]
            assert [m.stream_name for m in got[:5]] == ["units"] * 3 + ["patches"] * 2
            assert [m.scale for m in got[:5]] == [None] * 5 and got[7].stream_name == "fine"
            assert [m.packet for m in got[:5]] == units + patches and [m.step for m in got[5:7]] == steps
            assert [m.continuity for m in got[3:5]] == [Continuity.FIRST, Continuity.GAP] and got[4].missing == 1
            assert str(got[0].stream) == "host1/cam0/audio/units"
            stats = sub.stats.streams
            units_key = StreamKey("host1", "cam0", Modality.AUDIO, None, "units")
            patches_key = StreamKey("host1", "cam0", Modality.AUDIO, None, "patches")
            assert stats[units_key].received == 3 and stats[units_key].gaps == 0
            assert stats[patches_key].gaps == 1 and stats[patches_key].missing == 1
            assert stats[patches_key].invalid == 1
            assert list(stats)[:4] == [StreamKey("host1", "cam0", Modality.AUDIO, Scale.FINE), patches_key,
                                       units_key, StreamKey("host1", "g0")]
            # the vocabulary from meta (layout 2) flattens the v2 steps and gives them back exactly
            for cid in (CODEBOOK_ID, UNITS_CID):
                assert sub.vocabulary(cid) == VOCAB2
            vocab = sub.meta[("host1", "cam0")].vocab
            flat = vocab.unflatten(vocab.flatten(steps[1]))
            assert [p.stream_name for p in flat.packets][-6:] == ["units"] * 4 + ["patches", "clip"]

    asyncio.run(main())
