"""Streaming audio encoders over users' models: any chunking gives the same frames and codes as one
call, bit for bit; several sources in one batch give what each gives alone; steps, flush, latency,
gaps. Models are exported by the tests themselves (tests/plugin_models.py), TorchScript and ONNX."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plugin_models import (
    LOGMEL_IO,
    logmel_model,
    same_steps,
    stateful_io,
    stateful_model,
    stateless_model,
    with_codebooks,
)

from livetok.errors import ConfigError
from livetok.tokenizers.models.audio import AudioModelEncoder, AudioModelStream
from livetok.tokenizers.models.contract import ModelConfig
from livetok.tokenizers.protocol import StepCodes

RATE = 16000
RNG = np.random.default_rng(5)
T = np.arange(int(0.7 * RATE)) / RATE
SIGNAL = (0.3 * np.sin(2 * np.pi * 330 * T) + 0.05 * RNG.standard_normal(T.size)).astype(np.float32)
FORMATS = ["torchscript", "onnx"]
KINDS = ["stateless", "stateful", "stateful-codes", "logmel"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plugin-audio")


_ENCODERS: dict[tuple[str, str], AudioModelEncoder] = {}


def encoder(model_dir: Path, kind: str, fmt: str, **kw: Any) -> AudioModelEncoder:
    if (kind, fmt) in _ENCODERS and not kw:
        return _ENCODERS[(kind, fmt)]
    if kind == "stateless":
        cfg = ModelConfig(path=stateless_model(model_dir, fmt))
    elif kind == "logmel":
        cfg = ModelConfig(path=logmel_model(model_dir, fmt))
    else:
        io = stateful_io(fmt, "codes" if kind == "stateful-codes" else "embeddings")
        cfg = ModelConfig(path=stateful_model(model_dir, fmt), io=io)
    enc = with_codebooks(AudioModelEncoder.load(f"{kind}-{fmt}", cfg, fmt, vectors=True, **kw))  # type: ignore[arg-type]
    if not kw:
        _ENCODERS[(kind, fmt)] = enc
    return enc


def run_recording(enc: AudioModelEncoder, stream: AudioModelStream, x: np.ndarray,
                  cuts: list[int]) -> tuple[list[StepCodes], dict[int, bytes]]:
    """The three phases over ``x`` cut at ``cuts``: the steps, and every call's raw frames (bytes)."""
    steps: list[StepCodes] = []
    frames: dict[int, bytes] = {}
    bounds = [0, *sorted({c for c in cuts if 0 < c < x.size}), x.size]
    for lo, hi in itertools.pairwise(bounds):
        jobs = stream.take(x[lo:hi])
        for job, out in zip(jobs, enc.run(jobs), strict=True):
            frames[job.call] = out.frames.tobytes()
            steps += stream.emit(job, out)
    jobs = stream.flush()
    for job, out in zip(jobs, enc.run(jobs), strict=True):
        frames[job.call] = out.frames.tobytes()
        steps += stream.emit(job, out)
    return steps, frames


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_random_chunkings_equal_one_call(model_dir: Path, kind: str, fmt: str) -> None:
    enc = encoder(model_dir, kind, fmt)
    ref_steps, ref_frames = run_recording(enc, enc.stream("a"), SIGNAL, [])
    assert ref_steps and all(s.vectors is not None for s in ref_steps)
    rng = np.random.default_rng(11)
    for trial in range(25):
        n = int(rng.integers(1, 60))
        # the first trial pushes single samples
        cuts = sorted(rng.integers(1, SIGNAL.size, n).tolist()) if trial else list(range(1, 2000))
        steps, frames = run_recording(enc, enc.stream("a"), SIGNAL, cuts)
        assert frames == ref_frames, f"frames differ for cuts {cuts[:8]}..."
        assert same_steps(steps, ref_steps)


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, SIGNAL.size - 1), max_size=40))
def test_hypothesis_chunkings_stateful_torchscript(model_dir: Path, cuts: list[int]) -> None:
    """The case where batch sizes differ in their rounding (torch): chunking still changes nothing."""
    enc = encoder(model_dir, "stateful", "torchscript")
    ref, ref_frames = run_recording(enc, enc.stream("a"), SIGNAL, [])
    steps, frames = run_recording(enc, enc.stream("a"), SIGNAL, cuts)
    assert frames == ref_frames and same_steps(steps, ref)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["stateless", "stateful", "logmel"])
