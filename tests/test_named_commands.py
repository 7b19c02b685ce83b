"""Named streams (wire v2) in every command that reads tokens: probe, inspect, eval, tail, record.

The packets are built here (tests/namedgen.py): the daemon's plug-in wiring is another branch's;
they travel in real .ltk files and through a real Mosquitto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from broker import Mosquitto
from busgen import json_lines, packet, run_cli
from namedgen import CLIP, PATCHES, UNITS, UNITS_CID, named_packet, named_step
from PIL import Image
from test_client_cli import Feeder
from test_quality import chirp_wav  # noqa: F401  (the fixture)

from livetok.cli import main
from livetok.commands import quality
from livetok.commands.inspect import Layout, inspect
from livetok.commands.probe import packet_json, step_json
from livetok.commands.tokenize import tokenize_files
from livetok.tokenizers import Tokenizers
from livetok.wire import LtkWriter, TokenPacket, read_ltk


def write(path: Path, items: list[Any]) -> Path:
    with LtkWriter(path) as w:
        for item in items:
            w.write(item)
    return path


def v2_file(tmp_path: Path) -> Path:
    """Named packets on their own, v2 steps holding built-in and named packets, a v1 packet."""
    units = [named_packet(k, UNITS) for k in range(8)]
    return write(tmp_path / "v2.ltk", [*units, named_step(0), named_step(1), packet(0)])


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_probe_json_table_and_tokens_name_the_streams(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = v2_file(tmp_path)
    code, out, _ = run_main(capsys, "probe", str(path), "--json")
    streams = {(s["source"], s["modality"], s["stream"]): s for s in json.loads(out)["streams"]}
    assert code == 0 and set(streams) == {
        ("cam0", "audio", "units"), ("cam0", "audio", "fine"), ("cam0", "audio", "coarse"),
        ("cam0", "video", "fine"), ("cam0", "video", "coarse"), ("cam0", "audio", "patches"),
        ("cam0", "video", "clip")}
    units = streams[("cam0", "audio", "units")]
    assert units["scale"] is None and units["codebook_id"] == UNITS_CID and units["packets"] == 8
    assert units["rate_hz"] == 50.0 and units["gaps"] == 0
    assert streams[("cam0", "audio", "fine")]["scale"] == "fine"
    # counted from the steps: a stream never written on its own
    assert streams[("cam0", "video", "clip")]["packets"] == 2 and streams[("cam0", "video", "clip")]["scale"] is None

    code, out, _ = run_main(capsys, "probe", str(path))
    rows = out.splitlines()
    assert code == 0 and rows[0].split()[:3] == ["source", "modality", "stream"]
    assert any(r.split()[:4] == ["cam0", "audio", "units", "8"] for r in rows[1:])
    assert any(r.split()[:3] == ["cam0", "audio", "patches"] for r in rows[1:])

    code, out, _ = run_main(capsys, "probe", str(path), "--tokens")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 11
    assert lines[0] == packet_json(named_packet(0, UNITS))
    assert (lines[0]["scale"], lines[0]["stream"]) == (None, "units")
    assert lines[8] == step_json(named_step(0))
    assert [p["stream"] for p in lines[8]["packets"]][-6:] == ["units"] * 4 + ["patches", "clip"]


@pytest.fixture(scope="module")
def mixed_ltk(av_clip: Path, toks: Tokenizers, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clip's real tokens, then named packets of the same source appended."""
    tmp = tmp_path_factory.mktemp("named")
    tokenize_files([av_clip], toks, tmp / "builtin.ltk")
    named = [named_packet(k, UNITS, source="clip") for k in range(5)] + [named_packet(0, CLIP, source="clip")]
    return write(tmp / "clip.ltk", [*read_ltk(tmp / "builtin.ltk").packets, *named])


def test_inspect_draws_the_builtin_streams_and_lists_the_named_ones(mixed_ltk: Path, toks: Tokenizers) -> None:
    """Before: CodebookError (exit 65) on the first named packet: its codebook id is its tokenizer's."""
    png = mixed_ltk.with_name("named.png")
    assert inspect(mixed_ltk, png, toks, None) == []
    assert Image.open(png).size == Layout(tile=224, columns=6, rows=4, spectrograms=2, notes=1).size


