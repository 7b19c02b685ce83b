"""The bus contract's light pieces: topics, broker URLs, secrets, meta JSON, TLS option errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from busgen import VOCAB, meta

from livetok.bus import topics
from livetok.bus.connect import ConnectOptions, Protocol
from livetok.bus.meta import SourceMeta, StreamDescription, new_run_id
from livetok.bus.secret import Secret, read_secret_file
from livetok.bus.tls import TlsOptions, make_ssl_context
from livetok.bus.topics import TopicInfo, TopicKind, parse_topic
from livetok.bus.url import BrokerUrl, parse_broker_url
from livetok.errors import ConfigError, DecodeError
from livetok.wire import Modality, Scale


def test_topics_are_built_as_documented() -> None:
    assert topics.token_topic("livetok", "host1", "cam0", Modality.VIDEO, Scale.FINE) == "livetok/host1/cam0/video/fine"
    assert topics.token_topic("a/b", "h", "mic", "audio", "coarse") == "a/b/h/mic/audio/coarse"
    assert topics.steps_topic("livetok", "host1", "g0") == "livetok/host1/g0/steps"
    assert topics.meta_topic("livetok", "host1", "cam0") == "livetok/host1/cam0/meta"
    assert topics.available_topic("livetok", "host1") == "livetok/host1/available"
    assert topics.stats_topic("livetok", "host1") == "livetok/host1/stats"


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "#", "cam 0", "x" * 65, "ü"])
def test_bad_names_are_one_clear_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="not a valid bus name"):
        topics.token_topic("livetok", "host1", bad, "video", "fine")
    with pytest.raises(ConfigError):
        topics.steps_topic("livetok", bad, "g0")


def test_topics_parse_back_whatever_the_names() -> None:
    assert parse_topic("livetok/host1/cam0/video/fine") == TopicInfo(
        TopicKind.TOKENS, "livetok", "host1", source="cam0", modality=Modality.VIDEO, scale=Scale.FINE)
    # a source called "meta" and a group called "steps" are still unambiguous: the last level decides
    assert parse_topic("livetok/h/meta/audio/coarse") == TopicInfo(
        TopicKind.TOKENS, "livetok", "h", source="meta", modality=Modality.AUDIO, scale=Scale.COARSE)
    assert parse_topic("livetok/h/steps/steps") == TopicInfo(TopicKind.STEPS, "livetok", "h", group="steps")
    assert parse_topic("livetok/h/stats/meta") == TopicInfo(TopicKind.META, "livetok", "h", source="stats")
    assert parse_topic("plant/1/h/available") == TopicInfo(TopicKind.AVAILABLE, "plant/1", "h")
    assert parse_topic("livetok/h/stats") == TopicInfo(TopicKind.STATS, "livetok", "h")
    assert parse_topic("livetok/h/cam0/video/fine", prefix="other") is None
    for foreign in ("livetok/h/cam0/infrared/fine", "h/cam0/video/fine", "livetok/h/cam0", "x/h/+/steps",
                    "livetok//cam0/meta", "$SYS/broker/uptime", "available"):
        assert parse_topic(foreign) is None, foreign


def test_filters() -> None:
    assert topics.tokens_filter() == "livetok/+/+/+/+"
    assert topics.tokens_filter(instance="h", modality="video") == "livetok/h/+/video/+"
    assert topics.data_filters("livetok", "h") == ["livetok/h/+/+/+", "livetok/h/+/steps"]
    assert topics.instance_filter() == "livetok/+/#"
    assert topics.shared("models", topics.steps_filter()) == "$share/models/livetok/+/+/steps"
    assert topics.split_shared("$share/models/livetok/#") == ("models", "livetok/#")
    assert topics.filter_matches("livetok/+/+/steps", "livetok/h/g0/steps")
    assert topics.filter_matches("$share/m/livetok/#", "livetok/h/g0/steps")
    assert topics.filter_matches("livetok/#", "livetok")
    assert not topics.filter_matches("livetok/+/+/steps", "livetok/h/cam0/meta")
    assert not topics.filter_matches("+/#", "$SYS/x")
    assert topics.filter_covers("livetok/#", "livetok/+/+/meta")
    assert topics.filter_covers("livetok/+/+/+", "livetok/h/+/meta")
    assert not topics.filter_covers("livetok/+/+/steps", "livetok/+/+/meta")
    assert not topics.filter_covers("livetok/h/+/meta", "livetok/+/+/meta")
    assert topics.companion_filters("livetok/h1/+/steps") == ["livetok/h1/+/meta", "livetok/h1/available"]
    assert topics.companion_filters("$share/g/#") == ["livetok/+/+/meta", "livetok/+/available"]


@pytest.mark.parametrize(("bad", "why"), [("a/#/b", "'#' must be a whole level"), ("a/b#", "'#' must be"),
                                         ("a/b+/c", "'\\+' must be a whole level"), ("", "empty"),
                                         ("$share/g", "must be \\$share/GROUP/FILTER"),
                                         ("$share/g+/x", "not a valid bus name")])
def test_bad_filters(bad: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        topics.check_filter(bad)


def test_broker_urls() -> None:
    assert parse_broker_url("mqtt://broker") == BrokerUrl("mqtt", "broker", 1883)
    assert parse_broker_url("mqtts://broker") == BrokerUrl("mqtts", "broker", 8883)
    assert parse_broker_url("MQTT://alice@10.0.0.2:1884/") == BrokerUrl("mqtt", "10.0.0.2", 1884, "alice")
    u = parse_broker_url("mqtts://a%40b@[::1]:8884")
    assert u == BrokerUrl("mqtts", "::1", 8884, "a@b") and u.tls and str(u) == "mqtts://a@b@[::1]:8884"


@pytest.mark.parametrize(("url", "why"), [
    ("http://broker", "must look like mqtt://"), ("broker:1883", "must look like"),
    ("mqtt://broker:0", "port '0'"), ("mqtt://broker:x", "port 'x'"), ("mqtt://broker/topic", "path"),
    ("mqtt://", "no host"), ("mqtt://@broker", "empty user"), ("mqtt://[::1", "IPv6"),
])
def test_bad_broker_urls(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_broker_url(url)


def test_a_password_in_the_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse_broker_url("mqtt://alice:s3cr3t-pw@broker:1883")
    text = str(info.value)
    assert "s3cr3t-pw" not in text and "password" in text and "file" in text and len(text.splitlines()) == 1


def test_secrets_never_print(tmp_path: Path) -> None:
    s = Secret("hunter2")
    assert "hunter2" not in repr(s) + str(s) + f"{s}" + f"{s!r}" and s.reveal() == "hunter2"
    with pytest.raises(TypeError):
        pickle.dumps(s)
    f = tmp_path / "pw"
    f.write_text("hunter2\r\n")
    assert read_secret_file(f).reveal() == "hunter2"
    f.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_secret_file(f)
    with pytest.raises(ConfigError, match="cannot read it"):
        read_secret_file(tmp_path / "missing")
    opts = ConnectOptions(parse_broker_url("mqtt://alice@h"), password=Secret("hunter2"))
    assert "hunter2" not in repr(opts)


def test_connect_options_refuse_contradictions(tmp_path: Path) -> None:
    url = parse_broker_url("mqtt://h")
    with pytest.raises(ConfigError, match="fixed client id"):
        ConnectOptions(url, persistent=True)
    with pytest.raises(ConfigError, match="mqtts://"):
        ConnectOptions(url, tls=TlsOptions())
    with pytest.raises(ConfigError, match="names no user"):
        ConnectOptions(url, password=Secret("x"))
    assert ConnectOptions(url, protocol=Protocol.V311).protocol is Protocol.V311
    with pytest.raises(ConfigError, match="CA file"):
        make_ssl_context(TlsOptions(ca_file=tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="client certificate"):
        make_ssl_context(TlsOptions(cert_file=tmp_path / "junk.pem"))


def test_meta_round_trips_through_json_and_keeps_unknown_keys() -> None:
    run_id = new_run_id()
    m = meta(run_id)
    doc = json.loads(m.to_json())
    assert {"wire_version", "codebook_id", "clock", "run_id", "instance", "source", "streams", "vocab"} <= set(doc)
    assert doc["wire_version"] == 1 and doc["clock"] == "unix" and doc["run_id"] == run_id
    vf = doc["streams"]["video/fine"]
    assert vf == {"rate_hz": None, "nominal_fps": 30.0, "token_fps": None, "grid": [14, 14], "levels": 4,
                  "codebook_size": 1024,
                  "code_offsets": [6178, 7202, 8226, 9250], "position_offset": 10274}
    assert doc["streams"]["audio/fine"]["rate_hz"] == 50.0 and doc["streams"]["audio/coarse"]["levels"] == 2
    assert SourceMeta.from_json(m.to_json()) == m
    doc["future_field"] = {"x": 1}
    again = SourceMeta.from_json(json.dumps(doc))
    assert again.extra == {"future_field": {"x": 1}} and json.loads(again.to_json())["future_field"] == {"x": 1}
    assert again.vocab == VOCAB


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(wire_version=9), lambda d: d.update(run_id="XYZ"), lambda d: d.pop("vocab"),
    lambda d: d["vocab"].update(layout="livetok-vocab/9"), lambda d: d["vocab"]["ranges"].pop(),
    lambda d: d["streams"].update({"smell/fine": {}}),
])
def test_bad_meta_is_a_decode_error(mutate: object) -> None:
    doc = json.loads(meta(new_run_id()).to_json())
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(DecodeError):
        SourceMeta.from_json(json.dumps(doc))
    with pytest.raises(DecodeError):
        SourceMeta.from_json(b"\xff not json")


def test_meta_build_checks_its_input() -> None:
    with pytest.raises(ConfigError, match="run id"):
        SourceMeta.build(run_id="nope", instance="h", source="s", vocab=VOCAB, streams=[])
    with pytest.raises(ConfigError, match="levels"):
        SourceMeta.build(run_id=new_run_id(), instance="h", source="s", vocab=VOCAB,
                         streams=[StreamDescription(Modality.AUDIO, Scale.COARSE, levels=3)])


def test_meta_gives_the_token_rate_next_to_the_cameras() -> None:
    """A source with ``token_fps`` says so in its video streams' meta, next to ``nominal_fps``; audio
    streams carry no token rate; a reader gets it back."""
    from livetok.config import LivetokConfig
    from livetok.sinks.mqtt_setup import source_metas

    cfg = LivetokConfig.model_validate({"sources": [
        {"kind": "synthetic", "name": "cam", "fps": 30, "token_fps": 5},
        {"kind": "lavfi", "name": "all", "graph": "testsrc2"}]})
    metas = {m.source: m for m in source_metas(cfg, VOCAB, new_run_id(), "h")}
    doc = json.loads(metas["cam"].to_json())
    for key in ("video/fine", "video/coarse"):
        assert (doc["streams"][key]["nominal_fps"], doc["streams"][key]["token_fps"]) == (30.0, 5.0)
    assert "token_fps" not in doc["streams"]["audio/fine"]
    assert SourceMeta.from_json(metas["cam"].to_json()).streams["video/fine"].token_fps == 5.0
    every = json.loads(metas["all"].to_json())["streams"]["video/fine"]
    assert (every["nominal_fps"], every["token_fps"]) == (25.0, None)  # every frame, at the rate the graph states
    with pytest.raises(ConfigError, match="token_fps"):
        SourceMeta.build(run_id=new_run_id(), instance="h", source="s", vocab=VOCAB,
                         streams=[StreamDescription(Modality.VIDEO, Scale.FINE, token_fps=-1.0)])
