"""``spectrogram-patches``: AST-style audio tokens, causal and streaming.

The causal log-mel spectrogram (:class:`StreamingLogMel`, the built-in audio front end) is cut into
patches of ``patch_mels`` bands x ``patch_frames`` frames. Step k (``stride_frames`` log-mel frames,
80 ms with the defaults) is one column of ``rows`` patches, all ending at frame ``(k + 1) stride``:

    patch (k, r) = logmel[(k + 1) stride - patch_frames : (k + 1) stride, r mel_stride : r mel_stride + patch_mels]

so consecutive columns overlap by ``patch_frames - stride`` frames (half, with the defaults), frames
before the start being digital silence (``log(1e-6)``). A patch is emitted as soon as its last frame
exists: step k waits for the sample ``(k + 1) stride hop + window - hop``. Its grid position is
``(r, 0)``: row r = bands from ``r mel_stride`` up; step k = time. A patch vector lists its values
band by band, ``v[i patch_frames + j] = logmel[frame0 + j, band0 + i]``; one shared projection and
RVQ turn it into codes (``ScaleQuantizer.encode_rows``: row by row, so the codes never depend on
how many patches share a call).

Step k of the stream covers samples ``[k stride hop, (k + 1) stride hop)``; streaming equals offline
for any chunking because every patch is made of the same log-mel frames (computed per frame, float64)
and quantized per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from livetok.errors import CodebookError
from livetok.tokenizers.audio_frontend import LOG_FLOOR, StreamingLogMel
from livetok.tokenizers.plugin_config import SpectroPatchConfig
from livetok.tokenizers.protocol import StepCodes
from livetok.tokenizers.quantizer_file import QuantizerSet, check_fitted_for, stream_arrays
from livetok.tokenizers.quantizers import build_quantizer
from livetok.tokenizers.rvq import Encoded, ScaleQuantizer
from livetok.tokenizers.spec import StreamSpec, step_ns_of

KIND = "spectrogram-patches"
STREAM = "patches"
SILENCE = math.log(LOG_FLOOR)  # the log-mel value of digital silence


def patch_rows(mel: np.ndarray, cfg: SpectroPatchConfig) -> np.ndarray:
    """``mel [patch_frames, n_mels]`` (one column's frames) -> ``[rows, patch_mels * patch_frames]``."""
    t = mel.T  # [n_mels, frames]
    bs, pm = cfg.band_stride, cfg.patch_mels
    return np.stack([t[r * bs : r * bs + pm] for r in range(cfg.rows)]).reshape(cfg.rows, -1)


@dataclass(eq=False)
class PatchJob:
    """Step ``step`` of ``stream``: its column's patch vectors ``[rows, P]`` float64."""

    stream: SpectroPatchStream
    step: int
    patches: np.ndarray


class SpectroPatchTokenizer:
    """The kind's shared part: configuration and the fitted quantizer; ``run`` quantizes the patches
    of any number of steps from any streams in one kernel call."""

    def __init__(self, name: str, cfg: SpectroPatchConfig, vectors: bool | None = None) -> None:
        # As the built-in AudioTokenizer does: NumPy's BLAS serves only small matrices here (the mel
        # filter bank), too small to gain from threads; idle BLAS threads spin (a 1 s chunk measured
        # 18 instead of 1.5 ms of log-mel CPU per second of audio on the shared 2-core machine).
        threadpool_limits(limits=1, user_api="blas")
        self.name, self.cfg = name, cfg
        self.vectors = cfg.vectors if vectors is None else vectors
        self.audio = cfg.logmel.audio_config(cfg.sample_rate)
        self.quantizer: ScaleQuantizer | None = None

    def fitted_for(self) -> dict[str, Any]:
        c = self.cfg
        return {"frontend": c.logmel.as_dict(c.sample_rate), "patch_mels": c.patch_mels,
                "patch_frames": c.patch_frames, "stride_frames": c.stride_frames, "mel_stride": c.band_stride}

    def use_codebooks(self, qs: QuantizerSet) -> None:
        check_fitted_for(qs, KIND, self.fitted_for(), self.name)
        arrays = stream_arrays(qs, STREAM, self.name)
        self.quantizer = build_quantizer(arrays, self.cfg.quantizer, f"tokenizer {self.name!r}: codebooks {qs.source}")

    @property
    def step_samples(self) -> int:
        return self.cfg.stride_frames * self.audio.hop_length

    @property
    def specs(self) -> list[StreamSpec]:
        q = self.cfg.quantizer
        dim = q.dim if q.dim is not None else self.cfg.patch_size
        return [StreamSpec("audio", STREAM, step_ns_of(self.step_samples, self.cfg.sample_rate), (self.cfg.rows, 1),
                           q.depth, q.codebook_size, dim if self.vectors else None)]

    def stream(self, source: str) -> SpectroPatchStream:
        return SpectroPatchStream(self, source)

    def run(self, jobs: list[PatchJob]) -> list[Encoded]:
        """Pure: every job's patches -> codes ``[rows, L]`` and projected vectors, one kernel call."""
        if not jobs:
            return []
        if self.quantizer is None:
            raise CodebookError(f"tokenizer {self.name!r}: spectrogram patches need fitted codebooks "
                                f"(livetok fit --tokenizer {self.name})")
        enc = self.quantizer.encode_rows(np.concatenate([j.patches for j in jobs]))
        rows = self.cfg.rows
        return [Encoded(enc.codes[i * rows : (i + 1) * rows], enc.z[i * rows : (i + 1) * rows])
                for i in range(len(jobs))]


@dataclass
class PatchStreamState:
    mel: np.ndarray  # [F, n_mels] log-mel frames still needed; mel[0] is frame mel_first
    mel_first: int
    next_step: int = 0
    next_emit: int = 0
    samples_in: int = 0
    flushed: bool = False
    gap: bool = False


class SpectroPatchStream:
    """One source: ``take(samples)`` mono float at the model rate -> one job per completed column."""

    def __init__(self, tok: SpectroPatchTokenizer, source: str) -> None:
        self.tok, self.source = tok, source
        self.logmel = StreamingLogMel(tok.audio)
        self.state = self._new_state()

    def _new_state(self) -> PatchStreamState:
        c = self.tok.cfg
        history = c.patch_frames - c.stride_frames
        return PatchStreamState(mel=np.full((history, c.logmel.n_mels), SILENCE), mel_first=-history)

    def reset(self) -> None:
        self.logmel.reset()
        self.state = self._new_state()
        self.state.gap = True

    def mark_gap(self) -> None:
        self.state.gap = True

    def take(self, samples: np.ndarray) -> list[PatchJob]:
        self.state.samples_in += samples.size
        return self._push(samples)

    def _push(self, samples: np.ndarray) -> list[PatchJob]:
        st, c = self.state, self.tok.cfg
        new = self.logmel.push(samples)
        if new.shape[0]:
            st.mel = np.concatenate([st.mel, new])
        jobs = []
        while (end := (st.next_step + 1) * c.stride_frames) <= st.mel_first + st.mel.shape[0]:
            lo = end - c.patch_frames - st.mel_first
            jobs.append(PatchJob(self, st.next_step, patch_rows(st.mel[lo : lo + c.patch_frames], c)))
            st.next_step += 1
        drop = (st.next_step + 1) * c.stride_frames - c.patch_frames - st.mel_first
        if drop > 0:
            st.mel, st.mel_first = st.mel[drop:], st.mel_first + drop
        return jobs

    def flush(self, tail: np.ndarray | None = None) -> list[PatchJob]:
        """End of stream: ``tail`` (the last samples), then zero samples, enough to complete every step
        that holds a received sample (steps of padding alone are not emitted)."""
        st, tok = self.state, self.tok
        jobs = self.take(tail) if tail is not None and tail.size else []
        st.flushed = True
        if st.samples_in == 0:
            return jobs
        steps = (st.samples_in - 1) // tok.step_samples + 1
        a = tok.audio
        needed = (steps * tok.cfg.stride_frames - 1) * a.hop_length + a.win_length
        return jobs + self._push(np.zeros(max(0, needed - st.samples_in)))

    def abandon(self, job: PatchJob) -> None:
        self.state.gap = True

    def emit(self, job: PatchJob, enc: Encoded) -> list[StepCodes]:
        st = self.state
        if job.step != st.next_emit:
            st.gap = True
        st.next_emit = job.step + 1
        if st.flushed and job.step * self.tok.step_samples >= st.samples_in:
            return []
        gap, st.gap = st.gap, False
        vectors = enc.z.astype(np.float32) if self.tok.vectors else None
        return [StepCodes(STREAM, job.step, enc.codes, vectors, gap)]
