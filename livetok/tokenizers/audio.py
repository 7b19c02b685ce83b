"""Streaming audio tokenizer: samples -> log-mel -> fine (50 Hz) and coarse (12.5 Hz) RVQ tokens.

Frame rate and codes, with the defaults (16 kHz, 25 ms window, 10 ms hop, 80 mels):

* fine step k covers ``[20k, 20k + 20)`` ms: log-mel frames 2k and 2k+1 (160 values) -> 4 x 1024 codes
* coarse step m covers ``[80m, 80m + 80)`` ms: frames 8m .. 8m+7 (640 values) -> 2 x 1024 codes

Algorithmic latency: the last frame of a step reaches ``window - hop`` (15 ms) past the step's end,
so a step's tokens are emitted as soon as the sample at ``end + 15 ms`` has arrived (the resampler's
filter delay, when the input is not already mono at the model rate, comes on top).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import av
import numpy as np
from threadpoolctl import threadpool_limits

from livetok.config.tokenizer import AudioConfig
from livetok.tokenizers.audio_frontend import StreamingLogMel, StreamingResampler
from livetok.tokenizers.codebooks import CodebookSet
from livetok.tokenizers.rvq import ScaleQuantizer
from livetok.wire import Clock, Flag, Modality, Scale, TokenPacket


class AudioTokenizer:
    """Shared, stateless part: front-end parameters and the two quantizers. Streams hold state."""

    def __init__(self, cfg: AudioConfig, codebooks: CodebookSet) -> None:
        # NumPy's BLAS serves only this path (video and fitting use torch). Its matrices are a few
        # rows, too small to gain from threads, and idle BLAS threads spin: one thread costs less CPU.
        threadpool_limits(limits=1, user_api="blas")
        self.cfg = cfg
        self.codebook_id = codebooks.codebook_id
        self.quantizers = {
            scale: ScaleQuantizer(arr.mean, arr.proj, arr.codebooks, getattr(cfg, scale).levels)
            for scale in ("fine", "coarse")
            for arr in [codebooks.scale("audio", scale)]
        }
        self.frames_per_step = {"fine": cfg.fine_frames, "coarse": cfg.coarse_frames}

    @property
    def step_samples(self) -> dict[str, int]:
        """Samples per token step at the model rate, per scale."""
        return {s: n * self.cfg.hop_length for s, n in self.frames_per_step.items()}

    @property
    def latency_samples(self) -> int:
        """Samples past a step's end that its tokens wait for (window - hop)."""
        return self.cfg.win_length - self.cfg.hop_length

    def stream(self, source: str, t0_ns: int = 0, clock: Clock = Clock.MEDIA, vectors: bool = False,
               seq0: dict[str, int] | None = None) -> AudioStream:
        """A new stream whose step 0 starts at ``t0_ns``; ``seq0``: the first sequence number per scale
        (a stream restarted after lost input continues its predecessor's numbering)."""
        return AudioStream(self, source, t0_ns, clock, vectors, seq0)


@dataclass
class AudioStreamState:
    """Everything an audio stream carries between calls; ``AudioStream.reset`` starts it anew."""

    mel: np.ndarray  # [F, n_mels] log-mel frames not yet consumed by every scale
    mel_first: int = 0  # absolute index of mel[0]
    samples_in: int = 0  # model-rate samples received
    next_step: dict[str, int] = field(default_factory=lambda: {"fine": 0, "coarse": 0})
    pending: dict[str, Flag] = field(default_factory=lambda: {"fine": Flag.NONE, "coarse": Flag.NONE})


