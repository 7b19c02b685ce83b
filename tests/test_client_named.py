"""Named streams (wire v2) on the consumer side: topics whose last level is a stream name, meta's
stream table (v1 and v2), and livetok.client against a real Mosquitto: v2 packets and steps
decoded, continuity per (source, modality, stream), the layout-2 vocabulary from meta."""

from __future__ import annotations

import asyncio
import json
from fractions import Fraction
from typing import Any

import pytest
from broker import Mosquitto
from busgen import CODEBOOK_ID, VOCAB, TestPublisher, meta, packet
from namedgen import CLIP, PATCHES, UNITS, UNITS_CID, VOCAB2, named_packet, named_step
from test_client import take

from livetok.bus import topics
from livetok.bus.meta import SourceMeta, StreamDescription, StreamSpecMeta, new_run_id
from livetok.bus.topics import TopicInfo, TopicKind, parse_topic
from livetok.client import Continuity, StreamKey, Subscriber
from livetok.errors import ConfigError, DecodeError
from livetok.vocab import StreamShape, VocabSpec, Vocabulary
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


def spec(tokenizer: str, kind: str, shape: StreamShape, step_ns: str | None, vector_size: int | None = None,
         name: str | None = None) -> StreamSpecMeta:
    return StreamSpecMeta(tokenizer, kind, name or shape.name, shape.modality.name.lower(), step_ns, shape.grid,
                          shape.levels, shape.codebook_size, vector_size, shape.codebook_id or CODEBOOK_ID)


SPECS = [
    *(spec("audio", "logmel-rvq", s, f"{ns}/1", name=s.key.split("/")[1])
      for s, ns in zip(VOCAB.spec.streams[:2], (20_000_000, 80_000_000), strict=True)),
    *(spec("video", "patch-rvq", s, None, name=s.key.split("/")[1]) for s in VOCAB.spec.streams[2:]),
    spec("units", "torchscript", UNITS, "20000000/1"),
    spec("spec", "spectrogram-patches", PATCHES, "80000000/1"),
    spec("clip", "onnx", CLIP, None, vector_size=512),
]


def named_meta(run_id: str, source: str = "cam0", vocab: Vocabulary = VOCAB) -> SourceMeta:
    """A v2 meta as the daemon writes it: the built-in streams in ``streams``, every stream in ``specs``."""
    return SourceMeta.build(run_id=run_id, instance="host1", source=source, vocab=vocab, specs=SPECS, streams=[
        StreamDescription(Modality.AUDIO, Scale.FINE, 4, 50.0),
        StreamDescription(Modality.AUDIO, Scale.COARSE, 2, 12.5),
        StreamDescription(Modality.VIDEO, Scale.FINE, 4, None, 30.0),
        StreamDescription(Modality.VIDEO, Scale.COARSE, 2, None, 30.0),
        StreamDescription(Modality.AUDIO, None, 1, 50.0, stream="units")])


def test_meta_specs_give_the_layout_2_vocabulary_and_v1_still_reads() -> None:
    run_id = new_run_id()
    m = named_meta(run_id)
    doc = json.loads(m.to_json())
    assert doc["wire_version"] == 2 and doc["vocab"]["layout"] == "livetok-vocab/2"
    assert m.vocab == VOCAB2  # the named streams' blocks in the order of specs
    assert doc["specs"][4] == {"tokenizer": "units", "kind": "torchscript", "name": "units", "modality": "audio",
                               "step_ns": "20000000/1", "grid": [1, 1], "levels": 1, "codebook_size": 500,
                               "vector_size": None, "codebook_id": UNITS_CID}
    assert doc["streams"]["audio/units"] == {"rate_hz": 50.0, "nominal_fps": None, "grid": [1, 1], "levels": 1,
                                             "codebook_size": 500, "code_offsets": [12568], "position_offset": 13068}
    back = SourceMeta.from_json(m.to_json())
    assert back == m and back.to_json() == m.to_json()
    units = back.spec(Modality.AUDIO, "units")
    assert units is not None and units.step == Fraction(20_000_000) and units.kind == "torchscript"
    assert back.stream(Modality.AUDIO, "units") is not None and back.stream(Modality.AUDIO, "units").name == "units"
    # a producer that publishes the codebooks' layout-1 vocabulary beside named specs: layout 2 derived
    doc["vocab"] = VOCAB.to_dict()
    assert SourceMeta.from_dict(doc).vocab == VOCAB2
    # v1 meta (no specs) still reads, as before
    v1 = SourceMeta.from_json(meta(run_id).to_json())
    assert v1.wire_version == 1 and v1.vocab == VOCAB and v1.specs == ()


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda d: d["specs"][4].update(step_ns="0/1"), "step_ns"),
    (lambda d: d["specs"][4].update(step_ns="1.5"), "step_ns"),
    (lambda d: d["specs"][4].update(step_ns=20000000), "step_ns"),
    (lambda d: d["specs"][4].update(modality="smell"), "modality"),
    (lambda d: d["specs"][4].update(name="a/b"), "malformed"),
    (lambda d: d["specs"][5].update(codebook_size=9), "describes otherwise the named stream audio/patches"),
    (lambda d: d["specs"].append({**d["specs"][4], "name": "more"}), "lacks the named stream audio/more"),
])
def test_bad_specs_are_a_decode_error(mutate: Any, match: str) -> None:
    doc = json.loads(named_meta(new_run_id()).to_json())
    mutate(doc)
    with pytest.raises(DecodeError, match=match):
        SourceMeta.from_dict(doc)


def test_meta_build_refuses_what_the_vocabulary_cannot_hold() -> None:
    with pytest.raises(ConfigError, match="no audio/units stream"):
        SourceMeta.build(run_id=new_run_id(), instance="h", source="s", vocab=VOCAB,
                         streams=[StreamDescription(Modality.AUDIO, None, stream="units")])
    other = Vocabulary(VocabSpec(CODEBOOK_ID, (*VOCAB.spec.streams, PATCHES)))
    with pytest.raises(ConfigError, match="source 's': the vocabulary lacks the named stream audio/units"):
        SourceMeta.build(run_id=new_run_id(), instance="h", source="s", vocab=other, streams=[], specs=SPECS)
    # a daemon-wide vocabulary (more named streams than this source sends, in another order) is kept
    wide = Vocabulary(VocabSpec(CODEBOOK_ID, (*VOCAB.spec.streams, CLIP, PATCHES, UNITS)))
    m = SourceMeta.build(run_id=new_run_id(), instance="h", source="s", vocab=wide, streams=[], specs=SPECS[:5])
    assert m.vocab == wide and SourceMeta.from_json(m.to_json()).vocab == wide


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