def test_sources_sharing_calls_equal_each_alone(model_dir: Path, kind: str, fmt: str) -> None:
    """Three sources, each cut at random, every tick's jobs in one run(): each source's frames and steps
    equal what it gets alone — whatever else shared its calls, and however many rows they had."""
    enc = encoder(model_dir, kind, fmt)
    signals = [SIGNAL, SIGNAL[::-1].copy(), (SIGNAL * 0.5)[:9000].copy()]
    alone = [run_recording(enc, enc.stream(f"s{i}"), x, []) for i, x in enumerate(signals)]
    rng = np.random.default_rng(3)
    streams = [enc.stream(f"s{i}") for i in range(3)]
    pos = [0, 0, 0]
    steps: list[list[StepCodes]] = [[], [], []]
    frames: list[dict[int, bytes]] = [{}, {}, {}]
    calls_before = enc.caller.calls
    ticks = 0
    while any(p < x.size for p, x in zip(pos, signals, strict=True)):
        taken = []
        for i, (s, x) in enumerate(zip(streams, signals, strict=True)):
            n = int(rng.integers(0, 2500))
            taken.append(s.take(x[pos[i] : pos[i] + n]))
            pos[i] = min(x.size, pos[i] + n)
        # the streams' jobs interleaved (each stream's in order): run() must not rely on their grouping
        jobs = [j for group in itertools.zip_longest(*taken) for j in group if j is not None]
        for job, out in zip(jobs, enc.run(jobs), strict=True):
            i = streams.index(job.stream)
            frames[i][job.call] = out.frames.tobytes()
            steps[i] += job.stream.emit(job, out)
        ticks += 1
    for i, s in enumerate(streams):
        jobs = s.flush()
        for job, out in zip(jobs, enc.run(jobs), strict=True):
            frames[i][job.call] = out.frames.tobytes()
            steps[i] += s.emit(job, out)
    for i in range(3):
        assert frames[i] == alone[i][1]
        assert same_steps(steps[i], alone[i][0])
    if not enc.io.stateful:
        assert enc.caller.calls - calls_before <= ticks + 3  # one call per tick (and per flush)


