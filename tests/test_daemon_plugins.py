"""Plug-in tokenizers live in the daemon (issue 15): a TorchScript model (stateful, streaming, giving
codes) and an ONNX video model, exported here with small random weights, beside the built-in kinds on
one synthetic source, into a file sink; a model that raises on its Nth call is counted and its
stream flagged GAP while every other stream goes on."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from plugin_models import RaisesOnCall, export, seeded, stateful_io, stateful_model, video_model

from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking
from livetok.wire import Flag, Modality, TokenPacket, read_ltk

GRU_STEP = 10_000_000  # one 160-sample frame per step at 16 kHz (ns)


def config(tmp: Path, tokenizers: list[dict[str, Any]], out: Path) -> LivetokConfig:
    return LivetokConfig.model_validate({
        "tokenizers": [{"name": "audio", "kind": "logmel-rvq"}, {"name": "video", "kind": "patch-rvq"}, *tokenizers],
        "sources": [{"kind": "synthetic", "name": "syn", "size": "160x120", "fps": 10}],
        "sinks": [{"kind": "file", "path": str(out)}]})


def by_stream(packets: list[TokenPacket]) -> dict[tuple[str, str], list[TokenPacket]]:
    out: dict[tuple[str, str], list[TokenPacket]] = {}
    for p in packets:
        out.setdefault((p.modality.name.lower(), p.stream_name), []).append(p)
    return out


@pytest.mark.slow
def test_torchscript_and_onnx_streams_run_live_beside_the_builtin_ones(tmp_path: Path) -> None:
    gru = stateful_model(tmp_path, "torchscript")
    vq = video_model(tmp_path, "onnx", "codes")
    out = tmp_path / "out.ltk"
    cfg = config(tmp_path, [
        {"name": "gru", "kind": "torchscript", "modality": "audio",
         "model": {"path": str(gru), "io": stateful_io("torchscript", "codes")}},
        {"name": "vq", "kind": "onnx", "modality": "video", "model": {"path": str(vq)}}], out)
    report = run_blocking(cfg, 2.0)
    assert report.stopped_by == "duration"
    result = read_ltk(out)
    assert result.errors == []
    streams = by_stream([p for p in result.packets if isinstance(p, TokenPacket)])
    assert set(streams) == {("audio", "fine"), ("audio", "coarse"), ("video", "fine"), ("video", "coarse"),
                            ("audio", "gru"), ("video", "vq")}
    # Every stream numbered from 0, none repeated; a number missing from the file is a message the file
    # sink's queue dropped and counted (a loaded machine), never an uncounted one.
    holes = 0
    for ps in streams.values():
        seqs = [p.seq for p in ps]
        assert seqs[0] == 0 and all(b > a for a, b in itertools.pairwise(seqs)) and len(ps) > 3, seqs
        holes += seqs[-1] + 1 - len(seqs)
    assert holes <= sum(s["dropped"] + s["failed"] for s in report.accounting["sinks"].values()), report.accounting
    assert report.accounting["balanced"] == 1, report.accounting
    gru_ps = streams[("audio", "gru")]
    assert all(p.scale is None and p.stream == "gru" and p.grid == (1, 1) and p.codes.shape == (1, 2)
               for p in gru_ps)
    t0 = gru_ps[0].start_ns
    # On the step grid: the same media-time grid as the built-in fine stream (20 ms: every second step),
    # mapped by the same source clock (which slews a little at the start, so the UNIX steps are not all
    # exactly 10 ms), and numbered by it.
    fine_a = streams[("audio", "fine")]
    assert [p.start_ns for p in gru_ps[::2]][: len(fine_a) - 1] == [p.start_ns for p in fine_a][: len(gru_ps[::2])][
        : len(fine_a) - 1]
    # Between them, each odd step strictly inside its pair (a loaded machine's clock slews more at
    # the start: rounding UNIX times to 10 ms steps is not a test of the grid).
    odd = zip(gru_ps[0::2], gru_ps[1::2], gru_ps[2::2], strict=False)
    assert all(a.start_ns < b.start_ns < c.start_ns for a, b, c in odd)
    assert abs((gru_ps[-1].start_ns - t0) / (len(gru_ps) - 1) - GRU_STEP) < GRU_STEP * 0.1
    assert all(p.flags == Flag.KEYFRAME for p in gru_ps)
    vq_ps = streams[("video", "vq")]
    fine = streams[("video", "fine")]
    assert [p.start_ns for p in vq_ps] == [p.start_ns for p in fine[: len(vq_ps)]]  # the frames' own times
    assert all(p.grid == (4, 6) and p.codes.shape == (24, 1) and int(p.codes.max()) < 10 for p in vq_ps)
    books = report.accounting["captures"]["syn.video"]
    assert books["balanced"] == 1


CODES_IO = {"modality": "audio", "sample_rate": 16000, "input_name": "input", "output_name": "output",
            "output_layout": "BDT", "dim": 12, "hop": 160, "receptive_field": 400, "lookahead": 80,
            "frames_per_call": 4}


def probe_calls(tmp: Path) -> int:
    """How many calls the load probe makes (so that the Nth call is a live one)."""
    from livetok.tokenizers.models.audio import AudioModelEncoder
    from livetok.tokenizers.models.contract import ModelConfig

    path = export(seeded(RaisesOnCall, first=10**9), tmp / "count.pt", "torchscript", (torch.randn(2, 880),),
                  ["input"], ["output"], CODES_IO)
    enc = AudioModelEncoder.load("count", ModelConfig(path=path), "torchscript")
    return int(enc.runner._module.calls)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_a_model_that_raises_is_counted_and_its_stream_flagged_gap(tmp_path: Path) -> None:
    first = probe_calls(tmp_path) + 15  # live calls come 25 a second
    path = export(seeded(RaisesOnCall, first=first, count=3), tmp_path / "raises.pt", "torchscript",
                  (torch.randn(2, 880),),
                  ["input"], ["output"], CODES_IO)
    books = fit_codebooks(tmp_path, path)
    out = tmp_path / "out.ltk"
    cfg = config(tmp_path, [{"name": "conv", "kind": "torchscript", "modality": "audio", "codebooks": str(books),
                             "model": {"path": str(path), "batch": 1},
                             "quantizer": {"dim": 8, "codebook_size": 16}}], out)
    report = run_blocking(cfg, 2.5)
    assert report.stopped_by == "duration"
    streams = by_stream([p for p in read_ltk(out).packets if isinstance(p, TokenPacket)])
    conv = streams[("audio", "conv")]
    gaps = [p for p in conv if p.flags & Flag.GAP]
    assert len(gaps) == 1 and gaps[0].seq > 0  # the next packet after the failed calls, once
    assert [p.seq for p in conv] == list(range(len(conv)))
    counters = report.metrics["counters"]
    assert isinstance(counters, dict)
    assert counters.get("model_errors.conv") == 3 and counters.get("errors.model.conv") == 3
    # the per-stream counts (stats document, Prometheus) say what the file holds
    assert counters.get("packets.syn.audio.conv") == len(conv) and counters.get("gap_packets.syn.audio.conv") == 1
    series = report.metrics["series_ms"]
    assert isinstance(series, dict) and series["latency.emit.syn.audio.conv"]["n"] > 0
    fine = streams[("audio", "fine")]  # the other streams went on, whole
    assert [p.seq for p in fine] == list(range(len(fine))) and not any(p.flags & Flag.GAP for p in fine)
    assert fine[-1].end_ns - fine[0].start_ns > 1_500_000_000
    assert all(p.modality == Modality.AUDIO for p in conv)


def fit_codebooks(tmp: Path, model: Path) -> Path:
    """Codebooks for the conv model, fitted on noise through ``livetok fit --tokenizer``'s code path."""
    import numpy as np

    from livetok.tokenizers.models.audio import AudioModelEncoder
    from livetok.tokenizers.models.contract import ModelConfig
    from livetok.tokenizers.plugin_config import QuantizerConfig
    from livetok.tokenizers.quantizer_file import make_quantizer_set, save_quantizers
    from livetok.tokenizers.quantizers import fit_quantizer

    enc = AudioModelEncoder.load("conv", ModelConfig(path=model, batch=1), "torchscript")
    s = enc.stream("fit")
    noise = (np.random.default_rng(1).standard_normal(4800) * 0.2).astype(np.float32)  # 7 calls: before the Nth
    jobs = s.take(noise)
    frames = []
    for job, o in zip(jobs, enc.run(jobs), strict=True):
        s.settle(job, o)
        frames.append(o.frames)
    qs = make_quantizer_set("torchscript", enc.fitted_for(),
                            {"tokens": fit_quantizer(np.concatenate(frames), QuantizerConfig(dim=8, codebook_size=16))})
    path = tmp / "conv.safetensors"
    save_quantizers(qs, path)
    return path


