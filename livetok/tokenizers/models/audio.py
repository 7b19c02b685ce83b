"""Streaming audio encoders over a user's model: waveform or log-mel in, embeddings or codes out.

``AudioModelEncoder`` (the kind's shared part) holds the model, its contract and the quantizer;
``AudioModelStream`` (one per source) buffers input and numbers steps. The three phases
(:mod:`livetok.tokenizers.protocol`): ``stream.take(samples) -> jobs``, ``encoder.run(jobs) ->
outputs``, ``stream.emit(job, output) -> steps``.

Exactness (streaming equals offline for any chunking, whatever shares a batch): call ``k`` of a
stream always gets the same input steps, ``[k advance - history, k advance - history + window)`` of
the stream (silence before its start), as one fixed-shape row, whatever the chunking of the input;
log-mel frames are computed per frame (``StreamingLogMel``); the batch caller uses only batch sizes
at which a row's result was proven independent of the other rows (``batching.py``); codes come from
the row-by-row RVQ kernel. A stateful model gets the same chunks in the same order, with the state
its previous chunk gave back.
"""
# Over 450 lines because the encoder and its per-source stream are one protocol (each makes or calls
# the other, and the exactness argument above spans both): apart, each module would import the other.

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from livetok.errors import CodebookError, ConfigError, ModelError, ModelRunError
from livetok.tokenizers.models.batching import BatchCaller, Calibration, Feed, OutputRule, Row
from livetok.tokenizers.models.contract import AudioModelIO, ModelConfig
from livetok.tokenizers.models.load import Feeds, check_static, open_model, probe, static_batch
from livetok.tokenizers.models.runner import Format, ModelRunner
from livetok.tokenizers.plugin_config import QuantizerConfig
from livetok.tokenizers.protocol import StepCodes
from livetok.tokenizers.quantizer_file import QuantizerSet
from livetok.tokenizers.spec import StreamSpec, step_ns_of

if TYPE_CHECKING:
    from livetok.tokenizers.rvq import ScaleQuantizer

# torch is imported only for log-mel input (the front end) and for codebooks (the RVQ kernel's module):
# probing an ONNX waveform model, as check-config may, needs onnxruntime and NumPy only.


def silent_logmel() -> float:
    """StreamingLogMel's value for digital silence, ``log(LOG_FLOOR)``."""
    from livetok.tokenizers.audio_frontend import LOG_FLOOR

    return math.log(LOG_FLOOR)


@dataclass(eq=False)
class AudioJob:
    """Call ``call`` of ``stream``: ``window [window, channels] float32``; ``state``: the state rows a
    stateful chain starts from (its first job only; the others continue from the job before)."""

    stream: AudioModelStream
    call: int
    window: np.ndarray
    state: dict[str, np.ndarray] | None = None


@dataclass
class AudioOutput:
    """One call's result: ``frames [F, D]`` as the model gave them (float64 embeddings or integer
    codes), a stateful model's next ``state`` rows, and per frame its ``codes [F, L] uint16`` and
    ``vectors [F, d] float32`` (None: not asked for, or no codebooks yet, as when fitting)."""

    frames: np.ndarray
    state: dict[str, np.ndarray] | None = None
    codes: np.ndarray | None = None
    vectors: np.ndarray | None = None


def frames_per_step(io: AudioModelIO, step_ms: float | None, tokenizer: str) -> int:
    """Model frames per token step: 1, or ``step_ms`` over the frame period when that is a whole number
    (a ConfigError line otherwise: a rate that does not divide the step)."""
    if step_ms is None:
        return 1
    frame = step_ns_of(io.hop * io.step_samples, io.sample_rate)
    step = Fraction(str(step_ms)) * 1_000_000
    n = step / frame
    if n.denominator != 1 or n < 1:
        raise ConfigError(f"tokenizer {tokenizer!r}: step_ms: {step_ms:g} ms is not a whole number of the model's "
                          f"{float(frame) / 1e6:g} ms frames ({io.hop * io.step_samples} samples at "
                          f"{io.sample_rate} Hz)")
    return int(n)


