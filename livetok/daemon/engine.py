"""The daemon's synchronous core: captures in, aligned and per-modality packets out.

Everything stateful (tokenizer streams, clock models, aligners, sinks) lives here and is touched by
one thread only, the tokenizer worker, so none of it needs a lock and none of it runs on the event
loop. Time flows like this:

    capture media_ns --ClockModel--> host monotonic ns --Aligner--> steps --WallClock--> UNIX ns

Video frames from all sources are tokenized in one batched call; audio blocks one by one.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from livetok.config import LivetokConfig
from livetok.daemon.metrics import Metrics
from livetok.daemon.sinks import Sink
from livetok.streams.types import AudioCapture, VideoCapture
from livetok.sync import Aligner, BeepDetector, ClockModel, FlashDetector, SkewEstimator, WallClock
from livetok.tokenizers import Tokenizers
from livetok.tokenizers.audio import AudioStream
from livetok.tokenizers.video import VideoStream
from livetok.wire import AlignedStep, Clock, Modality, Scale, TokenPacket

NS = 1_000_000_000


@dataclass
class AudioState:
    """One audio source's tokenizer stream and the media time of its sample 0."""

    stream: AudioStream
    base_media_ns: int
    rate: int
    samples_in: int = 0  # at the source rate
    # Host time up to which each scale's tokens are out; the audio watermark is the lesser, since
    # a coarse step comes out up to 60 ms after the fine steps that cover the same time.
    done_ns: dict[Scale, int] = field(default_factory=dict)


@dataclass
class SourceRuntime:
    """Per-source state: the clock model, and the tokenizer streams the groups use."""

    name: str
    clock: ClockModel
    video: VideoStream | None = None
    audio: AudioState | None = None
    video_group: str | None = None
    audio_group: str | None = None
    flash: FlashDetector | None = None
    beep: BeepDetector | None = None


@dataclass
class GroupRuntime:
    name: str
    aligner: Aligner
    skew: SkewEstimator | None = None