@pytest.mark.slow
def test_fit_tokenizer_then_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``livetok fit --tokenizer`` writes a spectrogram-patches tokenizer's codebooks; the daemon then runs it.
    A model that gives codes has nothing to fit (said, exit 0, nothing written); an unknown name is 78."""
    import yaml
    from test_golden_tokens import make_inputs

    from livetok.cli import main

    _, wav = make_inputs(tmp_path)
    books = tmp_path / "sp.safetensors"
    gru = stateful_model(tmp_path, "torchscript")
    out = tmp_path / "out.ltk"
    doc = {"tokenizers": [{"name": "audio", "kind": "logmel-rvq"},
                          {"name": "sp", "kind": "spectrogram-patches", "modality": "audio", "codebooks": str(books),
                           "quantizer": {"codebook_size": 16, "dim": 8, "levels": 2, "iters": 3}},
                          {"name": "gru", "kind": "torchscript", "modality": "audio",
                           "model": {"path": str(gru), "io": stateful_io("torchscript", "codes")}}],
           "sources": [{"kind": "file", "name": "tone", "path": str(wav)}],
           "sinks": [{"kind": "file", "path": str(out)}]}
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(doc))
    assert main(["check-config", "-c", str(cfg_file)]) == 65  # the codebook file is not there yet
    assert "tokenizers.1.codebooks" in capsys.readouterr().err
    assert main(["fit", "--tokenizer", "sp", str(wav), "-o", str(books), "-c", str(cfg_file)]) == 0
    assert books.is_file()
    assert main(["fit", "--tokenizer", "gru", str(wav), "-o", str(tmp_path / "no.safetensors"), "-c",
                 str(cfg_file)]) == 0
    assert "nothing to fit" in capsys.readouterr().err and not (tmp_path / "no.safetensors").exists()
    assert main(["fit", "--tokenizer", "nope", str(wav), "-o", str(tmp_path / "x"), "-c", str(cfg_file)]) == 78
    assert main(["check-config", "-c", str(cfg_file)]) == 0
    assert "sp(spectrogram-patches, audio/sp," in capsys.readouterr().out
    from livetok.config import load_config

    report = run_blocking(load_config(cfg_file), 10.0)
    assert report.stopped_by.startswith("end of input")
    streams = by_stream([p for p in read_ltk(out).packets if isinstance(p, TokenPacket)])
    sp = streams[("audio", "sp")]
    # 2.5 s of audio in 80 ms steps, every sample in a step; 8 rows of patches, 2 levels
    assert [p.seq for p in sp] == list(range(32)) and all(p.grid == (8, 1) and p.codes.shape == (8, 2) for p in sp)
    assert len(streams[("audio", "gru")]) == 250 and len(streams[("audio", "fine")]) == 125


@pytest.mark.slow
def test_the_builtin_video_kind_runs_only_on_the_frames_of_sources_that_feed_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two cameras: `a` feeds patch-rvq, `b` only a plug-in. The built-in model sees a's frames, and
    none of b's (it used to encode every captured frame and throw b's codes away)."""
    from livetok.tokenizers.video import VideoTokenizer

    rows: list[int] = []
    real = VideoTokenizer.encode

    def counting(self: VideoTokenizer, images: Any, *args: Any, **kw: Any) -> Any:
        rows.append(len(images))
        return real(self, images, *args, **kw)

    monkeypatch.setattr(VideoTokenizer, "encode", counting)
    vq = video_model(tmp_path, "onnx", "codes")
    out = tmp_path / "out.ltk"
    cfg = LivetokConfig.model_validate({
        "tokenizers": [{"name": "audio", "kind": "logmel-rvq"}, {"name": "video", "kind": "patch-rvq"},
                       {"name": "vq", "kind": "onnx", "modality": "video", "model": {"path": str(vq)}}],
        "sources": [{"kind": "synthetic", "name": "a", "size": "160x120", "fps": 10, "tokenizers": ["video"]},
                    {"kind": "synthetic", "name": "b", "size": "160x120", "fps": 10, "tokenizers": ["vq"]}],
        "sinks": [{"kind": "file", "path": str(out)}]})
    report = run_blocking(cfg, 2.0)
    assert report.stopped_by == "duration"
    streams = by_stream([p for p in read_ltk(out).packets if isinstance(p, TokenPacket)])
    a_frames = [p for p in streams[("video", "fine")] if p.source == "a"]
    b_frames = [p for p in streams[("video", "vq")] if p.source == "b"]
    assert not any(p.source == "b" for p in streams[("video", "fine")])
    assert len(a_frames) > 5 and len(b_frames) > 5
    assert rows[0] == cfg.tokenizer.video.batch_size  # the warm-up
    assert sum(rows[1:]) == len(a_frames)  # b's frames never reached the built-in model


