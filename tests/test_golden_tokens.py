"""Today's default tokens, bit for bit: the codes, sequence numbers, flags and times that `livetok tokenize`
gives for a fixed input with the default configuration (the packaged codebooks). Any change to the
tokenizers' plumbing (issue 15 moves the built-in tokenizers behind a plug-in interface) must keep them.

Two goldens: tests/golden/greedy_tokens.npz, the tokens of the greedy video encoder (``beam: 1`` at both
scales), which is the default_tokens.npz of before the coarse beam, byte for byte; and
tests/golden/default_tokens.npz, today's defaults (coarse ``beam: 4``): only the video coarse codes differ.

The input is lossless and made here from seeded NumPy data, so nothing but livetok decides the tokens:
2 s of 160x120 RGB video at 10 fps in a NUT file (raw RGB frames) and 2.5 s of 16 kHz PCM in a WAV file.
``LIVETOK_GOLDEN=write`` rewrites both (only when the tokens are meant to change: say so in the commit).
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

from livetok.cli import main
from livetok.wire import TokenPacket, read_ltk

GOLDEN = Path(__file__).parent / "golden" / "default_tokens.npz"
GREEDY = Path(__file__).parent / "golden" / "greedy_tokens.npz"
GREEDY_CONFIG = "tokenizer:\n  video:\n    fine: {beam: 1}\n    coarse: {beam: 1}\n"


def make_inputs(tmp: Path) -> list[Path]:
    rng = np.random.default_rng(20261203)
    video = tmp / "clip.nut"
    with av.open(str(video), "w") as out:
        s = out.add_stream("rawvideo", rate=10)
        s.width, s.height, s.pix_fmt = 160, 120, "rgb24"
        base = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        for i in range(20):
            img = np.roll(base, 4 * i, axis=1)
            img[40:80, 8 * i : 8 * i + 30] = (255, 32, 32)  # a moving red block
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    audio = tmp / "tone.wav"
    t = np.arange(40_000) / 16_000
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with av.open(str(audio), "w") as out:
        a = out.add_stream("pcm_s16le", rate=16_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16_000, 0
        for pkt in a.encode(frame):
            out.mux(pkt)
        for pkt in a.encode():
            out.mux(pkt)
    return [video, audio]


def table(packets: list[TokenPacket]) -> dict[str, np.ndarray]:
    """Per stream: seq, flags, start, end, grid and the codes of every packet, concatenated."""
    out: dict[str, np.ndarray] = {}
    streams: dict[str, list[TokenPacket]] = {}
    for p in packets:
        streams.setdefault(f"{p.source}.{p.modality.name.lower()}.{p.stream_name}", []).append(p)
    for key, ps in sorted(streams.items()):
        out[f"{key}.head"] = np.array([[p.seq, int(p.flags), p.start_ns, p.end_ns, *p.grid, p.codes.shape[0]]
                                       for p in ps], np.int64)
        out[f"{key}.codes"] = np.concatenate([p.codes.reshape(-1) for p in ps]).astype(np.uint16)
        out[f"{key}.codebook"] = np.array([p.codebook_id for p in ps])
    return out


def tokens(tmp: Path, *config: str) -> dict[str, np.ndarray]:
    out = tmp / "out.ltk"
    assert main(["tokenize", *map(str, make_inputs(tmp)), "-o", str(out), *config]) == 0
    return table([p for p in read_ltk(out).packets if isinstance(p, TokenPacket)])


def check(got: dict[str, np.ndarray], golden: Path) -> None:
    if os.environ.get("LIVETOK_GOLDEN") == "write":
        golden.parent.mkdir(exist_ok=True)
        np.savez_compressed(golden, **got)
    want = dict(np.load(golden))
    assert sorted(got) == sorted(want)
    for key in sorted(want):
        assert np.array_equal(got[key], want[key]), key


def test_the_default_tokens_are_what_they_were(tmp_path: Path) -> None:
    check(tokens(tmp_path), GOLDEN)


def test_the_greedy_encoder_gives_the_tokens_of_before_the_beam(tmp_path: Path) -> None:
    config = tmp_path / "greedy.yaml"
    config.write_text(GREEDY_CONFIG)
    check(tokens(tmp_path, "-c", str(config)), GREEDY)


def test_the_goldens_differ_in_the_video_coarse_codes_only() -> None:
    greedy, default = dict(np.load(GREEDY)), dict(np.load(GOLDEN))
    assert sorted(greedy) == sorted(default)
    differ = [k for k in sorted(greedy) if not np.array_equal(greedy[k], default[k])]
    assert differ == [k for k in sorted(greedy) if k.endswith(".video.coarse.codes")] and differ
