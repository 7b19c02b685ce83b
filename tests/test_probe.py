"""``livetok probe``: aligned steps in ``--tokens``, negative times in ``--json``, and the error
messages and JSON shapes exactly as docs/wire-format.md (6.3) and docs/cli.md write them."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from livetok import errors
from livetok.cli import main
from livetok.wire import (
    FILE_HEADER,
    AlignedStep,
    Clock,
    Flag,
    LtkWriter,
    Modality,
    Scale,
    StepFlag,
    TokenPacket,
    encode_packet,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = DOCS.parent / "README.md"


def packet(seq: int, start: int, end: int, modality: Modality = Modality.AUDIO, scale: Scale = Scale.FINE,
           flags: Flag = Flag.NONE) -> TokenPacket:
    return TokenPacket("cam", modality, scale, seq, start, end, Clock.UNIX, "c0ff5bee45950755", flags, (1, 1),
                       np.array([[seq, 2 * seq]], np.uint16))


def step(seq: int, packets: tuple[TokenPacket, ...], skew: int | None = 1250) -> AlignedStep:
    return AlignedStep("cam", seq, packets[0].start_ns, packets[0].end_ns, Clock.UNIX, skew,
                       StepFlag.MISSING_VIDEO, packets)


def write(path: Path, items: list[TokenPacket | AlignedStep]) -> Path:
    with LtkWriter(path) as w:
        for item in items:
            w.write(item)
    return path


def probe_out(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["probe", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_tokens_lists_aligned_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: a file of steps printed nothing at all."""
    steps = [step(i, (packet(i, i * 20, i * 20 + 20),), skew=None if i == 2 else 1250) for i in range(3)]
    code, out, err = probe_out(capsys, str(write(tmp_path / "steps.ltk", steps)), "--tokens")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and err == ""
    assert [r["kind"] for r in rows] == ["step"] * 3 and [r["seq"] for r in rows] == [0, 1, 2]
    first = rows[0]
    assert first == {"kind": "step", "group": "cam", "seq": 0, "start_ns": 0, "end_ns": 20, "skew_ns": 1250,
                     "flags": ["missing_video"], "packets": [
                         {"kind": "packet", "source": "cam", "modality": "audio", "scale": "fine", "stream": "fine",
                          "seq": 0,
                          "start_ns": 0, "end_ns": 20, "flags": [], "codes": [[0, 0]]}]}
    assert rows[2]["skew_ns"] is None


def test_tokens_one_line_per_record_in_file_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = packet(0, 0, 20), packet(1, 20, 40)
    code, out, _ = probe_out(capsys, str(write(tmp_path / "mixed.ltk", [a, step(0, (a,)), b, step(1, (b,))])),
                             "--tokens")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["kind"] for r in rows] == ["packet", "step", "packet", "step"]
    assert rows[1]["packets"][0] == rows[0]