class AudioStream:
    """One source's streaming audio tokenizer. ``push*`` returns the packets that became complete."""

    def __init__(self, tok: AudioTokenizer, source: str, t0_ns: int, clock: Clock, vectors: bool,
                 seq0: dict[str, int] | None = None) -> None:
        self.tok = tok
        self.seq0 = {"fine": 0, "coarse": 0, **(seq0 or {})}
        self.source = source
        self.t0_ns = t0_ns
        self.clock = clock
        self.vectors = vectors
        self.resampler = StreamingResampler(tok.cfg.sample_rate)
        self.logmel = StreamingLogMel(tok.cfg)
        self.state = self._new_state()

    def _new_state(self) -> AudioStreamState:
        return AudioStreamState(mel=np.zeros((0, self.tok.cfg.n_mels)))

    def reset(self, t0_ns: int | None = None) -> None:
        """Forget all state (after a discontinuity); the next packet carries DISCONTINUITY."""
        self.resampler = StreamingResampler(self.tok.cfg.sample_rate)
        self.logmel.reset()
        self.state = self._new_state()
        self._flag_next(Flag.DISCONTINUITY)
        if t0_ns is not None:
            self.t0_ns = t0_ns

    def mark_gap(self) -> None:
        """Input was lost before the next samples: flag the next packet of each scale."""
        self._flag_next(Flag.GAP)

    def _flag_next(self, flag: Flag) -> None:
        for scale in self.state.pending:
            self.state.pending[scale] |= flag

    def push_frame(self, frame: av.AudioFrame) -> list[TokenPacket]:
        """A decoded PyAV frame of any rate/layout/format (its pts is cleared: read it first)."""
        return self.push_samples(self.resampler.push(frame))

    def push_array(self, samples: np.ndarray, rate: int) -> list[TokenPacket]:
        """``samples [C, N]`` float at ``rate`` Hz."""
        if rate == self.tok.cfg.sample_rate and samples.shape[0] == 1 and self.resampler.samples_out == 0:
            return self.push_samples(samples[0])
        return self.push_samples(self.resampler.push_array(samples, rate))

    def push_samples(self, samples: np.ndarray) -> list[TokenPacket]:
        """Mono samples ``[n]`` already at the model rate."""
        st = self.state
        st.samples_in += samples.size
        new = self.logmel.push(samples)
        if new.size:
            st.mel = np.concatenate([st.mel, new]) if st.mel.size else new
        return self._emit()

    def flush(self) -> list[TokenPacket]:
        """End of stream: drain the resampler and zero-pad so every received sample is in a step."""
        st = self.state
        tail = self.resampler.flush()
        packets = self.push_samples(tail) if tail.size else []
        received = st.samples_in
        coarse = self.tok.step_samples["coarse"]
        covered_to = -(-received // coarse) * coarse  # round up to a whole coarse step
        if received and covered_to + self.tok.latency_samples > received:
            pad = covered_to + self.tok.latency_samples - received
            fine = self.tok.step_samples["fine"]
            # Only steps that hold received samples: padding alone never makes a token.
            packets += [
                p for p in self.push_samples(np.zeros(pad))
                if (p.seq - self.seq0[p.stream_name]) * (fine if p.scale == Scale.FINE else coarse) < received
            ]
        return packets

    def _emit(self) -> list[TokenPacket]:
        st = self.state
        mel_end = st.mel_first + st.mel.shape[0]
        out: list[TokenPacket] = []
        for scale, per_step in self.tok.frames_per_step.items():
            first = st.next_step[scale]
            n = (mel_end - first * per_step) // per_step
            if n <= 0:
                continue
            lo = first * per_step - st.mel_first
            x = st.mel[lo : lo + n * per_step].reshape(n, per_step * st.mel.shape[1])
            enc = self.tok.quantizers[scale].encode_rows(x)
            out += self._packets(scale, first, enc.codes, enc.z if self.vectors else None)
            st.next_step[scale] = first + n
        keep_from = min(st.next_step[s] * f for s, f in self.tok.frames_per_step.items())
        if keep_from > st.mel_first:
            st.mel = st.mel[keep_from - st.mel_first :]
            st.mel_first = keep_from
        return out

    def _packets(self, scale: str, first: int, codes: np.ndarray, z: np.ndarray | None) -> list[TokenPacket]:
        step = self.tok.step_samples[scale]
        rate = self.tok.cfg.sample_rate
        packets = []
        for i in range(codes.shape[0]):
            k = first + i
            # Every audio packet carries its whole (1 x 1) grid and depends on no earlier packet: a
            # keyframe, where a consumer may start (docs/wire-format.md, 2.4).
            flags, self.state.pending[scale] = self.state.pending[scale] | Flag.KEYFRAME, Flag.NONE
            packets.append(
                TokenPacket(
                    source=self.source, modality=Modality.AUDIO, scale=Scale[scale.upper()], seq=self.seq0[scale] + k,
                    start_ns=self.t0_ns + k * step * 1_000_000_000 // rate,
                    end_ns=self.t0_ns + (k + 1) * step * 1_000_000_000 // rate,
                    clock=self.clock, codebook_id=self.tok.codebook_id, flags=flags, grid=(1, 1),
                    codes=codes[i : i + 1], vectors=None if z is None else z[i : i + 1].astype(np.float16),
                )
            )
        return packets
