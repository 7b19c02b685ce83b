"""``livetok tokenize -c CONFIG`` with plug-in tokenizers (issue 15): the file's plug-in streams are those
``livetok run`` makes from the same file (codes, sequence numbers, flags, media times), whatever the
blocks each path cuts the audio into; only the kinds the configuration names run (as in the daemon, a
`tokenizers:` list without `logmel-rvq` has no built-in audio streams); a model that fails mid-file
is one line, exit 65, and the output is left as it was.

Before the fix, ``tokenize`` ran the built-in kinds only and said nothing: the plug-in streams were
silently missing from a file it reported as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from plugin_models import RaisesOnCall, export, seeded, stateful_io, stateful_model, video_model

import livetok.pipeline.plugins as plugins_mod
from livetok.cli import main
from livetok.config import load_config
from livetok.daemon.main import run_blocking
from livetok.wire import TokenPacket, read_ltk

Key = tuple[str, str]


def by_stream(packets: list[Any]) -> dict[Key, list[TokenPacket]]:
    out: dict[Key, list[TokenPacket]] = {}
    for p in packets:
        if isinstance(p, TokenPacket):
            out.setdefault((p.modality.name.lower(), p.stream_name), []).append(p)
    return out


def write_config(tmp: Path, clip: Path, out: Path, builtin_audio: bool = True) -> Path:
    gru = stateful_model(tmp, "torchscript")
    vq = video_model(tmp, "onnx", "codes")
    tokenizers: list[dict[str, Any]] = [{"name": "video", "kind": "patch-rvq"}]
    if builtin_audio:
        tokenizers.insert(0, {"name": "audio", "kind": "logmel-rvq"})
    tokenizers += [
        {"name": "gru", "kind": "torchscript", "modality": "audio",
         "model": {"path": str(gru), "io": stateful_io("torchscript", "codes")}},
        {"name": "vq", "kind": "onnx", "modality": "video", "model": {"path": str(vq)}}]
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump({"tokenizers": tokenizers,
                                    "sources": [{"kind": "file", "name": "clip", "path": str(clip)}],
                                    "sinks": [{"kind": "file", "path": str(out)}]}))
    return path


@pytest.mark.slow
def test_tokenize_gives_the_plugin_streams_the_daemon_gives(av_clip: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    live, offline = tmp_path / "live.ltk", tmp_path / "offline.ltk"
    cfg = write_config(tmp_path, av_clip, live)
    assert main(["tokenize", "-c", str(cfg), str(av_clip), "-o", str(offline)]) == 0
    err = capsys.readouterr().err
    assert "clip audio gru: " in err and "clip video vq: " in err, err

    made: list[TokenPacket] = []  # the daemon's plug-in packets as its engine made them, in media time
    real = plugins_mod.run_tokenizer

    def recorded(*args: Any) -> Any:
        packets, error = real(*args)
        assert error is None, error
        made.extend(p for ps in packets for p in ps)
        return packets, error

    monkeypatch.setattr(plugins_mod, "run_tokenizer", recorded)
    report = run_blocking(load_config(cfg), 30.0)
    assert report.stopped_by != "duration"  # the clip played to its end

    a, b = by_stream(read_ltk(offline).packets), by_stream(made)
    assert {("audio", "gru"), ("video", "vq")} <= a.keys()
    assert a.keys() == by_stream(read_ltk(live).packets).keys()
    for key in (("audio", "gru"), ("video", "vq")):
        assert len(a[key]) == len(b[key]) > 10, key
        for p, q in zip(a[key], b[key], strict=True):
            assert (p.seq, p.flags, p.grid, p.start_ns, p.end_ns, p.codebook_id) == (
                q.seq, q.flags, q.grid, q.start_ns, q.end_ns, q.codebook_id), (key, p.seq)
            assert np.array_equal(p.codes, q.codes), (key, p.seq)
    # 2 s of AAC (with its codec's padding) in 10 ms steps, every sample in a step; 50 frames
    assert 200 <= len(a[("audio", "gru")]) <= 203 and len(a[("video", "vq")]) == 50


@pytest.mark.slow
def test_tokenize_runs_only_the_kinds_the_configuration_names(av_clip: Path, tmp_path: Path) -> None:
    offline = tmp_path / "offline.ltk"
    cfg = write_config(tmp_path, av_clip, tmp_path / "live.ltk", builtin_audio=False)
    assert main(["tokenize", "-c", str(cfg), str(av_clip), "-o", str(offline)]) == 0
    assert set(by_stream(read_ltk(offline).packets)) == {("video", "fine"), ("video", "coarse"), ("audio", "gru"),
                                                         ("video", "vq")}


CODES_IO = {"modality": "audio", "sample_rate": 16000, "input_name": "input", "output_name": "output",
            "output": "codes", "output_layout": "BT", "dim": 1, "codebook_size": 4, "hop": 160,
            "receptive_field": 400, "lookahead": 80, "frames_per_call": 4}


@pytest.mark.slow
def test_a_model_failing_mid_file_is_one_line_65_and_no_output(speech_wav: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    model = export(seeded(RaisesOnCall, first=30, codes=True), tmp_path / "raises.pt", "torchscript",
                   (torch.randn(2, 880),), ["input"], ["output"], CODES_IO)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"tokenizers": [{"name": "bad", "kind": "torchscript", "modality": "audio",
                                                   "model": {"path": str(model), "batch": 1}}]}))
    out = tmp_path / "out.ltk"
    out.write_bytes(b"before")
    assert main(["tokenize", "-c", str(cfg), str(speech_wav), "-o", str(out)]) == 65
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("livetok: error: tokenizer 'bad': the model raised: "), err
    assert "model failure on purpose" in err
    assert out.read_bytes() == b"before" and sorted(p.name for p in tmp_path.iterdir()) == [
        "config.yaml", "out.ltk", "raises.pt"]
