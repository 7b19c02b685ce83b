"""One source through a plug-in audio tokenizer (the engine's PluginAudioTrack): mono input at the
model's rate is taken as it is (as the built-in path does; libswresample's copy of it cost about
40 us a block, most of the daemon's own cost per batch), and any blocking of it gives the packets
of one block. A stateful TorchScript model giving codes, exported here with random weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from plugin_models import stateful_io, stateful_model

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
