"""The daemon's pure core: captured frames and audio blocks in, token packets and aligned steps out.

A single-threaded stage with no I/O and no sinks: the runner calls every method from its one
tokenizer worker thread and hands what comes back to the event loop. Time flows like this::

    capture media_ns --SourceClock--> host monotonic ns --Aligner--> steps (host ns)
                                                           (the runner converts to UNIX ns once,
                                                            where packets are encoded)

Tokenization goes through the same code as ``livetok tokenize`` (:func:`encode_video`,
:class:`AudioTrack`): video frames of every source in one batched call, audio block by block.
Packets keep the tokenizer's media times (``Clock.MEDIA``) and travel with the host interval their
source's clock maps them to (:class:`HostPacket`).

A network stream's, a camera's or a microphone's first output is *held* until its clock has settled
(:class:`~livetok.sync.settle.Settling`: its first arrivals have shown the delay floor; 0.5-3 s of
host time, once per media timeline), then mapped and emitted in the order it was made: so the first
token's time is as true as the hundredth's. While any source of a group holds, the group's steps
wait too (they would otherwise go out without that source and drop its packets as late).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from livetok.config import Group, LivetokConfig
from livetok.media.continuity import clock_restarted
from livetok.pipeline.plugins import Batch, audio_tracks, end_audio, plugin_audio, video_tracks
from livetok.pipeline.results import ClockState, EncodedFrames, EngineOutput, HostPacket
from livetok.streams.types import AudioCapture, VideoCapture
from livetok.sync import Aligner, BeepDetector, ClockModel, FlashDetector, SkewEstimator, SourceClock
from livetok.sync.settle import Settling
from livetok.tokenizers import Tokenizers
from livetok.tokenizers.kinds.base import Plugin
from livetok.tokenizers.plugin_track import PluginAudioTrack, PluginVideoTrack
from livetok.tokenizers.session import AudioTrack, VideoItem, encode_images, encode_video
from livetok.tokenizers.video import VideoStream
from livetok.wire import Modality, TokenPacket

NS = 1_000_000_000
# Source kinds whose first output waits for their clock to settle: everything that captures in real
# time. Files, lavfi and the synthetic source are paced by livetok: their arrival is their capture.
HOLDING_KINDS = frozenset({"stream", "v4l2", "mic"})


def _settle_ms(settling: Settling | None) -> float | None:
    return None if settling is None or not settling.settled else round(settling.held_ns / 1e6, 1)


@dataclass(frozen=True, slots=True)
class _Held:
    """What a source made before its clock settled: mapped and emitted, in this order, once it has.
    ``onset_ns``: a sync marker's media time (a flash on this frame, a beep in these samples)."""

    modality: Modality
    group: str
    packets: list[TokenPacket]
    media_ns: int = 0  # video: the frame's media time
    duration_ns: int = 0  # video: the frame's duration
    onset_ns: int | None = None


@dataclass
class _Source:
    """Per-source state: one clock for all its tracks, the token streams the groups use, markers."""

    name: str
    clock: SourceClock
    audio_latency_ns: int
    video: VideoStream | None = None
    audio: AudioTrack | None = None
    video_group: str | None = None
    audio_group: str | None = None
    flash: FlashDetector | None = None
    beep: BeepDetector | None = None
    audio_done: dict[str, int] = field(default_factory=dict)  # host end of the last packet per stream
    builtin_audio: bool = True  # the built-in kinds' streams (logmel-rvq, patch-rvq) of each modality
    builtin_video: bool = True
    audio_plugins: list[PluginAudioTrack] = field(default_factory=list)
    video_plugins: list[PluginVideoTrack] = field(default_factory=list)
    held: list[_Held] = field(default_factory=list)  # output made while the clock settles


@dataclass
class _Group:
    name: str
    aligner: Aligner[HostPacket]
    skew: SkewEstimator | None = None
    members: tuple[str, ...] = ()  # its sources' names


