"""Building the configured sources: capture threads with their hand-over queues and counters."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np

from livetok import config as dc
from livetok.config import LivetokConfig
from livetok.config.tokenizer import VideoConfig
from livetok.media.frames import to_model_image
from livetok.streams.av_source import AvSource, AvSourceOptions
from livetok.streams.handoff import Handoff
from livetok.streams.synthetic import SyntheticOptions, SyntheticSource
from livetok.streams.types import AudioCapture, SourceStats, VideoCapture
from livetok.streams.worker import SourceThread


@dataclass
class RunningSource:
    """A capture thread and the queues it fills (None for a modality no group uses)."""

    name: str
    thread: SourceThread
    video: Handoff[VideoCapture] | None
    audio: Handoff[AudioCapture] | None
    stats: SourceStats
    token_fps: float | None = None  # the source's token rate (frames/s); None: every frame

    def start(self) -> None:
        self.thread.start()

    @property
    def finished(self) -> bool:
        """Started, and its capture thread has ended (a file played to its end; never a camera)."""
        return self.thread.started and not self.thread.alive

    def stop(self) -> None:
        self.thread.stop()
        for h in (self.video, self.audio):
            if h is not None:
                h.close()


def _size(spec: str) -> tuple[int, int]:
    w, h = spec.split("x")
    return int(w), int(h)


def build_sources(cfg: LivetokConfig, video_cfg: VideoConfig, only: set[str] | frozenset[str] | None = None
                  ) -> list[RunningSource]:
    """One RunningSource per configured source that a group uses (others are not opened); ``only``:
    just these (a reload)."""
    groups = cfg.effective_groups()
    as_video = {g.video for g in groups if g.video}
    as_audio = {g.audio for g in groups if g.audio}

    def prepare(frame: av.VideoFrame) -> np.ndarray:
        return to_model_image(frame, video_cfg.size, video_cfg.aspect)

    out = []
    for s in cfg.sources:
        if s.name not in as_video | as_audio or (only is not None and s.name not in only):
            continue
        stats = SourceStats()
        video = Handoff[VideoCapture](cfg.queues.video_frames) if s.name in as_video else None
        audio = Handoff[AudioCapture](cfg.queues.audio_blocks) if s.name in as_audio else None
        thread = _thread(s, prepare, video, audio, stats)
        out.append(RunningSource(s.name, thread, video, audio, stats,
                                 getattr(s, "token_fps", None) if video is not None else None))
    return out


def _thread(
    s: dc.StreamSource | dc.V4l2Source | dc.FileSource | dc.LavfiSource | dc.MicSource | dc.SyntheticSource,
    prepare: Callable[[av.VideoFrame], np.ndarray],
    video: Handoff[VideoCapture] | None,
    audio: Handoff[AudioCapture] | None,
    stats: SourceStats,
) -> SourceThread:
    if isinstance(s, dc.MicSource):
        # Imported here: sounddevice needs the PortAudio library, which a camera-only run does not.
        from livetok.streams.mic import MicOptions, MicSource

        assert audio is not None
        return MicSource(s.name, MicOptions(device=s.device, rate=s.rate, channels=s.channels, block_ms=s.block_ms),
                         audio, stats)
    if isinstance(s, dc.SyntheticSource):
        w, h = _size(s.size)
        synthetic = SyntheticOptions(width=w, height=h, fps=s.fps, rate=s.rate, marker_interval_s=s.marker_interval_s,
                                     audio_offset_ms=s.audio_offset_ms, token_fps=s.token_fps)
        return SyntheticSource(s.name, synthetic, prepare, video, audio, stats)
    url, opts = _av_options(s)
    opts = dataclasses.replace(opts, want_audio=audio is not None, want_video=video is not None,
                               token_fps=s.token_fps)
    return AvSource(s.name, url, opts, prepare, video if video is not None else Handoff[VideoCapture](1), audio, stats)


def _av_options(s: dc.StreamSource | dc.V4l2Source | dc.FileSource | dc.LavfiSource) -> tuple[str, AvSourceOptions]:
    if isinstance(s, dc.StreamSource):
        options = dict(s.options)
        if s.transport is not None:
            options["rtsp_transport"] = s.transport
        return s.url, AvSourceOptions(format=s.format, av_options=options, open_timeout_s=s.open_timeout_s,
                                      read_timeout_s=s.read_timeout_s)
    if isinstance(s, dc.V4l2Source):
        options = {}
        if s.size:
            options["video_size"] = s.size
        if s.fps:
            options["framerate"] = f"{s.fps:g}"
        if s.pixel_format:
            options["input_format"] = s.pixel_format
        return s.device, AvSourceOptions(format="v4l2", av_options=options, read_timeout_s=s.read_timeout_s)
    if isinstance(s, dc.FileSource):
        return str(s.path), AvSourceOptions(realtime=True, loop=s.loop)
    return s.graph, AvSourceOptions(format="lavfi", realtime=True)