def test_inspect_of_named_streams_only_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "units.ltk", [named_packet(k, UNITS) for k in range(3)] + [named_packet(0, PATCHES)])
    code, _, err = run_main(capsys, "inspect", str(path), "-o", str(tmp_path / "out.png"))
    assert code == 65 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "nothing to draw" in err and "cam0/audio/units (3 packets), cam0/audio/patches (1 packets)" in err
    assert not (tmp_path / "out.png").exists()


def test_eval_skips_named_streams_with_a_note(chirp_wav: Path, toks: Tokenizers,  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-in tokenizers' output plus a named stream's packets (as a tokenizer session with a
    plug-in would give): the built-in streams are measured, the named one is listed, not a crash."""
    real = quality.tokenize_file

    def with_units(*args: Any, **kw: Any) -> list[TokenPacket]:
        return [*real(*args, **kw), *(named_packet(k, UNITS, source="chirp") for k in range(4))]

    monkeypatch.setattr(quality, "tokenize_file", with_units)
    report = quality.evaluate(chirp_wav, toks, compare=False)
    assert set(report) == {"audio", "skipped"} and set(report["audio"]) == {"fine", "coarse"}
    assert report["skipped"] == [{"source": "chirp", "modality": "audio", "stream": "units", "packets": 4}]
    text = quality.format_report(report)
    assert text.splitlines()[-1] == ("note: named streams not decoded (no decoder for a plug-in tokenizer's "
                                     "codes): chirp/audio/units (4 packets)")


def named_mix(seq: int) -> object:
    """Alternately a units packet, a patches packet and a v2 step."""
    kind = seq % 3
    if kind == 0:
        return named_packet(seq // 3, UNITS)
    if kind == 1:
        return named_packet(seq // 3, PATCHES)
    return named_step(seq // 3)


@pytest.mark.slow
def test_tail_shows_named_streams(mosquitto: Mosquitto) -> None:
    with Feeder(mosquitto.url, named_mix) as feed:
        proc = run_cli("tail", mosquitto.url, "--json", "--count", "6")
    assert proc.returncode == 0, proc.stderr
    rows = list(json_lines(proc.stdout))
    sent = {(type(i).__name__, i.seq, getattr(i, "stream", None)): i for i in feed.sent}  # type: ignore[attr-defined]
    assert len(rows) == 6 and {r["kind"] for r in rows} == {"packet", "step"}
    for row in rows:
        topic = row.pop("topic")
        row.pop("run_id")
        if row["kind"] == "step":
            assert row == step_json(sent[("AlignedStep", row["seq"], None)])  # type: ignore[arg-type]
        else:
            assert topic == f"livetok/host1/cam0/audio/{row['stream']}" and row["scale"] is None
            assert row == packet_json(sent[("TokenPacket", row["seq"], row["stream"])])  # type: ignore[arg-type]
    with Feeder(mosquitto.url, named_mix):
        proc = run_cli("tail", mosquitto.url, "--count", "3")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 3
    assert any("/audio/units  #" in ln and "keyframe  1x1 [" in ln for ln in lines)
    assert any("/audio/patches  #" in ln and "8x2 [" in ln for ln in lines)
    assert any("audio/unitsx4 audio/patchesx1 video/clipx1" in ln for ln in lines)


@pytest.mark.slow
def test_record_keeps_named_streams_byte_for_byte(mosquitto: Mosquitto, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rec.ltk"
    with Feeder(mosquitto.url, named_mix) as feed:
        proc = run_cli("record", mosquitto.url, "-o", str(out), "--count", "9")
    assert proc.returncode == 0, proc.stderr
    got = read_ltk(out)
    assert got.errors == [] and len(got.packets) == 9
    by_key = {(type(i).__name__, i.seq, getattr(i, "stream", None)): i for i in feed.sent}  # type: ignore[attr-defined]
    for item in got.packets:
        assert item == by_key[(type(item).__name__, item.seq, getattr(item, "stream", None))]
    code, text, _ = run_main(capsys, "probe", str(out), "--json")
    names = {s["stream"] for s in json.loads(text)["streams"]}
    assert code == 0 and {"units", "patches", "clip", "fine", "coarse"} <= names
