"""A file source's meta says the file's frame rate (issue 14 §4: ``nominal_fps`` was null for a 25 fps
file), and its video packets span the nominal frame duration (docs/wire-format.md, ``end_ns``)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from broker import Mosquitto

from livetok.bus.meta import SourceMeta
from livetok.config import load_config
from livetok.sinks.mqtt_setup import source_metas
from livetok.vocab import Vocabulary
from livetok.wire import Modality, TokenPacket, read_ltk

FRAME_25_NS = 40_000_000


def _config(tmp_path: Path, clip: Path, port: int = 1883) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(f"sources:\n  - {{kind: file, name: clip, path: {clip}}}\n"
                 f"sinks:\n  - {{kind: file, path: {tmp_path / 'out.ltk'}}}\n"
                 f"mqtt: {{host: 127.0.0.1, port: {port}, instance: fpstest}}\n")
    return p


def test_a_file_sources_meta_has_the_files_frame_rate(tmp_path: Path, av_clip: Path) -> None:
    cfg = load_config(_config(tmp_path, av_clip))
    vocab = Vocabulary.from_codebook_file(cfg.tokenizer.codebooks)
    (meta,) = source_metas(cfg, vocab, "0123456789abcdef", "fpstest")
    assert meta.streams["video/fine"].nominal_fps == 25.0 and meta.streams["video/coarse"].nominal_fps == 25.0
    assert meta.streams["audio/fine"].nominal_fps is None


def test_a_lavfi_sources_meta_has_its_graphs_rate_and_a_stream_says_null(tmp_path: Path) -> None:
    p = tmp_path / "lavfi.yaml"
    p.write_text("sources:\n  - {kind: lavfi, name: g, graph: 'testsrc2=size=160x120:rate=12'}\n"
                 "  - {kind: stream, name: s, url: 'udp://127.0.0.1:9'}\n"
                 "sinks:\n  - {kind: file, path: out.ltk}\n")
    cfg = load_config(p)
    vocab = Vocabulary.from_codebook_file(cfg.tokenizer.codebooks)
    metas = {m.source: m for m in source_metas(cfg, vocab, "0123456789abcdef", "fpstest")}
    assert metas["g"].streams["video/fine"].nominal_fps == 12.0
    assert metas["s"].streams["video/fine"].nominal_fps is None  # not known before the stream opens


@pytest.mark.slow  # a live run of a 2 s clip
def test_a_25_fps_file_through_run_says_25_fps_in_meta_and_40_ms_frames(tmp_path: Path, av_clip: Path,
                                                                          mosquitto: Mosquitto) -> None:
    """`livetok run` with the file played as live, into a file sink and the bus: the retained meta
    says 25 fps, and every video packet in the file spans 40 ms from its frame's capture."""
    from livetok.client import Subscriber

    p = _config(tmp_path, av_clip, mosquitto.port)

    async def go() -> tuple[SourceMeta | None, str]:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "livetok.cli", "run", "-c", str(p),
                                                    stderr=asyncio.subprocess.PIPE)
        _, raw = await asyncio.wait_for(proc.communicate(), 100)
        err = raw.decode()
        assert proc.returncode == 0, err[-2000:]
        assert json.loads(err[err.index("{"):])["accounting"]["sinks"]["mqtt"]["written"] > 0, err[-2000:]
        async with Subscriber(mosquitto.url, "livetok/fpstest/+/meta", qos=1) as sub:
            async for msg in sub:  # the retained meta comes first
                if msg.meta is not None:
                    return msg.meta, err
        return None, err

    meta, err = asyncio.run(asyncio.wait_for(go(), 110))
    assert meta is not None and meta.source == "clip", err[-2000:]
    assert meta.streams["video/fine"].nominal_fps == 25.0, meta.streams["video/fine"]
    video = [r for r in read_ltk(tmp_path / "out.ltk").packets
             if isinstance(r, TokenPacket) and r.modality is Modality.VIDEO]
    assert len(video) >= 40, len(video)  # 2 s at 25 fps, both scales
    assert {v.end_ns - v.start_ns for v in video} == {FRAME_25_NS}


def test_the_bus_sinks_meta_names_v1_codebooks_given_by_bare_id(tmp_path: Path) -> None:
    """``tokenizer.codebooks: c0ff5bee45950755`` (the earlier default, by bare id) is accepted by the
    run; the sinks made without a vocabulary (from the codebook file's header) take it too."""
    from livetok.sinks import open_sinks
    from livetok.sinks.mqtt import MqttSink

    p = tmp_path / "v1.yaml"
    p.write_text("sources:\n  - {kind: synthetic, name: cam}\ntokenizer: {codebooks: c0ff5bee45950755}\n"
                 "mqtt: {host: 127.0.0.1, port: 1, instance: v1test}\n")
    (bus,) = open_sinks(load_config(p), "0123456789abcdef")
    assert isinstance(bus, MqttSink)
    assert {m.codebook_id for m in bus.metas} == {"c0ff5bee45950755"}
