"""One source through a plug-in audio tokenizer (the engine's PluginAudioTrack): mono input at the
model's rate is taken as it is (as the built-in path does; libswresample's copy of it cost about
40 us a block, most of the daemon's own cost per batch), and any blocking of it gives the packets
of one block. A stateful TorchScript model giving codes, exported here with random weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from plugin_models import StatelessConv, export, seeded, stateful_io, stateful_model

from livetok.config import LivetokConfig
from livetok.tokenizers.plugin_track import PluginAudioTrack, run_tokenizer
from livetok.tokenizers.registry import load_plugins
from livetok.wire import TokenPacket


def packets(track: PluginAudioTrack, x: np.ndarray, cuts: list[int]) -> list[TokenPacket]:
    plugin = track.plugin
    out: list[TokenPacket] = []
    for a, b in zip([0, *cuts], [*cuts, x.size], strict=True):
        jobs = track.take(x[None, a:b], 16000, a * 62_500)
        got, err = run_tokenizer(plugin, [(track, j) for j in jobs])
        assert err is None
        out += [p for ps in got for p in ps]
    got, err = run_tokenizer(plugin, [(track, j) for j in track.end()])
    assert err is None
    return out + [p for ps in got for p in ps]


def test_mono_at_the_model_rate_skips_the_resampler_and_any_blocking_is_one_block(tmp_path: Path) -> None:
    gru = stateful_model(tmp_path, "torchscript")
    cfg = LivetokConfig.model_validate({"tokenizers": [
        {"name": "gru", "kind": "torchscript", "modality": "audio",
         "model": {"path": str(gru), "io": stateful_io("torchscript", "codes")}}]})
    plugin = load_plugins(cfg)["gru"]
    x = (np.random.default_rng(5).standard_normal(16000) * 0.3).astype(np.float32)
    whole = packets(PluginAudioTrack(plugin, "mic"), x, [])
    track = PluginAudioTrack(plugin, "mic")
    cuts = sorted(np.random.default_rng(6).choice(np.arange(1, x.size), 40, replace=False).tolist())
    blocked = packets(track, x, cuts)
    assert track.resampler.samples_out == 0  # never through libswresample
    assert len(whole) == 100 and [p.seq for p in blocked] == list(range(100))
    assert [(p.start_ns, p.end_ns, p.flags, p.codes.tobytes()) for p in blocked] == [
        (p.start_ns, p.end_ns, p.flags, p.codes.tobytes()) for p in whole]
    # two channels still go through libswresample (the downmix)
    stereo = PluginAudioTrack(plugin, "mic3")
    jobs = stereo.take(np.stack([x, x]), 16000, 0)
    run_tokenizer(plugin, [(stereo, j) for j in jobs])
    assert stereo.resampler.samples_out > 0


class ConvCodes(StatelessConv):
    """A stateless model giving codes (one per 10 ms frame), so that nothing needs fitting."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.encode(input)[:, 0, :].gt(0).to(torch.int64)


CONV_CODES_IO = {"modality": "audio", "sample_rate": 16000, "input_name": "input", "output_name": "output",
                 "output": "codes", "output_layout": "BT", "dim": 1, "codebook_size": 2, "hop": 160,
                 "receptive_field": 400, "lookahead": 80, "frames_per_call": 4}


def test_the_resamplers_tail_ends_the_stream_whatever_its_length(tmp_path: Path) -> None:
    """48 kHz stereo through libswresample: ``end()`` takes the samples its filter still held, then
    pads. When those completed a call the stream had jobs in flight at its flush, which raised
    RuntimeError (a stateful and a stateless model alike: 16 and 32 of these 640 lengths); the engine
    then lost the whole call's packets, every source's. Now every length ends with every received
    sample in a step, numbered without a hole."""
    conv = export(seeded(ConvCodes), tmp_path / "conv.pt", "torchscript", (torch.randn(2, 880),), ["input"],
                  ["output"], CONV_CODES_IO)
    gru = stateful_model(tmp_path, "torchscript")
    cfg = LivetokConfig.model_validate({"tokenizers": [
        {"name": "conv", "kind": "torchscript", "modality": "audio", "model": {"path": str(conv)}},
        {"name": "gru", "kind": "torchscript", "modality": "audio",
         "model": {"path": str(gru), "io": stateful_io("torchscript", "codes")}}]})
    x = (np.random.default_rng(0).standard_normal((2, 8000)) * 0.1).astype(np.float32)
    for plugin in load_plugins(cfg).values():
        for n in range(6000, 6000 + 1920, 3):  # one call's advance at 48 kHz
            track = PluginAudioTrack(plugin, "mic")
            got, err = run_tokenizer(plugin, [(track, j) for j in track.take(x[:, :n], 48000, 0)])
            assert err is None
            ends, err = run_tokenizer(plugin, [(track, j) for j in track.end()])
            assert err is None
            ps = [p for g in got + ends for p in g]
            assert [p.seq for p in ps] == list(range(len(ps))), (plugin.name, n)
            assert ps[-1].end_ns >= n * 10**9 // 48000 > ps[-1].start_ns, (plugin.name, n)
