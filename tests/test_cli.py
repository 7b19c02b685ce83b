"""The command line end to end: tokenize, probe, fit, and one-line errors for bad input."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage
from mediagen import ffmpeg

from livetok.cli import main
from livetok.wire import read_ltk

PROBE_KEYS = {"source", "modality", "scale", "stream", "packets", "rate_hz", "start_ns", "end_ns", "codebook_id",
              "gaps", "restarts"}
TOKEN_KEYS = {"kind", "source", "modality", "scale", "stream", "seq", "start_ns", "end_ns", "flags", "codes"}


def one_line_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and err.startswith("livetok: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)


@pytest.fixture(scope="module")
def clip_ltk(av_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ltk") / "clip.ltk"
    assert main(["tokenize", str(av_clip), "-o", str(out)]) == 0
    return out


def test_probe_json_has_the_documented_shape(clip_ltk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["probe", str(clip_ltk), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"streams", "errors"} and doc["errors"] == []
    streams = {(s["modality"], s["scale"]): s for s in doc["streams"]}
    assert set(streams) == {("audio", "fine"), ("audio", "coarse"), ("video", "fine"), ("video", "coarse")}
    for s in doc["streams"]:
        assert set(s) == PROBE_KEYS and s["source"] == "clip" and s["gaps"] == 0
    assert streams[("video", "fine")]["packets"] == 50 and streams[("video", "fine")]["rate_hz"] == 25.0
    assert streams[("audio", "fine")]["rate_hz"] == 50.0 and streams[("audio", "coarse")]["rate_hz"] == 12.5
    assert 2_000_000_000 <= streams[("audio", "fine")]["end_ns"] <= 2_100_000_000


def test_probe_tokens_one_object_per_packet(clip_ltk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["probe", str(clip_ltk), "--tokens"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(read_ltk(clip_ltk).packets)
    rows = [json.loads(line) for line in lines]
    assert all(set(r) == TOKEN_KEYS for r in rows)
    video = next(r for r in rows if r["modality"] == "video" and r["scale"] == "fine")
    assert len(video["codes"]) == 196 and len(video["codes"][0]) == 4 and video["flags"] == ["keyframe"]
    audio = next(r for r in rows if r["modality"] == "audio" and r["scale"] == "coarse")
    assert len(audio["codes"]) == 1 and len(audio["codes"][0]) == 2


def test_probe_table(clip_ltk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["probe", str(clip_ltk)]) == 0
    out = capsys.readouterr().out
    assert "video    fine" in out and "audio    coarse" in out


def test_still_image_and_audio_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "photo.png"
    skimage.io.imsave(png, skimage.data.astronaut())
    wav = tmp_path / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=700:sample_rate=8000:duration=1", str(wav))
    out = tmp_path / "both.ltk"
    assert main(["tokenize", str(png), str(wav), "-o", str(out)]) == 0
    packets = read_ltk(out).packets
    assert {(p.source, p.modality.name, p.scale.name) for p in packets} == {
        ("photo", "VIDEO", "FINE"), ("photo", "VIDEO", "COARSE"),
        ("tone", "AUDIO", "FINE"), ("tone", "AUDIO", "COARSE")}
    assert sum(1 for p in packets if p.source == "photo") == 2  # one frame, two scales


def test_truncated_ltk_keeps_good_packets(clip_ltk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = clip_ltk.read_bytes()
    cut = tmp_path / "cut.ltk"
    cut.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    code = main(["probe", str(cut), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code != 0 and len(doc["errors"]) == 1 and "trunc" in doc["errors"][0].lower()
    assert sum(s["packets"] for s in doc["streams"]) > 10


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated_media", "directory"])
def test_bad_media_inputs(kind: str, av_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "text":
        bad.write_text("this is not a video\n" * 20)
    elif kind == "truncated_media":
        bad.write_bytes(av_clip.read_bytes()[:600])
    elif kind == "directory":
        bad.mkdir()
    code = main(["tokenize", str(bad), "-o", str(tmp_path / "o.ltk")])
    one_line_error(capsys, code, str(bad))


def test_corrupt_media_is_tokenized_or_refused_in_one_line(
    av_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Garbage over the middle of the file: FFmpeg resynchronises, or livetok says why in one line."""
    data = bytearray(av_clip.read_bytes())
    rng = np.random.default_rng(5)
    mid = len(data) // 2
    data[mid : mid + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    out = tmp_path / "c.ltk"
    capsys.readouterr()
    code = main(["tokenize", str(bad), "-o", str(out)])
    if code == 0:
        assert len(read_ltk(out).packets) > 20 and "Traceback" not in capsys.readouterr().err
    else:
        one_line_error(capsys, code, str(bad))


def test_bad_ltk_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, data in (("empty.ltk", b""), ("text.ltk", b"hello world\n")):
        p = tmp_path / name
        p.write_bytes(data)
        one_line_error(capsys, main(["probe", str(p)]), name)
    one_line_error(capsys, main(["probe", str(tmp_path / "missing.ltk")]), "missing.ltk")


def test_mismatched_codebooks_and_bad_config(av_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tokenizer:\n  audio:\n    n_mels: 64\n")
    code = main(["tokenize", str(av_clip), "-o", str(tmp_path / "o.ltk"), "-c", str(cfg)])
    one_line_error(capsys, code, "n_mels=80", "n_mels=64")
    assert code == 65
    cfg.write_text("tokenizer:\n  audio:\n    n_mel: 64\n")
    code = main(["tokenize", str(av_clip), "-o", str(tmp_path / "o.ltk"), "-c", str(cfg)])
    one_line_error(capsys, code, "c.yaml:3", "tokenizer.audio.n_mel")
    assert code == 78


@pytest.mark.slow
def test_real_process_exit_codes(tmp_path: Path) -> None:
    """The installed console script, as a user runs it: no traceback, one line, non-zero."""
    r = subprocess.run([sys.executable, "-m", "livetok.cli", "tokenize", str(tmp_path / "nope.wav"), "-o",
                        str(tmp_path / "x.ltk")], capture_output=True, text=True, check=False)
    assert r.returncode == 66 and r.stderr.strip() == f"livetok: error: {tmp_path / 'nope.wav'}: no such file"


@pytest.mark.slow
def test_fit_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    media = tmp_path / "m"
    media.mkdir()
    skimage.io.imsave(media / "a.png", skimage.data.chelsea())
    cfg = tmp_path / "small.yaml"
    cfg.write_text("tokenizer:\n  video:\n    fine: {levels: 2, codebook_size: 32, dim: 8}\n"
                   "    coarse: {levels: 1, codebook_size: 16, dim: 8}\n")
    out = tmp_path / "cb.safetensors"
    assert main(["fit", str(media), "-o", str(out), "-c", str(cfg), "--iters", "2"]) == 0
    assert out.stat().st_size > 0 and "wrote codebooks" in capsys.readouterr().err
    np.testing.assert_equal(out.exists(), True)


# --- flag errors: one line and 78, like a bad flag value (not argparse's usage block and 2) -------------


def _commands() -> list[str]:
    from livetok.cli import _parser

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def flag_error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert code == 78 and captured.out == "", (code, err)
    assert err.count("\n") == 1 and err.startswith("livetok: error: ") and "usage:" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.mark.parametrize("command", _commands())
def test_every_commands_unknown_flag_is_one_line_78(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: exit 2 with argparse's usage block, though the documented code for flags is 78. (A
    command with a required argument names that first.)"""
    err = flag_error(capsys, [command, "--no-such-flag"], f"livetok: error: {command}: ", f"livetok {command} --help")
    assert "--no-such-flag" in err or "arguments are required" in err, err


@pytest.mark.parametrize(("argv", "needles"), [
    ([], ["required: COMMAND"]),
    (["tokenise", "a.mp4"], ["invalid choice: 'tokenise'"]),
    (["tokenize", "a.mp4"], ["tokenize: ", "required: -o/--output"]),
    (["probe"], ["probe: ", "FILE.ltk"]),
    (["probe", "x.ltk", "--json", "--tokens"], ["probe: ", "not allowed with"]),
    (["tail", "mqtt://127.0.0.1:1", "--count", "many"], ["tail: ", "--count", "'many'"]),
    (["record", "mqtt://127.0.0.1:1", "-o", "x.ltk", "--qos", "3"], ["record: ", "--qos", "invalid choice"]),
    (["fit", "media", "-o", "cb.safetensors", "--iters", "2.5"], ["fit: ", "--iters"]),
    (["demo", "--seconds", "six"], ["demo: ", "--seconds"]),
])
def test_flag_errors_are_one_line_78(argv: list[str], needles: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    flag_error(capsys, argv, *needles)


def test_flag_errors_as_a_user_sees_them(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "livetok.cli", "tokenize", "clip.mp4"], capture_output=True,
                       text=True, check=False, cwd=tmp_path)
    assert r.returncode == 78 and r.stdout == ""
    assert r.stderr == ("livetok: error: tokenize: the following arguments are required: -o/--output "
                        "(see livetok tokenize --help)\n")
    r = subprocess.run([sys.executable, "-m", "livetok.cli", "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "usage: livetok" in r.stdout  # asking for help is not an error


@pytest.mark.slow
def test_fit_tokenizer_says_which_key_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The last line of ``fit --tokenizer`` is whole: the key and the path to give it (was a dangling
    "name the file in its codebooks:"), or that the configuration names the file already."""
    wav = tmp_path / "noise.wav"
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=duration=3:seed=1", "-ar", "16000", str(wav))
    out = tmp_path / "spec.safetensors"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tokenizers:\n  - {name: audio, kind: logmel-rvq}\n"
                   "  - name: spec\n    kind: spectrogram-patches\n    modality: audio\n"
                   "    quantizer: {kind: rvq, levels: 1, codebook_size: 8, dim: 4}\n")
    assert main(["fit", "--tokenizer", "spec", str(wav), "-o", str(out), "-c", str(cfg), "--iters", "2"]) == 0
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("wrote codebooks ") and f"of tokenizer 'spec' to {out} (1 files); " in line
    assert line.endswith(f"to use them, set tokenizers.1.codebooks: {out.resolve()} ({cfg}:3)"), line
    cfg.write_text(cfg.read_text() + f"    codebooks: {out}\n")
    assert main(["fit", "--tokenizer", "spec", str(wav), "-o", str(out), "-c", str(cfg), "--iters", "2"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"; tokenizers.1.codebooks ({cfg}:3) names it "
                                                                       "already")


def test_after_an_interruption_finalizer_noise_is_not_for_the_user() -> None:
    """An interrupted command says one line; what a third-party object cut short by the signal says as
    it is finalized on the way out (an exception in a __del__, asyncio's "Task was destroyed") is not
    printed after it (seen once in CI: aiomqtt's task and paho's socket after a SIGHUP)."""
    code = (
        "import logging, signal, sys\n"
        "from livetok import cli\n"
        "from livetok.outputs import interrupts\n"
        "sys.exit_code = cli._interrupted(interrupts.Interrupted(signal.SIGHUP))\n"
        "class Sock:\n"
        "    def __del__(self):\n"
        "        raise RuntimeError('Event loop is closed')\n"
        "s = Sock()\n"
        "del s\n"
        "logging.getLogger('asyncio').error('Task was destroyed but it is pending!')\n"
        "sys.exit(sys.exit_code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (129, "livetok: interrupted (SIGHUP)\n")
