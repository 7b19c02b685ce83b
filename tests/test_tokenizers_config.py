"""The ``tokenizers:`` list (issue 15): both spellings, what a source feeds, refusals with the key and
its line, and the exit codes ``check-config`` gives (78 configuration, 65 model or codebook file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from livetok.cli import main
from livetok.config import load_config
from livetok.config.tokenizers import LogMelRvqTokenizer, PatchRvqTokenizer, PluginTokenizer
from livetok.errors import ConfigError, ModelError
from livetok.tokenizers.registry import check_plugins, load_plugins


def write(tmp: Path, text: str) -> Path:
    p = tmp / "config.yaml"
    p.write_text(text)
    return p


LIST = """\
tokenizers:
  - name: audio
    kind: logmel-rvq
    n_mels: 80
  - name: video
    kind: patch-rvq
    size: 224
  - name: units
    kind: onnx
    modality: audio
    model: {path: MODEL}
"""


def test_todays_section_means_the_two_builtin_entries(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "tokenizer:\n  audio:\n    n_mels: 64\n"))
    audio, video = cfg.tokenizer_entries()
    assert isinstance(audio, LogMelRvqTokenizer) and audio.name == "audio" and audio.n_mels == 64
    assert isinstance(video, PatchRvqTokenizer) and video.name == "video"
    assert cfg.plugin_entries() == []


def test_the_list_gives_the_builtin_settings_and_survives_a_round_trip(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, LIST.replace("n_mels: 80", "n_mels: 64").replace("size: 224", "size: 192")))
    assert cfg.tokenizer.audio.n_mels == 64 and cfg.tokenizer.video.size == 192
    [(i, units)] = cfg.plugin_entries()
    assert i == 2 and isinstance(units, PluginTokenizer) and units.stream_name == "units"
    assert units.options == {"model": {"path": "MODEL"}}
    assert type(cfg).model_validate(cfg.model_dump()) == cfg  # what --source flags do to a config


def test_a_source_feeds_every_tokenizer_of_its_modalities_or_those_it_names(tmp_path: Path) -> None:
    text = LIST + "sources:\n  - {kind: synthetic, name: syn}\n  - {kind: mic, name: m, tokenizers: [units]}\n"
    cfg = load_config(write(tmp_path, text))
    assert [e.name for e in cfg.tokenizers_of("syn", "audio")] == ["audio", "units"]
    assert [e.name for e in cfg.tokenizers_of("syn", "video")] == ["video"]
    assert [e.name for e in cfg.tokenizers_of("m", "audio")] == ["units"]


@pytest.mark.parametrize(("text", "where"), [
    ("tokenizer: {}\n" + LIST, r":2: tokenizers: give the tokenizer: section \(line 1\) or the tokenizers: list"),
    (LIST + "  - {name: units, kind: onnx, modality: audio}\n", r":1: tokenizers: tokenizer names must be unique"),
    (LIST + "  - {name: fine, kind: onnx, modality: audio}\n", r":12: tokenizers.3.name: .* 'fine': fine and"),
    (LIST + "  - {name: a2, kind: logmel-rvq}\n", r"tokenizers 'audio' and 'a2' are both logmel-rvq"),
    (LIST + "  - {name: x, kind: onnx, modality: audio, stream: meta}\n", r":12: tokenizers.3.stream: .*meta topic"),
    (LIST.replace("n_mels: 80", "n_melz: 80"), r":4: tokenizers.0.n_melz: unknown key"),
    (LIST + "sources:\n  - kind: mic\n    name: m\n    tokenizers: [nope]\n",
     r":15: sources.0.tokenizers: 'nope' is not a configured tokenizer \(audio, video, units\)"),
    (LIST + "sources:\n  - kind: mic\n    name: m\n    tokenizers: [video]\n",
     r":15: sources.0.tokenizers: 'video' is a video tokenizer, and mic source 'm' has no video"),
    (LIST + "  - {name: u2, kind: onnx, modality: audio, stream: units}\nsources:\n  - {kind: mic, name: m}\n",
     r":12: tokenizers.3.stream: tokenizers 'units' and 'u2' both give an audio stream named 'units': the daemon "
     r"has one vocabulary"),
    # whichever sources they feed: every source's meta carries the daemon's one vocabulary
    (LIST + "  - {name: u2, kind: onnx, modality: audio, stream: units}\nsources:\n"
     "  - {kind: mic, name: m, tokenizers: [units]}\n  - {kind: mic, name: n, tokenizers: [u2]}\n",
     r":12: tokenizers.3.stream: tokenizers 'units' and 'u2' both give an audio stream named 'units'"),
])
def test_refusals_name_the_key_and_its_line(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(("extra", "where"), [
    ("  - {name: x, kind: nope, modality: audio}\n", r":12: tokenizers.3.kind: unknown tokenizer kind 'nope'"),
    ("  - {name: x, kind: spectrogram-patches, modality: video}\n",
     r":12: tokenizers.3.modality: a spectrogram-patches tokenizer is audio, not video"),
    ("  - name: x\n    kind: spectrogram-patches\n    modality: audio\n    patch_mels: 999\n",
     r":15: tokenizers.3.patch_mels: .*less than or equal to 256"),
    ("  - name: x\n    kind: torchscript\n    modality: audio\n    model:\n      path: m.pt\n      batch: 0\n",
     r":17: tokenizers.3.model.batch: .*greater than or equal to 1"),
])
def test_plugin_options_are_checked_by_their_kind_with_lines(tmp_path: Path, extra: str, where: str) -> None:
    cfg = load_config(write(tmp_path, LIST + extra))
    with pytest.raises(ConfigError, match=where):
        check_plugins(cfg)


def test_a_missing_model_file_is_65_at_check_config_naming_the_key(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, LIST.replace("MODEL", str(tmp_path / "absent.onnx")))
    with pytest.raises(ModelError, match=r":11: tokenizers.2.model.path: tokenizer 'units': .*absent.onnx: no such"):
        load_plugins(load_config(p))
    assert main(["check-config", "-c", str(p)]) == 65
    err = capsys.readouterr().err
    assert "tokenizers.2.model.path" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_bad_option_is_78_at_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, LIST.replace("model: {path: MODEL}", "model: {path: MODEL, batch: 0}"))
    assert main(["check-config", "-c", str(p)]) == 78
    assert "tokenizers.2.model.batch" in capsys.readouterr().err


def test_a_codebook_error_names_the_tokenizer_once(tmp_path: Path) -> None:
    """Codebooks fitted for another model, kind or size: the quantizer's line already names the
    tokenizer; the located line (check-config, the start) said it twice before
    (``tokenizers.2.codebooks: tokenizer 'units': tokenizer 'units': codebooks ...``)."""
    from livetok.errors import CodebookError
    from livetok.tokenizers.registry import located

    cfg = load_config(write(tmp_path, LIST.replace("model: {path: MODEL}", "model: {path: MODEL}\n    codebooks: c")))
    err = located(cfg, 2, "units", CodebookError("tokenizer 'units': codebooks c were fitted for another model"))
    assert str(err) == (f"{tmp_path / 'config.yaml'}:12: tokenizers.2.codebooks: tokenizer 'units': codebooks c "
                        "were fitted for another model")
    err = located(cfg, 2, "units", CodebookError("codebook file not found: c"))  # a line without the name
    assert str(err) == (f"{tmp_path / 'config.yaml'}:12: tokenizers.2.codebooks: tokenizer 'units': codebook file "
                        "not found: c")