class Engine:
    """Not thread-safe by design: call every method from one thread (the runner's worker); only
    :meth:`encode` runs in another, and reads nothing but a frozenset replaced whole."""

    def __init__(self, cfg: LivetokConfig, toks: Tokenizers) -> None:
        self.toks = toks
        self.plugins: dict[str, Plugin] = toks.plugins
        self.sources: dict[str, _Source] = {}
        self.groups: dict[str, _Group] = {}
        self._builtin_video: frozenset[str] = frozenset()  # sources that feed patch-rvq (for encode)
        for g in cfg.effective_groups():
            self.add_group(g, cfg)

    def add_group(self, g: Group, cfg: LivetokConfig) -> None:
        """Start aligning group ``g`` (its sources' clocks and token streams start anew unless another
        group already uses them). A reload adds the groups it changed."""
        by_name = {s.name: s for s in cfg.sources}
        synthetic = {s.name for s in cfg.sources if s.kind == "synthetic"}
        step_ns = round(cfg.alignment.step_ms * 1e6)
        lateness_ns = round(cfg.alignment.lateness_ms * 1e6)
        modalities = [m for m, n in ((Modality.VIDEO, g.video), (Modality.AUDIO, g.audio)) if n is not None]
        aligner = Aligner[HostPacket](g.name, modalities=modalities, step_ns=step_ns, lateness_ns=lateness_ns)
        markers = g.markers or g.video in synthetic or g.audio in synthetic
        members = tuple(n for n in (g.video, g.audio) if n is not None)
        self.groups[g.name] = _Group(g.name, aligner, SkewEstimator() if markers else None, members)
        for name, modality in ((g.video, Modality.VIDEO), (g.audio, Modality.AUDIO)):
            if name is None:
                continue
            src = self.sources.get(name)
            if src is None:
                conf = by_name[name]
                model = ClockModel(latency_ns=round(conf.latency_ms * 1e6))
                # A stream's start comes as a backlog after FFmpeg's probing, a busy machine delays
                # any device's first items: hold them until the delay floor shows. Both sources of a
                # camera + microphone group settle so, and agree from the first token.
                clock = SourceClock(model, settling=Settling() if conf.kind in HOLDING_KINDS else None)
                src = self.sources[name] = _Source(name, clock, round(conf.audio_latency_ms * 1e6))
            fed = cfg.tokenizers_of(name, modality.name.lower())
            builtin = any(e.kind in ("logmel-rvq", "patch-rvq") for e in fed)
            names = [e.name for e in fed]
            if modality == Modality.VIDEO:
                src.video, src.video_group = self.toks.video.stream(name), g.name
                src.flash = FlashDetector() if markers else None
                src.builtin_video, src.video_plugins = builtin, video_tracks(self.plugins, names, name)
            else:
                src.audio, src.audio_group = AudioTrack(self.toks, name), g.name
                src.beep = BeepDetector() if markers else None
                src.builtin_audio, src.audio_plugins = builtin, audio_tracks(self.plugins, names, name)
        self._refresh_builtin_video()

    def _refresh_builtin_video(self) -> None:
        self._builtin_video = frozenset(n for n, s in self.sources.items() if s.video is not None and s.builtin_video)

    def remove_group(self, name: str) -> EngineOutput:
        """Stop aligning group ``name``: its sources' audio is flushed (every sample into a token), its
        pending steps are emitted, and sources no other group uses are forgotten."""
        out = EngineOutput()
        if name not in self.groups:
            return out
        for member in self.groups[name].members:
            if member in self.sources:
                self._settle(self.sources[member], out)  # whatever it held goes out with the group
        group = self.groups.pop(name)
        for src in list(self.sources.values()):
            if src.audio_group == name and src.audio is not None:
                self._audio_packets(src, group, self._audio_flush(src, out), out)
                src.audio, src.audio_group, src.beep, src.audio_done = None, None, None, {}
                src.audio_plugins = []
            if src.video_group == name:
                src.video, src.video_group, src.flash, src.video_plugins = None, None, None, []
            if src.video is None and src.audio is None:
                del self.sources[src.name]
        out.steps += group.aligner.flush()
        self._refresh_builtin_video()
        return out

    # -- input -----------------------------------------------------------------------------------
    def encode(self, caps: list[VideoCapture], fine_levels: list[int] | None = None,
               greedy: bool = False) -> EncodedFrames | None:
        """The pure, heavy part of :meth:`on_video` — the built-in kind's batched call, ``[B, S, S, 3] ->
        codes`` — for the frames of sources that feed it (a source feeding only plug-ins costs it
        nothing). It reads one frozenset of the engine's, so the runner runs it in a thread of its own
        while audio goes on in the engine's (None for no such frames). ``fine_levels [B]``, ``greedy``:
        the overload plan (:mod:`livetok.pipeline.shedding`)."""
        wanted = self._builtin_video  # one read: replaced whole by add_group/remove_group, never changed
        idx = tuple(i for i, c in enumerate(caps) if c.source in wanted)
        if not idx:
            return None
        levels = None if fine_levels is None else [fine_levels[i] for i in idx]
        return EncodedFrames(idx, encode_images(self.toks, [caps[i].image for i in idx], levels, greedy))

    def on_video(self, caps: list[VideoCapture], lost: frozenset[str] = frozenset(),
                 codes: EncodedFrames | None = None) -> EngineOutput:
        """Frames of any sources -> one batched tokenizer call (or ``codes``, from :meth:`encode` of the
        same ``caps``). ``lost``: sources whose queue dropped frames since the last call (their next
        packet is flagged GAP)."""
        out = EngineOutput()
        for name in lost:
            src = self.sources.get(name)
            if src is not None and src.video is not None:
                src.video.mark_gap()
                for t in src.video_plugins:
                    t.mark_gap()
                out.gaps.append((name, "video"))
        items: list[VideoItem] = []
        frames: list[tuple[_Source, int, int, int | None]] = []  # source, media, duration, host (None: held)
        kept: list[int] = []  # indices in ``caps`` (and ``codes``) of the frames the built-in kind tokenizes
        item_of: list[int | None] = []  # per frame, its index in ``items`` (None: no built-in streams)
        images: list[VideoCapture] = []
        batch = Batch(self.plugins)
        for i, cap in enumerate(caps):
            src = self.sources.get(cap.source)
            if src is None or src.video is None:
                continue
            if cap.discontinuity:
                if self._clock_restarts(src, cap.media_ns):
                    self._settle(src, out)
                    # this batch's earlier frames of the source: on the old timeline, mapped by it
                    frames = [(fs, m, d, fs.clock.to_host(m) if h is None and fs is src else h)
                              for fs, m, d, h in frames]
                    src.clock.reset()
                if src.video.state.seq:  # the very first frame is a start, not a gap
                    src.video.mark_gap()
                    out.gaps.append((src.name, "video"))
            src.clock.observe(cap.media_ns, cap.arrival_ns)
            duration = max(1, cap.duration_ns)
            host = None
            if src.clock.settled:
                self._release(src, out)
                host = src.clock.to_host(cap.media_ns)
            item_of.append(None)
            if src.builtin_video:
                kept.append(i)
                item_of[-1] = len(items)
                items.append(VideoItem(src.video, cap.image, cap.media_ns, cap.media_ns + duration))
            for t in src.video_plugins:
                batch.add(t, t.take(cap.image, cap.media_ns, cap.media_ns + duration,
                                    discontinuity=cap.discontinuity), len(frames))
            frames.append((src, cap.media_ns, duration, host))
            images.append(cap)
        packets_of = encode_video(self.toks, items, codes.select(kept) if codes is not None else None)
        plugged = batch.run(out.model_errors)
        for k, ((src, media, duration, host), cap) in enumerate(zip(frames, images, strict=True)):
            group = self.groups[src.video_group or ""]
            flash = src.flash is not None and src.flash.feed(cap.image, media) is not None
            j = item_of[k]
            packets = (packets_of[j] if j is not None else []) + plugged.get(k, [])
            self._video_out(src, group, _Held(Modality.VIDEO, group.name, packets, media, duration,
                                              media if flash else None), host, out)
        return out

    def on_audio(self, caps: list[AudioCapture]) -> EngineOutput:
        """Audio blocks, in capture order per source."""
        out = EngineOutput()
        plugged = self._plugin_audio(caps, out)
        for i, cap in enumerate(caps):
            src = self.sources.get(cap.source)
            if src is None or src.audio is None:
                continue
            group = self.groups[src.audio_group or ""]
            n = cap.samples.shape[1]
            last = src.clock.last_media_ns
            restart = cap.discontinuity and self._clock_restarts(src, cap.media_ns)
            onset = None
            if src.beep is not None:
                onset = src.beep.feed(cap.samples.mean(axis=0), cap.media_ns, cap.rate)
            restarts = src.audio.restarts
            packets = []
            if src.builtin_audio:
                packets = src.audio.push(cap.samples, cap.rate, cap.media_ns, discontinuity=cap.discontinuity,
                                         overflow=cap.overflow)
            lost = src.audio.restarts != restarts or plugged.get(-1 - i) is not None
            if lost and not cap.discontinuity:
                out.gaps.append((src.name, "audio"))
            packets += plugged.get(i, [])
            if restart and last is not None:
                # The old stream's tail, flushed by push: mapped on its own timeline.
                old = [p for p in packets if abs(p.start_ns - last) < abs(p.start_ns - cap.media_ns)]
                self._settle(src, out)
                self._audio_out(src, group, _Held(Modality.AUDIO, group.name, old), out)
                packets = [p for p in packets if all(p is not o for o in old)]
                src.clock.reset()
            # A block is complete (can arrive) only once its last sample exists: observe its end.
            src.clock.observe(cap.media_ns + n * NS // cap.rate, cap.arrival_ns)
            self._audio_out(src, group, _Held(Modality.AUDIO, group.name, packets, onset_ns=onset), out)
        return out

    def _plugin_audio(self, caps: list[AudioCapture], out: EngineOutput) -> dict[int, list[TokenPacket]]:
        def tracks(name: str) -> list[PluginAudioTrack]:
            src = self.sources.get(name)
            return src.audio_plugins if src is not None and src.audio is not None else []

        return plugin_audio(self.plugins, caps, tracks, out.model_errors)

    def _audio_flush(self, src: _Source, out: EngineOutput) -> list[TokenPacket]:
        """End of a source's audio: every received sample into a step, built-in and plug-in streams."""
        return src.audio.flush() + end_audio(self.plugins, src.audio_plugins, out.model_errors) \
            if src.audio is not None else []

    def _clock_restarts(self, src: _Source, media_ns: int) -> bool:
        """A discontinuity: did the media clock restart (its time far from what the clock knows)? If
        it stays continuous (a looped file, a reconnect on the same timeline), the mapping is kept."""
        return clock_restarted(src.clock.last_media_ns, media_ns)

    # -- mapping, or holding until the source's clock has settled -------------------------------
    def _video_out(self, src: _Source, group: _Group, frame: _Held, host: int | None, out: EngineOutput) -> None:
        """One frame's packets, at ``host`` (None: mapped now if the clock has settled, else held)."""
        if host is None:
            if not src.clock.settled:
                src.held.append(frame)
                return
            self._release(src, out)
            host = src.clock.to_host(frame.media_ns)
        end = host + frame.duration_ns
        if frame.onset_ns is not None and group.skew is not None:
            self._skew(group, group.skew.add_flash(host), out)
        for p in frame.packets:
            self._emit(group, HostPacket(p, host, end), out)
        group.aligner.watermark(Modality.VIDEO, end)

    def _audio_out(self, src: _Source, group: _Group, block: _Held, out: EngineOutput) -> None:
        if not src.clock.settled:
            if block.packets or block.onset_ns is not None:
                src.held.append(block)
            return
        self._release(src, out)
        if block.onset_ns is not None and group.skew is not None:
            self._skew(group, group.skew.add_beep(self._audio_host(src, block.onset_ns)), out)
        self._audio_packets(src, group, block.packets, out)

    def _release(self, src: _Source, out: EngineOutput) -> None:
        """Everything the source held, mapped now (its clock has settled), in the order it was made."""
        held, src.held = src.held, []
        for h in held:
            group = self.groups.get(h.group)
            if group is None:
                continue  # cannot happen: a group is removed only after its sources released
            if h.modality == Modality.VIDEO:
                self._video_out(src, group, h, None, out)
            else:
                self._audio_out(src, group, h, out)

    def _settle(self, src: _Source, out: EngineOutput, now_ns: int | None = None) -> None:
        """End the source's hold now (its stream ends, its clock restarts, its group goes)."""
        src.clock.settle_now(now_ns)
        self._release(src, out)

    def _audio_packets(self, src: _Source, group: _Group, packets: list[TokenPacket], out: EngineOutput) -> None:
        for p in packets:
            start = self._audio_host(src, p.start_ns)
            end = max(start + 1, self._audio_host(src, p.end_ns))
            src.audio_done[p.stream_name] = end
            self._emit(group, HostPacket(p, start, end), out)
        if src.audio_done and len(src.audio_done) == 2 * src.builtin_audio + len(src.audio_plugins):
            # a coarse step comes out up to 60 ms after the fine steps of the same time: the least
            group.aligner.watermark(Modality.AUDIO, min(src.audio_done.values()))

    def _audio_host(self, src: _Source, media_ns: int) -> int:
        return src.clock.to_host(media_ns) - src.audio_latency_ns

    def _skew(self, group: _Group, skew_ns: int | None, out: EngineOutput) -> None:
        """A new median A/V skew from the markers: stamped on the group's steps from now on."""
        if skew_ns is not None:
            group.aligner.set_skew(skew_ns)
            out.skews.append((group.name, skew_ns))

    @staticmethod
    def _emit(group: _Group, hp: HostPacket, out: EngineOutput) -> None:
        group.aligner.add(hp)
        out.packets.append(hp)

    # -- output ----------------------------------------------------------------------------------
    def tick(self, now_ns: int) -> EngineOutput:
        """Every step that is complete or past its lateness bound at host time ``now_ns`` (a group
        whose source still holds its first output waits for it); holds that time has ended."""
        out = EngineOutput()
        for src in self.sources.values():
            if src.held and src.clock.poll(now_ns):
                self._release(src, out)
        for group in self.groups.values():
            if not any(self.sources[n].held for n in group.members if n in self.sources):
                out.steps += group.aligner.poll(now_ns)
        return out

    def flush(self) -> EngineOutput:
        """End of the run: every received sample into a token, every pending step out."""
        out = EngineOutput()
        for src in self.sources.values():
            self._settle(src, out)
        for src in self.sources.values():
            if src.audio is not None and src.audio_group is not None:
                self._audio_packets(src, self.groups[src.audio_group], self._audio_flush(src, out), out)
        for group in self.groups.values():
            out.steps += group.aligner.flush()
        return out

    def clocks(self) -> dict[str, ClockState]:
        """Each source's clock, for metrics (call it from the worker like everything else)."""
        return {n: ClockState(round(s.clock.model.drift_ppm, 3), s.clock.target_error_ns,
                              _settle_ms(s.clock.settling))
                for n, s in self.sources.items()}

    def aligner_stats(self) -> dict[str, dict[str, int]]:
        """Per group: steps, late steps, missing, late packets dropped from steps, pending."""
        return {n: {"steps": g.aligner.stats.steps, "late": g.aligner.stats.late,
                    "missing": g.aligner.stats.missing, "late_packets": g.aligner.stats.late_packets,
                    "pending_steps": g.aligner.stats.pending_steps}
                for n, g in self.groups.items()}