@dataclass
class Engine:
    """Not thread-safe by design: call every method from the one worker thread."""

    cfg: LivetokConfig
    toks: Tokenizers
    sinks: list[Sink]
    metrics: Metrics = field(default_factory=Metrics)
    wall: WallClock = field(default_factory=WallClock)
    sources: dict[str, SourceRuntime] = field(default_factory=dict)
    groups: dict[str, GroupRuntime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        latency = {s.name: round(s.latency_ms * 1e6) for s in self.cfg.sources}
        self.audio_latency = {s.name: round(s.audio_latency_ms * 1e6) for s in self.cfg.sources}
        markers = {s.name for s in self.cfg.sources if s.kind == "synthetic"}
        step_ns = round(self.cfg.alignment.step_ms * 1e6)
        lateness_ns = round(self.cfg.alignment.lateness_ms * 1e6)
        for g in self.cfg.effective_groups():
            modalities = [m for m, n in ((Modality.VIDEO, g.video), (Modality.AUDIO, g.audio)) if n is not None]
            aligner = Aligner(
                group=g.name, modalities=modalities, step_ns=step_ns, lateness_ns=lateness_ns,
                to_wire=self.wall.to_unix, clock=Clock.UNIX,
            )
            with_markers = g.markers or g.video in markers or g.audio in markers
            self.groups[g.name] = GroupRuntime(g.name, aligner, SkewEstimator() if with_markers else None)
            if g.video is not None:
                rt = self._runtime(g.video, latency)
                rt.video = self.toks.video.stream(g.video, Clock.UNIX)
                rt.video_group = g.name
                rt.flash = FlashDetector() if with_markers else None
            if g.audio is not None:
                rt = self._runtime(g.audio, latency)
                rt.audio_group = g.name
                rt.beep = BeepDetector() if with_markers else None

    def _runtime(self, name: str, latency: dict[str, int]) -> SourceRuntime:
        if name not in self.sources:
            self.sources[name] = SourceRuntime(name, ClockModel(latency_ns=latency.get(name, 0)))
        return self.sources[name]

    # -- video -----------------------------------------------------------------------------------
    def on_video(self, caps: list[VideoCapture], dropped: frozenset[str] = frozenset()) -> None:
        """A batch of frames from any sources: one tokenizer call for all of them. ``dropped``:
        sources whose queue dropped frames since the last batch (their next packet is a GAP)."""
        for name in dropped:
            rt = self.sources.get(name)
            if rt is not None and rt.video is not None:
                rt.video.mark_gap()
                self.metrics.count(f"gaps.{name}.video")
        caps = [c for c in caps if c.source in self.sources and self.sources[c.source].video is not None]
        if not caps:
            return
        codes = self.toks.video.encode(np.stack([c.image for c in caps]), vectors=self.toks.cfg.video.vectors)
        for i, cap in enumerate(caps):
            rt = self.sources[cap.source]
            assert rt.video is not None and rt.video_group is not None
            if cap.discontinuity:
                rt.clock.reset()
                if rt.video.state.seq:  # the very first frame is a start, not a gap
                    rt.video.mark_gap()
                    self.metrics.count(f"gaps.{cap.source}.video")
            rt.clock.observe(cap.media_ns, cap.arrival_ns)
            start = rt.clock.to_host(cap.media_ns)
            end = start + max(1, cap.duration_ns)
            group = self.groups[rt.video_group]
            if rt.flash is not None and group.skew is not None:
                onset = rt.flash.feed(cap.image, start)
                if onset is not None:
                    self._skew(group, group.skew.add_flash(onset))
            now = time.monotonic_ns()
            for p in rt.video.packets(cap.image, codes, i, start, end):
                self.metrics.observe(f"latency.video.{p.scale.name.lower()}", now - start)
                self._emit(group, p)
            group.aligner.watermark(Modality.VIDEO, end)

    # -- audio -----------------------------------------------------------------------------------
    def on_audio(self, cap: AudioCapture) -> None:
        rt = self.sources.get(cap.source)
        if rt is None or rt.audio_group is None:
            return
        group = self.groups[rt.audio_group]
        st = rt.audio
        if st is not None and not cap.discontinuity:
            expected = st.base_media_ns + st.samples_in * NS // st.rate
            # Samples lost upstream (overflow, dropped blocks) would shift every later timestamp:
            # start the stream again at the block's own time instead, flagged.
            # Half a block: timestamps jitter far less, and a lost block moves them by a whole one.
            tolerance = max(cap.samples.shape[1] * NS // cap.rate // 2, 2_000_000)
            if cap.overflow or cap.rate != st.rate or abs(cap.media_ns - expected) > tolerance:
                self.metrics.count(f"gaps.{cap.source}.audio")
                self._flush_audio(rt, group)
                st = None
        if st is None or cap.discontinuity:
            if cap.discontinuity:
                rt.clock.reset()
            stream = self.toks.audio.stream(cap.source, 0, Clock.MEDIA)
            if rt.audio is not None:
                stream.mark_gap()
            st = rt.audio = AudioState(stream, cap.media_ns, cap.rate)
        n = cap.samples.shape[1]
        # A block is complete (can arrive) only once its last sample exists: observe its end.
        rt.clock.observe(cap.media_ns + n * NS // cap.rate, cap.arrival_ns)
        if rt.beep is not None and group.skew is not None:
            onset = rt.beep.feed(cap.samples.mean(axis=0), self._audio_host(rt, cap.media_ns), cap.rate)
            if onset is not None:
                self._skew(group, group.skew.add_beep(onset))
        st.samples_in += n
        self._audio_packets(rt, group, st.stream.push_array(cap.samples, cap.rate))

    def _audio_packets(self, rt: SourceRuntime, group: GroupRuntime, packets: list[TokenPacket]) -> None:
        st = rt.audio
        assert st is not None
        now = time.monotonic_ns()
        for p in packets:
            start = self._audio_host(rt, st.base_media_ns + p.start_ns)
            end = self._audio_host(rt, st.base_media_ns + p.end_ns)
            p = dataclasses.replace(p, start_ns=start, end_ns=max(start, end), clock=Clock.UNIX)
            self.metrics.observe(f"latency.audio.{p.scale.name.lower()}", now - p.end_ns)
            st.done_ns[p.scale] = p.end_ns
            self._emit(group, p)
        if len(st.done_ns) == 2:
            group.aligner.watermark(Modality.AUDIO, min(st.done_ns.values()))

    def _audio_host(self, rt: SourceRuntime, media_ns: int) -> int:
        return rt.clock.to_host(media_ns) - self.audio_latency.get(rt.name, 0)

    def _flush_audio(self, rt: SourceRuntime, group: GroupRuntime) -> None:
        if rt.audio is not None:
            self._audio_packets(rt, group, rt.audio.stream.flush())

    # -- output ----------------------------------------------------------------------------------
    def _skew(self, group: GroupRuntime, skew_ns: int | None) -> None:
        """A new median A/V skew from the markers: stamped on the group's steps from now on."""
        if skew_ns is not None:
            group.aligner.set_skew(skew_ns)
            self.metrics.observe(f"skew.{group.name}", skew_ns)

    def _emit(self, group: GroupRuntime, p: TokenPacket) -> None:
        """Host-time packet -> the group's aligner, and to the sinks in wire (UNIX) time."""
        group.aligner.add(p)
        wire = dataclasses.replace(p, start_ns=self.wall.to_unix(p.start_ns), end_ns=self.wall.to_unix(p.end_ns))
        for sink in self.sinks:
            sink.write(wire)

    def tick(self, now_ns: int | None = None) -> list[AlignedStep]:
        """Emit every step that is complete or past its lateness bound."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        out = []
        for group in self.groups.values():
            for step in group.aligner.poll(now):
                out.append(self._step(group, step, now))
        for sink in self.sinks:
            sink.flush()
        self._gauges()
        return out

    def _step(self, group: GroupRuntime, step: AlignedStep, now: int) -> AlignedStep:
        self.metrics.observe(f"latency.step.{group.name}", now - self.wall.to_mono(step.end_ns))
        for sink in self.sinks:
            sink.write(step)
        return step

    def flush(self) -> list[AlignedStep]:
        """Shutdown: drain audio streams and every pending step."""
        for rt in self.sources.values():
            if rt.audio is not None and rt.audio_group is not None:
                self._flush_audio(rt, self.groups[rt.audio_group])
        now = time.monotonic_ns()
        out = []
        for group in self.groups.values():
            for step in group.aligner.flush():
                out.append(self._step(group, step, now))
        for sink in self.sinks:
            sink.flush()
        return out

    def _gauges(self) -> None:
        for rt in self.sources.values():
            self.metrics.set(f"drift_ppm.{rt.name}", round(rt.clock.drift_ppm, 3))