def test_json_end_ns_when_every_end_is_negative(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: end_ns 0 (the summary started from 0 and took the maximum)."""
    path = write(tmp_path / "neg.ltk", [packet(0, -3000, -2000), packet(1, -2000, -1000)])
    code, out, _ = probe_out(capsys, str(path), "--json")
    (stream,) = json.loads(out)["streams"]
    assert code == 0 and stream["start_ns"] == -3000 and stream["end_ns"] == -1000


def test_json_of_a_steps_only_file_counts_the_nested_packets(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    steps = [step(i, (packet(i, -100 + i * 20, -80 + i * 20),)) for i in range(3)]
    code, out, _ = probe_out(capsys, str(write(tmp_path / "s.ltk", steps)), "--json")
    (stream,) = json.loads(out)["streams"]
    assert code == 0 and stream["packets"] == 3 and stream["end_ns"] == -40


# --- error messages: what probe prints is what docs/wire-format.md section 6.3 lists -------------


def spec_section(title: str) -> str:
    text = (DOCS / "wire-format.md").read_text()
    start = text.index(title)
    return text[start : text.index("\n## ", start)]


def template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"<[^>]+>", template)
    return re.compile(".+?".join(re.escape(p) for p in parts) + "$")


def spec_messages() -> tuple[list[re.Pattern[str]], list[re.Pattern[str]]]:
    """(whole-line templates, <why> templates) from section 6.3."""
    section = spec_section("### 6.3 Reading and resynchronisation")
    lines = [template_regex(t) for t in re.findall(r'"(<path>: offset <o>: [^"]+)"', section)]
    whys = [template_regex(t) for t in re.findall(r"^\| `([^`]+)` \|", section, re.M) if t != "<why>"]
    return lines, whys


def damaged_files(tmp_path: Path) -> dict[str, Path]:
    good = [packet(i, i * 20, i * 20 + 20) for i in range(4)]
    blob = (tmp_path / "g.ltk").read_bytes() if (tmp_path / "g.ltk").exists() else None
    blob = blob or write(tmp_path / "g.ltk", good).read_bytes()
    rec = len(encode_packet(good[0])) + 12
    second = len(FILE_HEADER) + rec
    out: dict[str, bytes] = {
        "truncated header": blob + b"\xa5LT",
        "bad sync": blob[:second] + b"XXXX" + blob[second + 4 :],
        "length past end": blob[:second + 4] + struct.pack("<I", 10**6) + blob[second + 8 :],
        "crc": blob[:second + 8] + b"\0\0\0\0" + blob[second + 12 :],
        "cut": blob[: len(blob) - 5],
    }
    bad = bytearray(encode_packet(good[0]))
    bad[4] = 9  # a future version inside a record whose framing and CRC are fine
    with LtkWriter(tmp_path / "badpacket.ltk") as w:
        w.write(good[0])
        w.write_encoded(bytes(bad))
    paths = {"bad packet": tmp_path / "badpacket.ltk"}
    for name, data in out.items():
        paths[name] = tmp_path / f"{name.replace(' ', '-')}.ltk"
        paths[name].write_bytes(data)
    return paths


def test_probe_messages_are_the_documented_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines, whys = spec_messages()
    assert len(lines) == 3 and len(whys) == 4  # "skipped to", "no records follow", "bad packet"; four whys
    used_whys: set[int] = set()
    for name, path in damaged_files(tmp_path).items():
        code, out, _ = probe_out(capsys, str(path))
        table_errors = [line.removeprefix("error: ") for line in out.splitlines() if line.startswith("error: ")]
        code_j, out_j, _ = probe_out(capsys, str(path), "--json")
        code_t, _, err_t = probe_out(capsys, str(path), "--tokens")
        token_errors = [line.removeprefix("livetok: warning: ") for line in err_t.splitlines()]
        assert code == code_j == code_t == 65, name
        assert table_errors == json.loads(out_j)["errors"] == token_errors and len(table_errors) == 1, name
        message = table_errors[0]
        assert message.startswith(f"{path}: offset "), message
        assert any(p.match(message) for p in lines), (name, message)
        why = message.split(": ", 2)[2].split("; ")[0]
        matched = [i for i, p in enumerate(whys) if p.match(why)]
        assert matched or name == "bad packet", (name, why)
        used_whys.update(matched)
    assert used_whys == set(range(len(whys)))  # every documented <why> does occur


# --- the JSON shapes and exit codes written in docs/cli.md and the README ----------------------


def documented_shape(marker: str) -> list[dict]:
    text = (DOCS / "cli.md").read_text()
    block = text.split(f"<!-- shape: {marker} -->", 1)[1].split("```", 2)[1].removeprefix("json\n")
    try:
        return [json.loads(block)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in block.splitlines() if line.strip()]


def keys(doc: object) -> object:
    """The shape of a JSON value: key sets, recursively (first element of lists)."""
    if isinstance(doc, dict):
        return {k: keys(v) for k, v in doc.items()}
    if isinstance(doc, list) and doc and isinstance(doc[0], dict | list):
        return [keys(doc[0])]
    return type(doc).__name__ if doc is not None else "null"


def test_probe_json_shape_is_the_documented_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (doc,) = documented_shape("probe-json")
    path = damaged_files(tmp_path)["crc"]
    _, out, _ = probe_out(capsys, str(path), "--json")
    assert keys(json.loads(out)) == keys(doc)


def test_probe_tokens_shapes_are_the_documented_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    documented = {d["kind"] + ("+positions" if "positions" in d else ""): keys(d) for d in
                  documented_shape("probe-tokens")}
    delta = TokenPacket("cam", Modality.VIDEO, Scale.COARSE, 3, 0, 33, Clock.UNIX, "c0ff5bee45950755", Flag.DELTA,
                        (7, 7), np.array([[5, 1000], [17, 2]], np.uint16), positions=np.array([3, 40], np.uint16))
    path = write(tmp_path / "shapes.ltk", [delta, step(0, (packet(7, 0, 20),), skew=5)])
    _, out, _ = probe_out(capsys, str(path), "--tokens")
    got = {d["kind"] + ("+positions" if "positions" in d else ""): keys(d) for d in map(json.loads, out.splitlines())}
    assert got == documented


def test_doctor_json_shape_is_the_documented_one(capsys: pytest.CaptureFixture[str]) -> None:
    (doc,) = documented_shape("doctor-json")
    capsys.readouterr()
    main(["doctor", "--json"])
    got = json.loads(capsys.readouterr().out)
    assert keys(got)["checks"] == keys(doc)["checks"] and set(got) == set(doc)


def test_every_exit_code_is_documented() -> None:
    codes = {cls.exit_code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.LivetokError)} | {0, 1, 130}
    cli = (DOCS / "cli.md").read_text()
    table = set(map(int, re.findall(r"^\| (\d+) \|", cli, re.M)))
    assert codes <= table, codes - table
    commands = README.read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    assert all(re.search(rf"\b{c}\b", commands) for c in codes), commands


# --- restarts: a new run of the daemon appending to its file is a discontinuity, not a gap -----------


def test_a_restart_is_counted_as_such_never_as_a_gap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: every stream of a file a restarted daemon appended to showed ``gaps 1``."""
    hour = 3600 * 10**9
    first = [packet(i, i * 20_000_000, (i + 1) * 20_000_000) for i in range(5)]
    # the new run: seq from 0 again, an hour later (the daemon was down), its first packet flagged
    second = [packet(i, hour + i * 20_000_000, hour + (i + 1) * 20_000_000,
                     flags=Flag.DISCONTINUITY if i == 0 else Flag.NONE) for i in range(5)]
    code, out, _ = probe_out(capsys, str(write(tmp_path / "restart.ltk", first + second)), "--json")
    (stream,) = json.loads(out)["streams"]
    assert code == 0 and (stream["gaps"], stream["restarts"], stream["packets"]) == (0, 1, 10)
    assert stream["rate_hz"] == 50.0  # within each run: the hour the daemon was down is not in it
    # a restart whose first packet is not flagged (seq back to 0 is the evidence), and one that is
    # flagged but lost its first packets (seq 2, below where the old run was)
    third = [packet(i, 2 * hour + i * 20_000_000, 2 * hour + (i + 1) * 20_000_000,
                    flags=Flag.DISCONTINUITY if i == 2 else Flag.NONE) for i in range(2, 4)]
    unflagged = [packet(i, hour + i * 20_000_000, hour + (i + 1) * 20_000_000) for i in range(5)]
    code, out, _ = probe_out(capsys, str(write(tmp_path / "two.ltk", first + unflagged + third)), "--json")
    (stream,) = json.loads(out)["streams"]
    assert (stream["gaps"], stream["restarts"]) == (0, 2)


def test_gaps_are_still_gaps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkts = [packet(0, 0, 20), packet(1, 20, 40), packet(3, 60, 80), packet(4, 80, 100, flags=Flag.GAP),
            packet(2, 100, 120)]  # skipped; flagged; went back without a restart's marks (not seq 0, no flag)
    code, out, _ = probe_out(capsys, str(write(tmp_path / "gaps.ltk", pkts)), "--json")
    (stream,) = json.loads(out)["streams"]
    assert code == 0 and (stream["gaps"], stream["restarts"]) == (3, 0)


def test_the_table_has_a_restarts_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkts = [packet(i, i * 20, i * 20 + 20) for i in range(3)] + [packet(0, 100, 120)]
    code, out, _ = probe_out(capsys, str(write(tmp_path / "t.ltk", pkts)))
    head, row = out.splitlines()
    assert code == 0 and head.split()[-3:] == ["gaps", "restarts", "codebook"]
    assert row.split()[-3:] == ["0", "1", "c0ff5bee45950755"]


@pytest.mark.slow
def test_a_daemon_restarted_onto_its_file_shows_restarts_not_gaps(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The case as found: `livetok run` twice onto one file sink (the second run appends)."""
    out = tmp_path / "run.ltk"
    for _ in range(2):
        assert main(["run", "--source", "synthetic", "--sink", f"file:{out}", "--duration", "1.5"]) == 0
    code, text, _ = probe_out(capsys, str(out), "--json")
    streams = json.loads(text)["streams"]
    assert code == 0 and len(streams) == 4
    assert all((s["gaps"], s["restarts"]) == (0, 1) for s in streams), streams


def test_probe_takes_a_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: `probe -c config.yaml FILE` was argparse's usage and exit 2, though every command takes -c."""
    path = write(tmp_path / "c.ltk", [packet(0, 0, 20)])
    cfg = tmp_path / "config.yaml"
    cfg.write_text("mqtt:\n  stats_interval_s: 2\n")
    code, out, err = probe_out(capsys, "-c", str(cfg), str(path), "--json")
    assert code == 0 and err == "" and json.loads(out)["streams"][0]["packets"] == 1
    cfg.write_text("mqtt:\n  stats_interval: 2\n")  # a configuration given is checked like any other
    code, _, err = probe_out(capsys, str(path), "-c", str(cfg))
    assert code == 78 and len(err.splitlines()) == 1 and "mqtt.stats_interval" in err