class AudioModelEncoder:
    """A user's audio model as a tokenizer kind: ``run(jobs)`` is one model call per batch of rows."""

    def __init__(self, name: str, runner: ModelRunner, io: AudioModelIO, batch: int, *,
                 stream_name: str = "tokens", frames_per_step: int = 1, vectors: bool = False) -> None:
        self.name, self.runner, self.io = name, runner, io
        self.stream_name, self.frames_per_step, self.vectors = stream_name, frames_per_step, vectors
        self.quantizer: ScaleQuantizer | None = None
        self.caller = BatchCaller(runner, self._input_axes(), self._output_rules(), self._constants(), batch)
        self._input_name = io.input_name
        self._state_names = [(s.input, s.output) for s in io.state]
        self.calibration: Calibration | None = None

    # --- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, name: str, cfg: ModelConfig, fmt: Format, *, stream_name: str = "tokens",
             step_ms: float | None = None, vectors: bool = False) -> AudioModelEncoder:
        """Open, check and probe the model (ConfigError / ModelError lines, never mid-stream)."""
        runner, io = open_model(cfg, fmt, name, "audio")
        assert isinstance(io, AudioModelIO)
        enc = cls(name, runner, io, cfg.batch, stream_name=stream_name,
                  frames_per_step=frames_per_step(io, step_ms, name), vectors=vectors)
        enc.check()
        return enc

    def feeds(self) -> Feeds:
        io = self.io
        media = (None, io.window) if io.input_layout == "BT" else (
            (None, io.window, io.channels) if io.input_layout == "BTC" else (None, io.channels, io.window))
        shapes: dict[str, tuple[int | None, ...]] = {io.input_name: media}
        dtypes: dict[str, str] = {io.input_name: io.input_dtype}
        keys = {io.input_name: "model.io.input_name", io.output_name: "model.io.output_name"}
        for i, s in enumerate(io.state):
            shapes[s.input] = tuple(None if d == "B" else int(d) for d in s.shape)
            dtypes[s.input] = s.dtype
            keys[s.input] = keys[s.output] = f"model.io.state[{i}]"
        for i, c in enumerate(io.constants):
            shapes[c.name], dtypes[c.name], keys[c.name] = (), c.dtype, f"model.io.constants[{i}]"
        return Feeds(shapes, dtypes, keys, [io.output_name, *(s.output for s in io.state)])

    def check(self) -> Calibration:
        """Static checks against the file, then the probe calls; sets and returns the calibration."""
        check_static(self.runner, self.feeds())
        fixed = static_batch(self.runner, self.io.input_name, 0)
        if fixed is not None:
            self.caller.batch = fixed
        self.calibration = probe(self.caller, self._probe_row)
        self._check_hop()
        return self.calibration

    def _check_hop(self) -> None:
        """A window ``hop`` steps longer must give one more frame, when the model takes other lengths."""
        io = self.io
        if io.stateful or io.output_layout == "BD":
            return
        info = self.runner.inputs[io.input_name]
        time_axis = 2 if io.input_layout == "BCT" else 1
        if info.shape is not None and info.shape[time_axis] is not None:
            return  # the file fixes the length
        rng = np.random.default_rng(1)
        longer = (rng.standard_normal((io.window + io.hop, io.channels)) * 0.1).astype(io.input_dtype)
        feeds: dict[str, Feed] = {io.input_name: self._layout(longer)[None], **self.caller.constants}
        try:
            out = self.runner.run(feeds)[io.output_name]
        except (ModelRunError, KeyError):
            return  # a model that takes one length only
        frame_axis = 2 if io.output_layout == "BDT" else 1
        got = out.shape[frame_axis] if out.ndim > frame_axis else -1
        if got != io.frames + 1:
            raise ModelError(f"tokenizer {self.name!r}: model.io.hop: the contract says {io.hop} input steps per "
                             f"frame, but a window {io.hop} steps longer gave {got} frames instead of {io.frames + 1}")

    def fitted_for(self) -> dict[str, Any]:
        """What codebooks for this encoder depend on (stored in, and checked against, the file)."""
        return {"model_sha256": self.runner.sha256, "modality": "audio", "embedding_dim": self.io.dim,
                "frame_samples": self.io.hop * self.io.step_samples, "sample_rate": self.io.sample_rate}

    def use_codebooks(self, qs: QuantizerSet, cfg: QuantizerConfig) -> None:
        """Quantize with fitted codebooks, refused in one line when fitted for something else."""
        from livetok.tokenizers.quantizers import fitted_quantizer  # torch: only with codebooks

        self.quantizer = fitted_quantizer(qs, cfg, tokenizer=self.name, stream=self.stream_name, fmt=self.runner.fmt,
                                          fitted_for=self.fitted_for(), gives_codes=self.io.output == "codes")

    @property
    def specs(self) -> list[StreamSpec]:
        io, fps = self.io, self.frames_per_step
        step = step_ns_of(fps * io.hop * io.step_samples, io.sample_rate)
        if io.output == "codes":
            assert io.codebook_size is not None
            return [StreamSpec("audio", self.stream_name, step, (1, fps), io.dim, io.codebook_size,
                               io.dim if self.vectors else None)]
        q = self.quantizer
        if q is None:
            raise CodebookError(f"tokenizer {self.name!r}: the model gives embeddings: it needs fitted codebooks "
                                f"(livetok fit --tokenizer {self.name})")
        return [StreamSpec("audio", self.stream_name, step, (1, fps), q.levels, q.codebook_size,
                           q.dim if self.vectors else None)]

    # --- the batched call --------------------------------------------------------------------------

    def stream(self, source: str) -> AudioModelStream:
        return AudioModelStream(self, source)

    def run(self, jobs: list[AudioJob]) -> list[AudioOutput]:
        """Pure: ``jobs`` from any streams -> their outputs, one model call per batch of rows (a stateful
        model: one call per round, round r holding each stream's r-th job)."""
        if not jobs:
            return []
        if self.io.stateful:
            outs = self._run_stateful(jobs)
        else:
            rows = [{self.io.input_name: self._layout(j.window)} for j in jobs]
            outs = [AudioOutput(self._frames(r)) for r in self.caller(rows)]
        self._quantize(outs)
        return outs

    def _quantize(self, outs: list[AudioOutput]) -> None:
        """Codes (and vectors) of every frame of the batch in one kernel call: row by row, so a frame's
        codes never depend on the other frames of the call."""
        if self.io.output == "codes":
            for o in outs:
                o.codes = o.frames.astype(np.uint16)
                o.vectors = o.frames.astype(np.float32) if self.vectors else None
            return
        if self.quantizer is None:
            return
        f = self.io.frames
        enc = self.quantizer.encode_rows(np.concatenate([o.frames for o in outs]))
        for i, o in enumerate(outs):
            o.codes = enc.codes[i * f : (i + 1) * f]
            o.vectors = enc.z[i * f : (i + 1) * f].astype(np.float32) if self.vectors else None

    def _run_stateful(self, jobs: list[AudioJob]) -> list[AudioOutput]:
        chains: dict[int, list[int]] = {}
        for i, job in enumerate(jobs):
            chains.setdefault(id(job.stream), []).append(i)
        before: dict[int, int] = {}  # job index -> the index of the job before it in its stream's chain
        for chain in chains.values():
            if jobs[chain[0]].state is None or any(jobs[a].call + 1 != jobs[b].call for a, b in pairwise(chain)):
                raise ValueError("a stateful stream's jobs must reach run() together, in order, as take() gave them")
            before.update(pairwise(chain[::-1]))
        results: list[AudioOutput] = [None] * len(jobs)  # type: ignore[list-item]  # every slot is filled below
        rounds = max(len(c) for c in chains.values())
        for r in range(rounds):
            idx = [c[r] for c in chains.values() if r < len(c)] if rounds > 1 else list(range(len(jobs)))
            rows = []
            for i in idx:
                state = jobs[i].state if jobs[i].state is not None else results[before[i]].state
                rows.append({self._input_name: self._layout(jobs[i].window), **state})  # type: ignore[dict-item]
            for i, out in zip(idx, self.caller(rows), strict=True):
                results[i] = AudioOutput(self._frames(out), {inp: out[o] for inp, o in self._state_names})
        return results

    # --- shapes --------------------------------------------------------------------------------------

    def _layout(self, window: np.ndarray) -> np.ndarray:
        """``[window, channels]`` -> one input row as the model takes it."""
        layout = self.io.input_layout
        return window[:, 0] if layout == "BT" else (window if layout == "BTC" else window.T)

    def _frames(self, out: Row) -> np.ndarray:
        """One output row -> ``[F, D]``: float64 embeddings or the integer codes."""
        y = out[self.io.output_name]
        layout = self.io.output_layout
        y = y if layout == "BTD" else (y.T if layout == "BDT" else (y[None] if layout == "BD" else y[:, None]))
        return y.astype(np.float64) if self.io.output == "embeddings" else y

    def _input_axes(self) -> dict[str, int]:
        return {self.io.input_name: 0, **{s.input: s.batch_axis for s in self.io.state}}

    def _output_rules(self) -> dict[str, OutputRule]:
        io = self.io
        f, d = ("frames", io.frames), ("dim", io.dim)
        dims = {"BTD": (f, d), "BDT": (d, f), "BD": (d,), "BT": (f,)}[io.output_layout]
        kind: Literal["float", "int"] = "float" if io.output == "embeddings" else "int"
        rules = {io.output_name: OutputRule(0, dims, kind, io.codebook_size)}
        for s in io.state:
            other = tuple((f"state[{i}]", int(n)) for i, n in enumerate(s.shape) if n != "B")
            rules[s.output] = OutputRule(s.batch_axis, other, "float")
        return rules

    def _constants(self) -> dict[str, Feed]:
        return {c.name: np.asarray(c.value, dtype=c.dtype) for c in self.io.constants}

    def initial_state(self) -> dict[str, np.ndarray]:
        return {s.input: np.full([int(n) for n in s.shape if n != "B"], s.init, dtype=s.dtype) for s in self.io.state}

    def _probe_row(self, rng: np.random.Generator) -> Row:
        io = self.io
        if io.input == "waveform":
            x = rng.standard_normal((io.window, 1)) * 0.1
        else:
            x = rng.normal(-4.0, 3.0, (io.window, io.channels))
        row = {io.input_name: self._layout(x.astype(io.input_dtype))}
        for name, s in self.initial_state().items():
            row[name] = (s + 0.01 * rng.standard_normal(s.shape)).astype(s.dtype)
        return row


