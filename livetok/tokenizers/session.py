"""One source's media frames -> token packets, the path shared by file tokenization and live capture.

Audio goes through the streaming audio tokenizer as it arrives; video frames are converted to the
model resolution and collected into batches of ``video.batch_size`` for one tokenizer call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from livetok.media import MediaFrame
from livetok.tokenizers.audio import AudioStream, AudioTokenizer
from livetok.tokenizers.codebooks import CodebookSet, load_codebooks
from livetok.tokenizers.config import TokenizerConfig
from livetok.tokenizers.frames import to_model_image
from livetok.tokenizers.video import VideoStream, VideoTokenizer
from livetok.wire import Clock, TokenPacket


@dataclass(frozen=True)
class Tokenizers:
    """The loaded, checked codebooks and both stateless tokenizers."""

    cfg: TokenizerConfig
    codebooks: CodebookSet
    audio: AudioTokenizer
    video: VideoTokenizer

    def warm_up(self) -> None:
        """Run every kernel once (numba JIT or cache load, torch allocator, BLAS init), so the
        first live frames do not pay for it in latency."""
        s = self.cfg.video.size
        images = np.zeros((self.cfg.video.batch_size, s, s, 3), np.uint8)
        codes = self.video.encode(images, vectors=self.cfg.video.vectors)
        video = self.video.stream("warm-up")
        for i in range(2):  # the second frame runs the delta path (change detector) when enabled
            video.packets(images[0], codes, 0, i, i + 1)
        stream = self.audio.stream("warm-up")
        stream.push_array(np.zeros((2, 4800), np.float32), 48000)
        stream.flush()

    @classmethod
    def from_config(cls, cfg: TokenizerConfig) -> Tokenizers:
        cbs = load_codebooks(cfg.codebooks)
        cbs.check(cfg)
        return cls(cfg, cbs, AudioTokenizer(cfg.audio, cbs), VideoTokenizer(cfg.video, cbs, cfg.device))


@dataclass(frozen=True)
class PreparedVideo:
    """A video frame at the model resolution: ``image [S, S, 3] uint8`` and its media interval."""

    image: np.ndarray
    start_ns: int
    end_ns: int


class MediaTokenizer:
    """Streaming tokenizer for one source's decoded frames (both modalities)."""

    def __init__(self, toks: Tokenizers, source: str, clock: Clock = Clock.MEDIA) -> None:
        self.toks = toks
        self.source = source
        self.clock = clock
        self.audio: AudioStream | None = None  # started by the first audio frame, at its time
        self.video: VideoStream = toks.video.stream(source, clock)
        self._batch: list[PreparedVideo] = []
        self._last_video_ns: int | None = None

    def prepare(self, mf: MediaFrame) -> MediaFrame | PreparedVideo:
        """The part of the work that can run in the decode thread: scaling video frames."""
        if mf.kind == "audio":
            return mf
        cfg = self.toks.cfg.video
        image = to_model_image(mf.video, cfg.size, cfg.aspect)
        return PreparedVideo(image, mf.pts_ns, mf.pts_ns + mf.duration_ns)

    def feed(self, item: MediaFrame | PreparedVideo) -> list[TokenPacket]:
        """One decoded (or prepared) frame -> the packets that became complete."""
        if isinstance(item, MediaFrame) and item.kind == "video":
            item = self.prepare(item)
        if isinstance(item, PreparedVideo):
            if item.end_ns <= item.start_ns:  # no duration in the stream: assume the previous spacing
                gap = item.start_ns - self._last_video_ns if self._last_video_ns is not None else 0
                item = PreparedVideo(item.image, item.start_ns, item.start_ns + max(gap, 1))
            self._last_video_ns = item.start_ns
            self._batch.append(item)
            return self._encode_batch() if len(self._batch) >= self.toks.cfg.video.batch_size else []
        if self.audio is None:
            self.audio = self.toks.audio.stream(self.source, item.pts_ns, self.clock)
        return self.audio.push_frame(item.audio)

    def flush(self) -> list[TokenPacket]:
        """End of input: encode the partial video batch and drain the audio stream."""
        out = self._encode_batch() if self._batch else []
        if self.audio is not None:
            out += self.audio.flush()
        return out

    def _encode_batch(self) -> list[TokenPacket]:
        batch, self._batch = self._batch, []
        images = np.stack([b.image for b in batch])
        codes = self.toks.video.encode(images, vectors=self.toks.cfg.video.vectors)
        out: list[TokenPacket] = []
        for i, b in enumerate(batch):
            out += self.video.packets(b.image, codes, i, b.start_ns, b.end_ns)
        return out