def test_the_bus_buffer_bounds_count_the_plugin_streams_a_source_sends() -> None:
    """buffer_s of what each source really sends: its plug-in streams (by their specs), and the built-in
    kinds' streams only when it feeds them."""
    from fractions import Fraction
    from types import SimpleNamespace

    from livetok.sinks.mqtt_setup import buffer_bounds
    from livetok.tokenizers.spec import StreamSpec

    def bounds(feeds: list[str]) -> tuple[int, int]:
        cfg = LivetokConfig.model_validate({
            "tokenizers": [{"name": "audio", "kind": "logmel-rvq"}, {"name": "video", "kind": "patch-rvq"},
                           {"name": "vq", "kind": "onnx", "modality": "video", "model": {"path": "vq.onnx"}},
                           {"name": "units", "kind": "onnx", "modality": "audio", "model": {"path": "u.onnx"}}],
            "sources": [{"kind": "synthetic", "name": "syn", "fps": 10, "tokenizers": feeds}],
            "mqtt": {"host": "127.0.0.1", "buffer_s": 60}})
        plugins = {"vq": SimpleNamespace(spec=StreamSpec("video", "vq", None, (16, 16), 2, 1024)),
                   "units": SimpleNamespace(spec=StreamSpec("audio", "units", Fraction(20_000_000), (1, 1), 1, 64))}
        return buffer_bounds(cfg, plugins)

    steps, audio = 12.5, 50 + 12.5  # aligned steps and the built-in audio streams, per second
    assert bounds(["audio", "vq"])[0] == int((10 + audio + steps) * 60)
    assert bounds(["audio", "vq", "units"])[0] == int((10 + audio + 50 + steps) * 60)
    assert bounds(["audio", "video"])[0] == int((2 * 10 + audio + steps) * 60)
    # bytes: 10 frames/s of 256 cells x 2 levels x 2 bytes (+96), twice (packets and steps), x 1.25
    with_vq, without = bounds(["audio", "vq", "units"])[1], bounds(["audio", "units"])[1]
    assert with_vq - without == pytest.approx(2 * 10 * (256 * 2 * 2 + 96) * 60 * 1.25, abs=2)
