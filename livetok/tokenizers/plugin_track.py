"""One source through one plug-in tokenizer: media in, named-stream :class:`TokenPacket` s out.

The three phases (:mod:`livetok.tokenizers.protocol`) split across sources: each track's ``take``
gives jobs; :func:`run_tokenizer` runs every job of one tokenizer (all its sources) in one batched
call; each job's track turns the result into packets (``emit``). A model that raises is counted by
the caller; its jobs are abandoned, so the stream's next packet is flagged GAP.

Packets: ``scale=None, stream=NAME``, ``seq`` per (source, modality, stream) from 0 and never reset
within the run, media times (audio: step k of a stream begun at ``base_ns`` covers
``base_ns + StreamSpec.step_bounds_ns(k)``; video: the frame's own interval), KEYFRAME (every step is a
whole grid), GAP after lost input or a failed model call, DISCONTINUITY after a restart.

Audio input is resampled to the model's rate and downmixed (libswresample, as the built-in path;
mono input at the model's rate is taken as it is);
like :class:`~livetok.tokenizers.session.AudioTrack`, a block that does not continue the sample
count (a discontinuity, an overflow, a rate change, samples lost upstream) ends the running stream
(every received sample into a step) and starts a new one at the block's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from livetok.media.continuity import continues, expected_ns
from livetok.tokenizers.audio_frontend import StreamingResampler
from livetok.tokenizers.kinds.base import Plugin
from livetok.tokenizers.protocol import StepCodes
from livetok.wire import Clock, Flag, Modality, TokenPacket


@dataclass
class _Run:
    """One uninterrupted stream of a track: its kind stream, where it started, its first flag."""

    stream: Any
    base_ns: int
    flag: Flag = Flag.NONE


class _Packets:
    """Numbering and packet making shared by both modalities."""

    def __init__(self, plugin: Plugin, source: str, clock: Clock) -> None:
        self.plugin, self.source, self.clock = plugin, source, clock
        self.seq = 0
        self.modality = Modality.AUDIO if plugin.modality == "audio" else Modality.VIDEO

    def packet(self, step: StepCodes, start_ns: int, end_ns: int, flag: Flag) -> TokenPacket:
        spec = self.plugin.spec
        flags = Flag.KEYFRAME | flag | (Flag.GAP if step.gap else Flag.NONE)
        vectors = None if step.vectors is None else step.vectors.astype(np.float16)
        p = TokenPacket(self.source, self.modality, None, self.seq, start_ns, end_ns, self.clock,
                        self.plugin.codebook_id, flags, spec.grid, np.ascontiguousarray(step.codes, np.uint16),
                        None, vectors, stream=spec.name)
        self.seq += 1
        return p


class PluginAudioTrack(_Packets):
    """One source's audio, any rate and layout, through one plug-in audio tokenizer."""

    def __init__(self, plugin: Plugin, source: str, clock: Clock = Clock.MEDIA) -> None:
        super().__init__(plugin, source, clock)
        assert plugin.sample_rate is not None
        self.runs: dict[int, _Run] = {}  # id(kind stream) -> its run, while its jobs may still come back
        self.run: _Run | None = None
        self.resampler = StreamingResampler(plugin.sample_rate)
        self.rate = 0
        self.samples_in = 0
        self.restarts = 0

    def take(self, samples: np.ndarray, rate: int, media_ns: int, *, discontinuity: bool = False,
             overflow: bool = False) -> list[Any]:
        """``samples [C, N]`` float32 at ``rate`` Hz from ``media_ns`` -> jobs for the batched call."""
        jobs: list[Any] = []
        cause = self._break(samples.shape[1], rate, media_ns, discontinuity, overflow)
        if cause is not None:
            jobs += self.end()
        if self.run is None:
            stream = self.plugin.impl.stream(self.source)
            self.run = _Run(stream, media_ns, Flag.DISCONTINUITY if cause == Flag.DISCONTINUITY else Flag.NONE)
            if cause == Flag.GAP:
                stream.mark_gap()
            self.restarts += cause is not None
            self.runs[id(stream)] = self.run
            self.resampler = StreamingResampler(self.resampler.rate)
            self.rate, self.samples_in = rate, 0
        self.samples_in += samples.shape[1]
        return jobs + self.run.stream.take(self._mono(samples, rate))

    def _mono(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """Mono float32 at the model's rate: as given when it already is (as the built-in path does:
        libswresample's copy cost about 40 us a block), else through the resampler."""
        if rate == self.resampler.rate and samples.shape[0] == 1 and self.resampler.samples_out == 0:
            return np.asarray(samples[0], np.float32)
        return self.resampler.push_array(samples, rate)

    def _break(self, n: int, rate: int, media_ns: int, discontinuity: bool, overflow: bool) -> Flag | None:
        if self.run is None:
            return None
        if discontinuity:
            return Flag.DISCONTINUITY
        expected = expected_ns(self.run.base_ns, self.samples_in, self.rate)
        if overflow or rate != self.rate or not continues(expected, media_ns, n, rate):
            return Flag.GAP
        return None

    def end(self) -> list[Any]:
        """End of the running stream: the resampler drained, silence to complete its last step."""
        run, self.run = self.run, None
        if run is None:
            return []
        return run.stream.flush(self.resampler.flush())

    def emit(self, job: Any, output: Any) -> list[TokenPacket]:
        run = self.runs[id(job.stream)]
        out = []
        for step in job.stream.emit(job, output):
            start, end = self.plugin.spec.step_bounds_ns(step.step)
            out.append(self.packet(step, run.base_ns + start, run.base_ns + end, run.flag))
            run.flag = Flag.NONE
        self._forget(run)
        return out

    def abandon(self, job: Any) -> None:
        job.stream.abandon(job)
        self._forget(self.runs[id(job.stream)])

    def _forget(self, run: _Run) -> None:
        if run is not self.run and not getattr(run.stream.state, "in_flight", 0):
            self.runs.pop(id(run.stream), None)


class PluginVideoTrack(_Packets):
    """One source's frames (the model images of the capture path) through one plug-in video tokenizer."""

    def __init__(self, plugin: Plugin, source: str, clock: Clock = Clock.MEDIA) -> None:
        super().__init__(plugin, source, clock)
        assert plugin.image is not None
        self.stream = plugin.impl.stream(source)
        self.times: dict[int, tuple[int, int, Flag]] = {}  # frame index -> its interval and flag
        self.flag = Flag.NONE

    def take(self, image: np.ndarray, start_ns: int, end_ns: int, *, discontinuity: bool = False) -> list[Any]:
        """One ``[h, w, 3]`` uint8 RGB image -> its job (centre-cropped to the model's size)."""
        from livetok.tokenizers.models.video import model_image

        h, w = self.plugin.image  # type: ignore[misc]
        if discontinuity and self.seq:
            self.flag = Flag.DISCONTINUITY
        img = image if image.shape[:2] == (h, w) else model_image(image, h, w, "crop")
        jobs = self.stream.take(img)
        for job in jobs:
            self.times[job.frame] = (start_ns, end_ns, self.flag)
        self.flag = Flag.NONE
        return list(jobs)

    def emit(self, job: Any, output: Any) -> list[TokenPacket]:
        start, end, flag = self.times.pop(job.frame)
        return [self.packet(step, start, end, flag) for step in self.stream.emit(job, output)]

    def abandon(self, job: Any) -> None:
        _, _, flag = self.times.pop(job.frame)
        self.flag |= flag
        self.stream.abandon(job)

    def mark_gap(self) -> None:
        self.stream.mark_gap()


Track = PluginAudioTrack | PluginVideoTrack


def run_tokenizer(plugin: Plugin, work: list[tuple[Track, Any]]) -> tuple[list[list[TokenPacket]], Exception | None]:
    """Every job of one tokenizer in one batched call: per job (in ``work``'s order) its packets, and
    the model's error when it failed (its jobs abandoned: each stream's next packet is GAP; the daemon
    counts it and goes on, a file's tokenization raises it)."""
    if not work:
        return [], None
    try:
        outputs = plugin.impl.run([job for _, job in work])
    except Exception as err:
        for track, job in work:
            track.abandon(job)
        return [[] for _ in work], err
    return [track.emit(job, result) for (track, job), result in zip(work, outputs, strict=True)], None