@dataclass
class AudioStreamState:
    """Everything a stream carries between calls: input steps not yet used by every call, counters,
    the recurrent state and the frames of a step not yet complete."""

    buf: np.ndarray  # [N, channels] float input steps; buf[0] is input step buf_first
    buf_first: int
    state: dict[str, np.ndarray]
    next_call: int = 0  # the next call to take
    next_emit: int = 0  # the call expected by emit
    in_flight: int = 0  # taken, neither emitted nor abandoned
    samples_in: int = 0  # samples received at the model rate (padding excluded)
    flushed: bool = False
    pending: list[np.ndarray] = field(default_factory=list)  # codes [L] of the frames of the step being filled
    pending_vectors: list[np.ndarray] = field(default_factory=list)  # and their vectors, when sent
    pending_first: int = 0  # frame index of pending[0]
    gap: bool = False


class AudioModelStream:
    """One source: ``take(samples)`` mono float32 at the model rate -> jobs; ``emit`` -> steps."""

    def __init__(self, enc: AudioModelEncoder, source: str) -> None:
        self.enc, self.source = enc, source
        io = enc.io
        self.logmel = None
        if io.logmel is not None:
            from livetok.tokenizers.audio_frontend import StreamingLogMel

            self.logmel = StreamingLogMel(io.logmel.audio_config(io.sample_rate))
        # the contract's derived sizes, read once (properties of a pydantic model cost a call each)
        self._window, self._advance, self._history = io.window, io.advance, io.history
        self._frames, self._stateful, self._dtype = io.frames, io.stateful, np.dtype(io.input_dtype)
        self._step_samples = enc.frames_per_step * io.hop * io.step_samples
        self.state = self._new_state()

    def _new_state(self) -> AudioStreamState:
        io = self.enc.io
        silence = 0.0 if self.logmel is None else silent_logmel()
        buf = np.full((io.history, io.channels), silence, dtype=io.input_dtype)
        return AudioStreamState(buf=buf, buf_first=-io.history, state=self.enc.initial_state())

    def reset(self) -> None:
        """Start again (after a discontinuity): silence before the next sample, state from its initial
        value, steps numbered from 0; the next step is flagged ``gap``."""
        if self.logmel is not None:
            self.logmel.reset()
        self.state = self._new_state()
        self.state.gap = True

    def mark_gap(self) -> None:
        self.state.gap = True

    def take(self, samples: np.ndarray) -> list[AudioJob]:
        """``samples [n]`` mono at the model rate -> the calls whose windows became complete. A stateful
        stream takes nothing while its earlier jobs are in flight (its input waits in the buffer)."""
        self.state.samples_in += samples.size
        return self._push(samples)

    def _push(self, samples: np.ndarray) -> list[AudioJob]:
        st, window, advance, history = self.state, self._window, self._advance, self._history
        x = samples[:, None] if self.logmel is None else self.logmel.push(samples)
        if x.size:
            st.buf = np.concatenate([st.buf, x.astype(self._dtype, copy=False)])
        if self._stateful and st.in_flight:
            return []
        jobs: list[AudioJob] = []
        end = st.buf_first + st.buf.shape[0]
        while (start := st.next_call * advance - history) + window <= end:
            lo = start - st.buf_first
            jobs.append(AudioJob(self, st.next_call, st.buf[lo : lo + window]))  # a view: buf is never written
            st.next_call += 1
        if jobs and self._stateful:
            jobs[0].state = st.state
        st.in_flight += len(jobs)
        keep = st.next_call * advance - history - st.buf_first
        if keep > 0:
            st.buf = st.buf[keep:]
            st.buf_first += keep
        return jobs

    def flush(self, tail: np.ndarray | None = None) -> list[AudioJob]:
        """End of stream: ``tail`` (the last samples, e.g. what a resampler still held), then silence,
        enough to compute every step that holds a received sample (steps of padding alone are not
        emitted). Tail and padding go in as one push: jobs the tail completed would otherwise be in
        flight at the flush, which a stateful stream cannot take its last chunks past."""
        st, io, enc = self.state, self.enc.io, self.enc
        if st.in_flight:
            raise RuntimeError("flush() while jobs are in flight: emit or abandon them first")
        if tail is not None:
            st.samples_in += tail.size
        st.flushed = True
        if st.samples_in == 0:
            return []
        step_samples = enc.frames_per_step * io.hop * io.step_samples
        frames_needed = ((st.samples_in - 1) // step_samples + 1) * enc.frames_per_step
        calls = -(-frames_needed // io.frames)
        steps_needed = (calls - 1) * io.advance - io.history + io.window  # input steps
        if self.logmel is None:
            samples_needed = steps_needed
        else:
            a = self.logmel
            samples_needed = (steps_needed - 1) * a.hop + a.win
        pad = np.zeros(max(0, samples_needed - st.samples_in), np.float32)
        return self._push(pad if tail is None or not tail.size else np.concatenate([tail.astype(np.float32), pad]))

    def abandon(self, job: AudioJob) -> None:
        """The job's model call failed: its steps are lost and the next step emitted is flagged gap
        (a stateful model continues from the last state it gave back)."""
        self.state.in_flight -= 1
        self.state.gap = True

    def settle(self, job: AudioJob, out: AudioOutput) -> None:
        """Take ``job``'s result into the stream (its recurrent state) without making steps: what
        fitting does, where only the frames matter."""
        self.state.in_flight -= 1
        if out.state is not None:
            self.state.state = out.state

    def emit(self, job: AudioJob, out: AudioOutput) -> list[StepCodes]:
        """The steps that ``job``'s frames complete, in order."""
        st, enc = self.state, self.enc
        self.settle(job, out)
        if out.codes is None:
            raise CodebookError(f"tokenizer {enc.name!r}: the model gives embeddings: it needs fitted codebooks "
                                f"(livetok fit --tokenizer {enc.name})")
        first = job.call * self._frames
        if enc.frames_per_step == 1 and job.call == st.next_emit and not st.flushed:
            # the common case, one frame per step and nothing lost: each frame is a step
            st.next_emit = job.call + 1
            out_steps = []
            for i in range(self._frames):
                gap, st.gap = st.gap, False
                vectors = None if out.vectors is None else out.vectors[i : i + 1]
                out_steps.append(StepCodes(enc.stream_name, first + i, out.codes[i : i + 1], vectors, gap))
            return out_steps
        if job.call != st.next_emit or (st.pending and st.pending_first + len(st.pending) != first):
            st.pending, st.pending_vectors, st.gap = [], [], True
        st.next_emit = job.call + 1
        if not st.pending:
            st.pending_first = first
        st.pending.extend(out.codes)
        if out.vectors is not None:
            st.pending_vectors.extend(out.vectors)
        return self._steps()

    def _steps(self) -> list[StepCodes]:
        st, fps = self.state, self.enc.frames_per_step
        skip = (-st.pending_first) % fps  # a step begun before a gap cannot be completed
        if skip:
            drop = min(skip, len(st.pending))
            del st.pending[:drop], st.pending_vectors[:drop]
            st.pending_first += drop
        n = len(st.pending) // fps
        out = []
        vec = bool(st.pending_vectors)
        for i in range(n):
            k = st.pending_first // fps + i
            if st.flushed and k * self._step_samples >= st.samples_in:
                break  # padding alone
            gap, st.gap = st.gap, False
            codes = np.stack(st.pending[i * fps : (i + 1) * fps])
            vectors = np.stack(st.pending_vectors[i * fps : (i + 1) * fps]) if vec else None
            out.append(StepCodes(self.enc.stream_name, k, codes, vectors, gap))
        del st.pending[: n * fps], st.pending_vectors[: n * fps]
        st.pending_first += n * fps
        return out
