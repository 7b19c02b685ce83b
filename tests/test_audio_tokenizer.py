"""Audio tokenizer: streaming parity for any chunking, latency, timestamps, formats."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mediagen import ffmpeg

from livetok.commands.tokenize import TokenizeReport, tokenize_file
from livetok.tokenizers import Tokenizers
from livetok.wire import Flag, Scale, TokenPacket

RATE = 16000
RNG = np.random.default_rng(7)
# Speech-like test signal: noise shaped by a slow envelope plus two tones, 1.5 s.
T = np.arange(int(1.5 * RATE)) / RATE
SIGNAL = (0.2 * np.sin(2 * np.pi * 220 * T) + 0.1 * np.sin(2 * np.pi * 1800 * T)
          + 0.05 * RNG.standard_normal(T.size) * (1 + np.sin(2 * np.pi * 3 * T))).astype(np.float32)
STEREO_44K = (0.1 * RNG.standard_normal((2, 44100))).astype(np.float32)


def key(p: TokenPacket) -> tuple[int, int]:
    return (int(p.scale), p.seq)


def by_step(packets: list[TokenPacket]) -> list[TokenPacket]:
    return sorted(packets, key=key)


def run_chunks(toks: Tokenizers, x: np.ndarray, cuts: list[int], rate: int = RATE) -> list[TokenPacket]:
    stream = toks.audio.stream("a")
    out: list[TokenPacket] = []
    bounds = [0, *sorted({c for c in cuts if 0 < c < x.shape[-1]}), x.shape[-1]]
    for lo, hi in itertools.pairwise(bounds):
        chunk = x[..., lo:hi]
        out += stream.push_samples(chunk) if x.ndim == 1 else stream.push_array(chunk, rate)
    return out + stream.flush()


def offline(toks: Tokenizers, x: np.ndarray, rate: int = RATE) -> list[TokenPacket]:
    return run_chunks(toks, x, [], rate)


@pytest.mark.slow
def test_offline_counts_and_timestamps(toks: Tokenizers) -> None:
    packets = offline(toks, SIGNAL)
    fine = [p for p in packets if p.scale == Scale.FINE]
    coarse = [p for p in packets if p.scale == Scale.COARSE]
    assert len(fine) == 75 and len(coarse) == 19  # 1.5 s: 75 x 20 ms; 18.75 x 80 ms -> 19
    assert [p.seq for p in fine] == list(range(75))
    assert fine[10].start_ns == 200_000_000 and fine[10].end_ns == 220_000_000
    assert coarse[3].start_ns == 240_000_000 and coarse[3].end_ns == 320_000_000
    assert fine[0].codes.shape == (1, 4) and coarse[0].codes.shape == (1, 2)
    assert all(p.codes.max() < 1024 for p in packets)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=SIGNAL.size - 1), max_size=60))
def test_any_chunking_equals_offline(toks: Tokenizers, cuts: list[int]) -> None:
    assert by_step(run_chunks(toks, SIGNAL, cuts)) == by_step(offline(toks, SIGNAL))


def test_single_sample_chunks_equal_offline(toks: Tokenizers) -> None:
    x = SIGNAL[:4000]
    assert by_step(run_chunks(toks, x, list(range(1, x.size)))) == by_step(offline(toks, x))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=STEREO_44K.shape[1] - 1), max_size=30))
def test_resampled_stereo_any_chunking_equals_offline(toks: Tokenizers, cuts: list[int]) -> None:
    assert by_step(run_chunks(toks, STEREO_44K, cuts, 44100)) == by_step(offline(toks, STEREO_44K, 44100))


def test_token_emitted_as_soon_as_its_samples_arrive(toks: Tokenizers) -> None:
    """Fine step k needs samples up to 20(k+1) ms + 15 ms; it must come out with exactly that sample."""
    stream = toks.audio.stream("a")
    emitted_at: dict[tuple[int, int], int] = {}
    for n in range(1, 6000 + 1):
        for p in stream.push_samples(SIGNAL[n - 1 : n]):
            emitted_at[key(p)] = n
    latency = toks.audio.latency_samples
    assert latency == 240  # 25 ms window - 10 ms hop at 16 kHz
    for (scale, seq), n in emitted_at.items():
        step = toks.audio.step_samples["fine" if scale == Scale.FINE else "coarse"]
        assert n == (seq + 1) * step + latency, (scale, seq, n)
    assert (int(Scale.FINE), 0) in emitted_at and (int(Scale.COARSE), 3) in emitted_at


def test_flush_covers_every_sample_without_invented_steps(toks: Tokenizers) -> None:
    x = SIGNAL[: 16000 + 100]  # 1.00625 s
    packets = offline(toks, x)
    fine = [p for p in packets if p.scale == Scale.FINE]
    coarse = [p for p in packets if p.scale == Scale.COARSE]
    assert len(fine) == 51 and fine[-1].start_ns < 1_006_250_000 <= fine[-1].end_ns
    assert len(coarse) == 13 and coarse[-1].start_ns < 1_006_250_000 <= coarse[-1].end_ns


def test_gap_and_reset_flags(toks: Tokenizers) -> None:
    stream = toks.audio.stream("a", t0_ns=5_000_000_000)
    first = stream.push_samples(SIGNAL[:3200])
    # Every audio packet is a keyframe (a whole 1 x 1 grid, independent of the ones before it):
    # a consumer that waits for a keyframe starts at any of them (issue 12).
    assert first[0].start_ns == 5_000_000_000 and first[0].flags == Flag.KEYFRAME
    assert all(p.flags == Flag.KEYFRAME for p in first)
    stream.mark_gap()
    after = stream.push_samples(SIGNAL[3200:6400])
    fine = [p for p in after if p.scale == Scale.FINE]
    coarse = [p for p in after if p.scale == Scale.COARSE]
    assert fine[0].flags == Flag.KEYFRAME | Flag.GAP and fine[1].flags == Flag.KEYFRAME
    assert coarse[0].flags == Flag.KEYFRAME | Flag.GAP
    stream.reset(t0_ns=9_000_000_000)
    again = stream.push_samples(SIGNAL[:1000])
    assert again[0].seq == 0 and again[0].start_ns == 9_000_000_000
    assert again[0].flags == Flag.KEYFRAME | Flag.DISCONTINUITY


def test_silence_and_loud_input_are_finite(toks: Tokenizers) -> None:
    silent = offline(toks, np.zeros(8000, np.float32))
    loud = offline(toks, np.clip(SIGNAL[:8000] * 50, -1, 1))
    assert len(silent) == len(loud) == 25 + 7
    assert {tuple(p.codes[0]) for p in silent if p.scale == Scale.FINE} != {
        tuple(p.codes[0]) for p in loud if p.scale == Scale.FINE}


def test_wav_and_flac_give_identical_tokens(toks: Tokenizers, speech_wav: Path, tmp_path: Path) -> None:
    flac = tmp_path / "speech.flac"
    ffmpeg("-i", str(speech_wav), "-c:a", "flac", str(flac))
    a = tokenize_file(speech_wav, toks, "s", None, TokenizeReport())
    b = tokenize_file(flac, toks, "s", None, TokenizeReport())
    assert len(a) > 50
    assert by_step(a) == by_step(b)


def test_tone_lands_in_the_right_steps(toks: Tokenizers) -> None:
    """A 1 kHz burst from 0.5 s to 0.7 s changes the tokens of exactly the steps that see it."""
    x = np.zeros(RATE, np.float32)
    burst = slice(int(0.5 * RATE), int(0.7 * RATE))
    x[burst] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(burst.stop - burst.start) / RATE)
    with_tone = {key(p): p for p in offline(toks, x)}
    silent = {key(p): p for p in offline(toks, np.zeros(RATE, np.float32))}
    changed = sorted(s for (scale, s), p in with_tone.items()
                     if scale == Scale.FINE and not np.array_equal(p.codes, silent[(scale, s)].codes))
    # Fine step k's frames span [20k, 20k + 35) ms: steps 24 .. 34 overlap [500, 700) ms.
    assert changed[0] == 24 and changed[-1] == 34


def test_held_blocks_give_the_packets_of_block_by_block_pushes(toks: Tokenizers) -> None:
    """``AudioTrack(batch_ns=...)`` (files) holds continuing blocks and pushes them as one: the
    packets per stream are exactly those of pushing every block as it comes, across a time off the
    count (GAP), a discontinuity, a layout change and a rate change."""
    from livetok.tokenizers.session import AudioTrack

    blocks: list[tuple[np.ndarray, int, int, bool]] = []  # samples, rate, media_ns, discontinuity
    t = 0
    for i in range(60):
        rate = 48000 if i < 45 else 16000
        n = 1024 if rate == 48000 else 320
        x = STEREO_44K[:, :n] if 20 <= i < 30 else STEREO_44K[:1, :n]  # stereo for a while
        if i == 12:
            t += 80_000_000  # 80 ms lost: off the count
        blocks.append((np.ascontiguousarray(x), rate, t, i == 35))
        t += n * 1_000_000_000 // rate

    def run(batch_ns: int) -> list[tuple[object, ...]]:
        track, out = AudioTrack(toks, "a", batch_ns=batch_ns), []
        for x, rate, ns, disc in blocks:
            out += track.push(x, rate, ns, discontinuity=disc)
        out += track.flush()
        return sorted((p.stream_name, p.seq, int(p.flags), p.start_ns, p.end_ns, p.codes.tobytes()) for p in out)

    every_block = run(0)
    flags = [f for _, _, f, *_ in every_block]
    assert any(f & Flag.GAP for f in flags) and any(f & Flag.DISCONTINUITY for f in flags)
    for batch_ns in (30_000_000, 200_000_000, 500_000_000, 10**10):
        assert run(batch_ns) == every_block, batch_ns
