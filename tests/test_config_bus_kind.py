"""The MQTT bus as a sink of ``kind: mqtt`` (issue 14): the same keys as the ``mqtt:`` section, the
same meaning, and a configuration that gives both refused in one line naming both."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from broker import Mosquitto

from livetok.cli import main
from livetok.commands.run_flags import compose
from livetok.config import load_config
from livetok.errors import ConfigError
from livetok.pipeline.reload import plan
from livetok.sinks import FileSink, open_sinks
from livetok.sinks.mqtt import MqttSink

SOURCES = "sources:\n  - {kind: synthetic, name: cam}\n"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_both_spellings_mean_the_same(tmp_path: Path) -> None:
    section = load_config(write(tmp_path, SOURCES + f"sinks:\n  - {{kind: file, path: {tmp_path}/a.ltk}}\n"
                                "mqtt: {host: broker.lan, port: 1884, instance: cam1, qos: {stats: 1}}\n"))
    kind = load_config(write(tmp_path, SOURCES + f"sinks:\n  - {{kind: file, path: {tmp_path}/a.ltk}}\n"
                             "  - {kind: mqtt, host: broker.lan, port: 1884, instance: cam1, qos: {stats: 1}}\n"))
    assert kind.bus == section.bus and kind.bus is not None and kind.bus.port == 1884
    assert [n for n, _ in kind.named_sinks()] == [n for n, _ in section.named_sinks()] == ["file0", "mqtt"]
    assert plan(section, kind).empty and plan(kind, section).empty  # a reload that only respells: no change
    sinks = open_sinks(kind, "0123456789abcdef")
    assert [type(s) for s in sinks] == [FileSink, MqttSink] and sinks[1].name == "mqtt"
    bus = sinks[1]
    assert isinstance(bus, MqttSink) and str(bus.url) == "mqtt://broker.lan:1884" and bus.instance == "cam1"
    assert [m.source for m in bus.metas] == ["cam"]  # the sources' meta, given at construction


def test_both_given_is_refused_naming_both(tmp_path: Path) -> None:
    p = write(tmp_path, SOURCES + "sinks:\n  - {kind: mqtt, host: a}\nmqtt:\n  host: b\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value) == (f"{p}:5: mqtt: the MQTT bus is given twice, as sinks.0 (kind: mqtt) and as this "
                               "mqtt: section; give it once")
    p = write(tmp_path, SOURCES + "sinks:\n  - {kind: mqtt, host: a}\nmqtt: {}\n")  # an empty section sets nothing
    assert load_config(p).bus is not None


def test_two_buses_and_a_bus_without_host_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r":3: sinks: sinks 0 and 1 are both kind mqtt: one MQTT broker per daemon"):
        load_config(write(tmp_path, SOURCES + "sinks:\n  - {kind: mqtt, host: a}\n  - {kind: mqtt, host: b}\n"))
    with pytest.raises(ConfigError, match=r":4: sinks\.0\.host: Field required"):
        load_config(write(tmp_path, SOURCES + "sinks:\n  - kind: mqtt\n    port: 1883\n"))
    with pytest.raises(ConfigError, match=r":6: sinks\.0\.port: .*less than or equal to 65535"):
        load_config(write(tmp_path, SOURCES + "sinks:\n  - kind: mqtt\n    host: a\n    port: 70000\n"))


def test_a_file_sink_named_mqtt_beside_the_bus_sink_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sink names must be unique: mqtt"):
        load_config(write(tmp_path, SOURCES + f"sinks:\n  - {{kind: mqtt, host: a}}\n"
                          f"  - {{kind: file, name: mqtt, path: {tmp_path}/a.ltk}}\n"))


def test_the_flags_set_the_bus_where_the_file_has_it(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, SOURCES + "sinks:\n  - {kind: mqtt, host: a, instance: cam1, username: u}\n"))
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    out = compose(cfg, [], [], ["mqtts://bob@b:8884"], str(pw))
    assert out.bus is not None and (out.bus.host, out.bus.port, out.bus.username) == ("b", 8884, "bob")
    assert out.bus.tls.enabled and out.bus.password_file == pw and out.bus.instance == "cam1"
    assert out.mqtt.host is None and [s.kind for s in out.sinks] == ["mqtt"]  # still one bus, still a sink


def test_check_config_errors_name_the_sink_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, SOURCES + "sinks:\n  - kind: mqtt\n    host: a\n    username: u\n"
              f"    password_file: {tmp_path}/missing\n")
    assert main(["check-config", "-c", str(p)]) == 78
    err = capsys.readouterr().err
    assert err.startswith(f"livetok: error: {p}:7: sinks.0.password_file: sinks.0.password_file "), err
    assert err.count("\n") == 1, err


def test_a_daemon_publishes_through_a_bus_sink(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`run` with the bus spelled as a sink: every token and step it counts as written arrives on the
    broker, and the source's meta with them."""
    from livetok.client import Message, Subscriber

    p = write(tmp_path, "sources:\n  - {kind: synthetic, name: cam, size: 160x120, fps: 10}\n"
              f"sinks:\n  - {{kind: mqtt, host: 127.0.0.1, port: {mosquitto.port}, instance: kindtest}}\n")
    cfg = load_config(p)
    assert cfg.mqtt.host is None and cfg.bus is not None

    async def go() -> tuple[list[Message], int, str]:
        got: list[Message] = []
        async with Subscriber(mosquitto.url, "livetok/kindtest/#", qos=1) as sub:
            async def take() -> None:
                async for msg in sub:
                    got.append(msg)

            taker = asyncio.create_task(take())
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "livetok.cli", "run", "-c", str(p),
                                                        "--duration", "4", stderr=asyncio.subprocess.PIPE)
            _, raw = await asyncio.wait_for(proc.communicate(), 120)
            err = raw.decode()
            assert proc.returncode == 0, err[-2000:]
            written = json.loads(err[err.index("{"):])["accounting"]["sinks"]["mqtt"]["written"]
            loop = asyncio.get_running_loop()
            end = loop.time() + 30  # every message the broker acknowledged reaches this subscriber
            while sum(m.packet is not None or m.step is not None for m in got) < written and loop.time() < end:
                await asyncio.sleep(0.05)
            taker.cancel()
            return got, written, err

    got, written, err = asyncio.run(go())
    data = [m for m in got if m.packet is not None or m.step is not None]
    assert written > 25 and len(data) == written, err[-2000:]
    assert {m.meta.source for m in got if m.meta is not None} == {"cam"}
    assert any(m.step is not None for m in data) and any(m.packet is not None for m in data)