@pytest.mark.parametrize("fmt", FORMATS)
def test_stateless_frames_match_the_model_on_the_whole_signal(model_dir: Path, fmt: str) -> None:
    """Windowing is right: frame t is the model's frame t over the whole signal (with the contract's
    history of silence before it), to float rounding."""
    enc = encoder(model_dir, "stateless", fmt)
    io = enc.io
    _, frames = run_recording(enc, enc.stream("a"), SIGNAL, [])
    ours = np.concatenate([np.frombuffer(frames[k]).reshape(io.frames, io.dim) for k in sorted(frames)])
    padded = np.concatenate([np.zeros(io.history, np.float32), SIGNAL, np.zeros(RATE // 10, np.float32)])
    whole = enc.runner.run({"input": padded[None]})["output" if fmt == "onnx" else "0"][0].T
    n = min(len(ours), len(whole))
    assert n >= SIGNAL.size // io.hop
    np.testing.assert_allclose(ours[:n], whole[:n], rtol=1e-5, atol=1e-5)


def test_step_count_times_and_flush(model_dir: Path) -> None:
    enc = encoder(model_dir, "stateless", "onnx")
    spec = enc.specs[0]
    assert spec.step_ns == 10_000_000 and spec.grid == (1, 1) and spec.levels == 2 and spec.codebook_size == 8
    steps, _ = run_recording(enc, enc.stream("a"), SIGNAL[:1601], [])
    # 1601 samples: steps 0..10 hold received samples (step 10 holds one); padding alone makes none
    assert [s.step for s in steps] == list(range(11))
    assert spec.step_bounds_ns(10) == (100_000_000, 110_000_000)


def test_a_step_is_emitted_when_its_window_is_complete(model_dir: Path) -> None:
    """Stateless, lookahead 80, 4 frames per call: call k needs samples up to 640 k + 720; pushing one
    sample at a time, its steps come out exactly when that sample arrives."""
    enc = encoder(model_dir, "stateless", "onnx")
    s = enc.stream("a")
    io = enc.io
    for i in range(2000):
        jobs = s.take(SIGNAL[i : i + 1])
        done = i + 1  # samples received
        ends = [j.call * io.advance - io.history + io.window for j in jobs]
        assert ends == [done] * len(jobs)
        for job, out in zip(jobs, enc.run(jobs), strict=True):
            assert [st_.step for st_ in s.emit(job, out)] == list(range(job.call * 4, job.call * 4 + 4))


def test_step_ms_must_be_a_whole_number_of_frames(model_dir: Path) -> None:
    path = stateless_model(model_dir, "onnx")
    enc = with_codebooks(AudioModelEncoder.load("x", ModelConfig(path=path), "onnx", step_ms=30))
    assert enc.frames_per_step == 3 and enc.specs[0].grid == (1, 3) and enc.specs[0].step_ns == 30_000_000
    steps, _ = run_recording(enc, enc.stream("a"), SIGNAL, [])
    assert steps[0].codes.shape == (3, 2) and [s.step for s in steps] == list(range(-(-SIGNAL.size // 480)))
    with pytest.raises(ConfigError) as info:
        AudioModelEncoder.load("x", ModelConfig(path=path), "onnx", step_ms=25)
    assert str(info.value) == ("tokenizer 'x': step_ms: 25 ms is not a whole number of the model's 10 ms frames "
                               "(160 samples at 16000 Hz)")


@pytest.mark.parametrize("kind", ["stateless", "stateful"])
def test_abandoned_jobs_flag_a_gap_and_the_stream_goes_on(model_dir: Path, kind: str) -> None:
    enc = encoder(model_dir, kind, "onnx")
    ref, _ = run_recording(enc, enc.stream("a"), SIGNAL, [])
    s = enc.stream("a")
    out: list[StepCodes] = []
    for lo in range(0, SIGNAL.size, 1600):
        jobs = s.take(SIGNAL[lo : lo + 1600])
        if lo == 3200:  # the model "failed" for this tick
            for job in jobs:
                s.abandon(job)
            continue
        out += [x for job, o in zip(jobs, enc.run(jobs), strict=True) for x in s.emit(job, o)]
    jobs = s.flush()
    out += [x for job, o in zip(jobs, enc.run(jobs), strict=True) for x in s.emit(job, o)]
    lost = {r.step for r in ref} - {o.step for o in out}
    assert lost and max(lost) < min(o.step for o in out if o.step > max(lost))
    after = [o for o in out if o.step > max(lost)]
    assert after[0].gap and not any(o.gap for o in out if o is not after[0])
    if kind == "stateless":  # windows do not depend on the past: what follows the gap is unchanged
        by_step = {r.step: r for r in ref}
        assert same_steps([o for o in after if not o.gap], [by_step[o.step] for o in after if not o.gap])


def test_stateful_jobs_wait_while_in_flight(model_dir: Path) -> None:
    enc = encoder(model_dir, "stateful", "onnx")
    s = enc.stream("a")
    first = s.take(SIGNAL[:1000])
    assert len(first) == 3 and first[0].state is not None and first[1].state is None
    assert s.take(SIGNAL[1000:2000]) == []  # the chain in flight must come back first
    outs = enc.run(first)
    for job, out in zip(first, outs, strict=True):
        s.emit(job, out)
    assert [j.call for j in s.take(np.zeros(0, np.float32))] == [3, 4, 5]
    with pytest.raises(ValueError, match="together"):
        enc.run(first[1:])


def test_logmel_windows_are_the_builtin_front_end(model_dir: Path) -> None:
    """The log-mel model is fed StreamingLogMel's frames (as float32), in the declared [B, n_mels, T]."""
    from livetok.tokenizers.audio_frontend import StreamingLogMel

    enc = encoder(model_dir, "logmel", "onnx")
    assert LOGMEL_IO["input_layout"] == "BCT"
    jobs = enc.stream("a").take(SIGNAL)
    assert enc.io.logmel is not None
    mel = StreamingLogMel(enc.io.logmel.audio_config(RATE)).push(SIGNAL).astype(np.float32)
    io = enc.io
    k = 5
    start = k * io.advance - io.history
    np.testing.assert_array_equal(jobs[k].window, mel[start : start + io.window])
    assert jobs[0].window[: io.history].max() == jobs[0].window[: io.history].min()  # silence before the start


def test_stateful_stream_goes_on_after_a_failed_run(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed batch (ModelRunError) abandons its jobs: the chain in flight is released, the stream takes
    the next chunks from the last state it got back, and flags the next step gap."""
    from livetok.errors import ModelRunError
    from livetok.tokenizers.protocol import process

    enc = encoder(model_dir, "stateful", "onnx")
    s = enc.stream("a")
    before = process(enc, s.take(SIGNAL[:3200]))
    good_state = s.state.state
    real = enc.runner.run

    def broken(feeds: Any) -> Any:
        raise ModelRunError("tokenizer 'x': the model raised: boom", tokenizer="x")

    monkeypatch.setattr(enc.runner, "run", broken)
    with pytest.raises(ModelRunError):
        process(enc, s.take(SIGNAL[3200:6400]))
    assert s.state.in_flight == 0 and s.state.state is good_state
    monkeypatch.setattr(enc.runner, "run", real)
    after = process(enc, s.take(SIGNAL[6400:9600]))
    assert [x.step for x in before] == list(range(20)) and [x.step for x in after] == list(range(40, 60))
    assert after[0].gap and not any(x.gap for x in after[1:] + before)
