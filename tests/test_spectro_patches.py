"""``spectrogram-patches``: the patches are the offline log-mel cut as documented; any chunking gives
the same codes; a step comes out as soon as its last frame exists; fitting from speech, and refusing
codebooks fitted with another front end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plugin_models import run_chunks, same_steps
from pydantic import ValidationError

from livetok.errors import CodebookError
from livetok.tokenizers.audio_frontend import LOG_FLOOR, StreamingLogMel
from livetok.tokenizers.fit import FitOptions
from livetok.tokenizers.plugin_config import LogMelParams, QuantizerConfig, SpectroPatchConfig
from livetok.tokenizers.plugin_fit import fit_tokenizer, patch_vectors
from livetok.tokenizers.protocol import StepCodes, process
from livetok.tokenizers.quantizer_file import load_quantizers, make_quantizer_set, save_quantizers
from livetok.tokenizers.quantizers import fit_quantizer
from livetok.tokenizers.spectro_patches import KIND, STREAM, SpectroPatchTokenizer

RATE = 16000
RNG = np.random.default_rng(8)
T = np.arange(int(1.3 * RATE)) / RATE
SIGNAL = (0.3 * np.sin(2 * np.pi * (200 + 900 * T) * T) + 0.05 * RNG.standard_normal(T.size)).astype(np.float32)
SMALL_Q = QuantizerConfig(levels=2, codebook_size=16, dim=8, iters=4)


def fitted(cfg: SpectroPatchConfig | None = None, vectors: bool = True) -> SpectroPatchTokenizer:
    """A tokenizer with codebooks fitted on its own patches of noise."""
    cfg = cfg or SpectroPatchConfig(quantizer=SMALL_Q)
    tok = SpectroPatchTokenizer("sp", cfg, vectors=vectors)
    noise = (np.random.default_rng(0).standard_normal(2 * RATE) * 0.3).astype(np.float32)
    x = np.concatenate([j.patches for j in tok.stream("fit").take(noise)])
    tok.use_codebooks(make_quantizer_set(KIND, tok.fitted_for(), {STREAM: fit_quantizer(x, cfg.quantizer)}))
    return tok


TOK = fitted()


def test_spec_and_defaults() -> None:
    cfg = SpectroPatchConfig()
    assert (cfg.rows, cfg.patch_size, cfg.logmel.n_mels) == (8, 256, 128)
    spec = TOK.specs[0]
    assert (spec.modality, spec.name, spec.step_ns, spec.grid) == ("audio", "patches", 80_000_000, (8, 1))
    assert (spec.levels, spec.codebook_size, spec.vector_size) == (2, 16, 8)


def test_patches_are_the_offline_logmel_cut_as_documented() -> None:
    cfg = TOK.cfg
    mel = StreamingLogMel(TOK.audio).push(SIGNAL)  # the whole signal at once
    history = np.full((cfg.patch_frames - cfg.stride_frames, cfg.logmel.n_mels), np.log(LOG_FLOOR))
    padded = np.concatenate([history, mel])
    jobs = TOK.stream("a").take(SIGNAL)
    assert len(jobs) == mel.shape[0] // cfg.stride_frames
    for k in (0, 1, 7, len(jobs) - 1):
        end = (k + 1) * cfg.stride_frames  # frame index after the column (history offset added below)
        for r in (0, 3, cfg.rows - 1):
            for i, j in ((0, 0), (5, 11), (15, 15)):
                want = padded[end - cfg.patch_frames + j + len(history), r * cfg.patch_mels + i]
                assert jobs[k].patches[r, i * cfg.patch_frames + j] == want


def test_random_chunkings_give_the_same_codes() -> None:
    ref = run_chunks(TOK, TOK.stream("a"), SIGNAL, [])
    assert len(ref) == -(-SIGNAL.size // 1280)  # every step holding a received sample, no more
    assert all(s.codes.shape == (8, 2) and s.vectors is not None and s.vectors.shape == (8, 8) for s in ref)
    rng = np.random.default_rng(1)
    for trial in range(20):
        cuts = rng.integers(1, SIGNAL.size, int(rng.integers(1, 80))).tolist() if trial else list(range(1, 3000))
        assert same_steps(run_chunks(TOK, TOK.stream("a"), SIGNAL, cuts), ref)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(1, SIGNAL.size - 1), max_size=30))
def test_hypothesis_chunkings(cuts: list[int]) -> None:
    assert same_steps(run_chunks(TOK, TOK.stream("a"), SIGNAL, cuts), run_chunks(TOK, TOK.stream("a"), SIGNAL, []))


def test_sources_sharing_a_run() -> None:
    signals = [SIGNAL, SIGNAL[::-1].copy(), SIGNAL[:7000] * 2]
    alone = [run_chunks(TOK, TOK.stream("a"), x, []) for x in signals]
    streams = [TOK.stream(f"s{i}") for i in range(3)]
    got: list[list[StepCodes]] = [[], [], []]
    for lo in range(0, SIGNAL.size, 3333):
        jobs = [j for s, x in zip(streams, signals, strict=True) for j in s.take(x[lo : lo + 3333])]
        for job, enc in zip(jobs, TOK.run(jobs), strict=True):
            got[streams.index(job.stream)] += job.stream.emit(job, enc)
    for i, s in enumerate(streams):
        got[i] += process(TOK, s.flush())
        assert same_steps(got[i], alone[i])


def test_a_step_comes_out_when_its_last_frame_exists() -> None:
    """Step k ends at log-mel frame (k + 1) stride - 1, which needs the sample ((k + 1) stride - 1) hop + win."""
    s = TOK.stream("a")
    emitted = {}
    for i in range(6000):
        for step in process(TOK, s.take(SIGNAL[i : i + 1])):
            emitted[step.step] = i + 1
    hop, win, stride = TOK.audio.hop_length, TOK.audio.win_length, TOK.cfg.stride_frames
    assert emitted == {k: ((k + 1) * stride - 1) * hop + win for k in range(len(emitted))}
    assert len(emitted) == 4  # (6000 - 400) // 160 + 1 = 36 frames: 4 columns of 8


def test_gaps_and_reset() -> None:
    s = TOK.stream("a")
    first = process(TOK, s.take(SIGNAL[:8000]))
    jobs = s.take(SIGNAL[8000:12000])
    for j in jobs:
        s.abandon(j)
    after = process(TOK, s.take(SIGNAL[12000:]))
    assert not any(x.gap for x in first) and after[0].gap and not any(x.gap for x in after[1:])
    assert after[0].step == first[-1].step + len(jobs) + 1
    s.reset()
    again = process(TOK, s.take(SIGNAL[:8000]))
    assert again[0].step == 0 and again[0].gap
    assert [x.codes.tobytes() for x in again] == [x.codes.tobytes() for x in first]


def test_config_rules() -> None:
    bad = {
        "patch_mels (130) is more than logmel.n_mels (128)": dict(patch_mels=130),
        "stride_frames (20) is more than patch_frames (16)": dict(stride_frames=20),
        "patches of 16 bands every 10 do not end at logmel.n_mels (128)": dict(mel_stride=10),
        "quantizer.dim (300) is more than a patch's 256 values": dict(quantizer=QuantizerConfig(dim=300)),
        "n_fft": dict(logmel=LogMelParams(window_ms=50, n_fft=256)),
    }
    for words, kw in bad.items():
        with pytest.raises(ValidationError, match=words.replace("(", r"\(").replace(")", r"\)")):
            SpectroPatchConfig(**kw)  # type: ignore[arg-type]
    over = SpectroPatchConfig(mel_stride=8)  # overlapping in frequency too
    assert over.rows == 15


def test_fit_from_speech_and_refuse_another_front_end(speech_wav: Path, tmp_path: Path) -> None:
    cfg = SpectroPatchConfig(quantizer=QuantizerConfig(levels=2, codebook_size=64, dim=16, iters=5))
    tok = SpectroPatchTokenizer("sp", cfg)
    x = patch_vectors([speech_wav], tok, FitOptions())
    # about 2 s: one patch column per log-mel frame (with 8 frames of silence before), 8 rows each
    assert x.shape[1] == 256 and x.shape[0] % 8 == 0 and x.shape[0] > 8 * 150
    qs = fit_tokenizer([speech_wav], tok, None, FitOptions())
    path = tmp_path / "sp.safetensors"
    save_quantizers(qs, path)
    tok.use_codebooks(load_quantizers(path))
    steps = run_chunks(tok, tok.stream("mic"), SIGNAL, [])
    assert steps and max(int(s.codes.max()) for s in steps) < 64
    other = SpectroPatchTokenizer("sp", SpectroPatchConfig(logmel=LogMelParams(n_mels=96),
                                                           quantizer=cfg.quantizer))
    with pytest.raises(CodebookError) as info:
        other.use_codebooks(load_quantizers(path))
    assert "were fitted for frontend=" in str(info.value) and "'n_mels': 128" in str(info.value)
    assert "fit them again: livetok fit --tokenizer sp" in str(info.value)
    moved = SpectroPatchTokenizer("sp", SpectroPatchConfig(stride_frames=4, quantizer=cfg.quantizer))
    with pytest.raises(CodebookError, match="were fitted for stride_frames=8, but this tokenizer has stride_frames=4"):
        moved.use_codebooks(load_quantizers(path))
