"""The numbers and names the docs quote are the code's (issue 14 §4: docs that match the code)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from livetok.vocab import Vocabulary
from livetok.wire import AlignedStep, Clock, Flag, Modality, Scale, StepFlag, TokenPacket

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
GOLDEN = Path(__file__).parent / "golden" / "default_tokens.npz"


def doc(name: str) -> str:
    return (DOCS / name).read_text()


def _packet(vocab: Vocabulary, modality: Modality, scale: Scale, flags: int) -> TokenPacket:
    shape = vocab.stream(modality, scale).shape
    cells = shape.grid[0] * shape.grid[1]
    return TokenPacket("cam", modality, scale, 0, 0, 1, Clock.UNIX, vocab.codebook_id, Flag(flags), shape.grid,
                       np.zeros((cells, shape.levels), np.uint16))


def test_the_typical_step_sizes_in_vocab_md_are_what_flatten_gives() -> None:
    """A step of 4 fine + 1 coarse audio packets and one or two frames, each packet with the flags
    today's tokenizers give it (the golden tokens: audio packets and a keyframe's video packets)."""
    golden = dict(np.load(GOLDEN))
    audio_flags = {int(f) for k in ("tone.audio.fine.head", "tone.audio.coarse.head") for f in golden[k][1:, 1]}
    video_key = int(golden["clip.video.fine.head"][0, 1])
    assert len(audio_flags) == 1  # every audio packet after the first carries the same flags
    (a,) = audio_flags
    vocab = Vocabulary.from_codebook_file()
    audio = [_packet(vocab, Modality.AUDIO, Scale.FINE, a)] * 4 + [_packet(vocab, Modality.AUDIO, Scale.COARSE, a)]
    frame = [_packet(vocab, Modality.VIDEO, sc, video_key) for sc in (Scale.FINE, Scale.COARSE)]
    sizes = [len(vocab.flatten(AlignedStep("cam", 0, 0, 80_000_000, Clock.UNIX, None, StepFlag(0),
                                           tuple(audio + frame * n)))) for n in (1, 2)]
    text = " ".join(doc("vocab.md").split())
    one = re.search(r"A typical 80 ms step .*? is \*\*(\d+)\*\* ids", text)
    two = re.search(r"most steps hold two frames, \*\*(\d+)\*\* ids", text)
    assert one and two
    assert [int(one.group(1)), int(two.group(1))] == sizes


def test_vocab_md_names_the_packaged_codebooks_and_their_ranges() -> None:
    vocab = Vocabulary.from_codebook_file()
    text = doc("vocab.md")
    assert f"For the packaged codebooks (`{vocab.codebook_id}`" in text
    rows = re.findall(r"^\| (\d+)(?: – (\d+))? \| `([a-z/0-9]+)`", text, re.M)
    ranges = {r["name"]: (r["start"], r["start"] + r["size"] - 1) for r in vocab.to_dict()["ranges"]}
    assert len(rows) == len([n for n in ranges if not n.startswith("<")]) == 16
    for first, last, name in rows:
        assert ranges[name] == (int(first), int(last or first)), name
    assert f"Size: **{vocab.size}**" in text


def test_the_meta_examples_name_the_packaged_codebooks() -> None:
    packaged = Vocabulary.from_codebook_file().codebook_id
    for name in ("bus.md", "cli.md"):
        # A named stream's example (scale null) names its own tokenizer's codebooks, not the packaged ones.
        text = doc(name)
        ids = {m.group(1) for m in re.finditer(r'"codebook_id": "([0-9a-f]{16})"', text)
               if re.findall(r'"scale": (\w+|"\w+")', text[max(0, m.start() - 300):m.start()])[-1:] != ["null"]}
        assert ids == {packaged}, (name, ids)


def test_bus_md_counts_the_network_cut_tests_faults() -> None:
    test = (REPO / "tests" / "test_bus_publisher.py").read_text()
    cuts, holes = re.search(r'assert cycles == \{"cut": (\d+), "hole": (\d+)\}', test).groups()  # type: ignore[union-attr]
    assert f"| {cuts} cuts + {holes} black holes:" in doc("bus.md")


def test_performance_md_sections_are_numbered_in_order_and_references_land() -> None:
    text = doc("performance.md")
    numbers = [int(n) for n in re.findall(r"^## (\d+)\. ", text, re.M)]
    assert numbers == list(range(1, len(numbers) + 1))
    unnumbered = re.findall(r"^## (?!\d)(.*)$", text, re.M)
    assert unnumbered == ["Machine and method", "Summary"]  # the preamble only
    refs = [int(n) for d in DOCS.glob("*.md") for n in re.findall(
        r"performance\.md, section (\d+)", " ".join(d.read_text().split()))]
    refs += [int(n) for n in re.findall(r"(?<!issue 16 )section (\d+)", " ".join(text.split()))]
    assert refs and set(refs) <= set(numbers)
    heading = dict(re.findall(r"^## (\d+)\. (.*)$", text, re.M))
    assert heading["12"].startswith("Picture per bit") and heading["7"].startswith("Fitting memory")


def _block(text: str, marker: str) -> str:
    """The fenced code block right after ``<!-- marker -->``."""
    m = re.search(rf"<!-- {marker} -->\n```[a-z]*\n(.*?)\n```", text, re.S)
    assert m is not None, marker
    return m.group(1)


@pytest.mark.slow
def test_bring_your_own_tokenizer_steps_1_to_3_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """docs/tokenizers.md's example: its export code, its configuration, fit and check-config, as a
    user copies them (relative paths, from the configuration's directory); the consuming code compiles
    and names what the client gives."""
    from mediagen import ffmpeg

    from livetok.cli import main
    from livetok.client import Message

    text = doc("tokenizers.md")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "export.py").write_text(_block(text, "byot-export") + "\n")
    subprocess.run([sys.executable, "export.py"], check=True, timeout=120)  # as a user runs it (TorchScript
    # reads the module's source: not from exec)
    (tmp_path / "config.yaml").write_text(_block(text, "byot-config") + "\n")
    (tmp_path / "speech").mkdir()
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=duration=3:seed=2:amplitude=0.3", "-ar", "16000", "speech/a.wav")
    assert main(["fit", "--tokenizer", "units", "speech", "-o", "units.safetensors", "-c", "config.yaml"]) == 0
    assert capsys.readouterr().err.strip().endswith("tokenizers.1.codebooks (config.yaml:3) names it already")
    assert main(["check-config", "-c", "config.yaml"]) == 0
    assert "units(torchscript, audio/units, " in capsys.readouterr().out
    consume = _block(text, "byot-consume")
    compile(consume, "byot-consume", "exec")
    assert {"instance", "step"} <= set(Message.__dataclass_fields__)
