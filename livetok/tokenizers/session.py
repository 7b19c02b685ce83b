"""One source's media frames -> token packets, the path shared by file tokenization and live capture.

Audio goes through the streaming audio tokenizer as it arrives; video frames are converted to the
model resolution and collected into batches of ``video.batch_size`` for one tokenizer call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from livetok.config.tokenizer import TokenizerConfig
from livetok.media.audioconv import AudioToFloat
from livetok.media.continuity import continues, expected_ns
from livetok.media.decode import MediaFrame
from livetok.media.frames import to_model_image
from livetok.tokenizers.audio import AudioStream, AudioTokenizer
from livetok.tokenizers.codebooks import CodebookSet, load_codebooks
from livetok.tokenizers.video import BatchCodes, VideoStream, VideoTokenizer
from livetok.wire import Clock, Flag, TokenPacket

if TYPE_CHECKING:
    from livetok.tokenizers.kinds.base import Plugin

NS = 1_000_000_000
AUDIO_BATCH_NS = NS // 2  # files: audio goes to its tokenizer in blocks of this much (ns)


@dataclass(frozen=True)
class Tokenizers:
    """The loaded, checked codebooks and both stateless tokenizers (the built-in kinds), and the
    loaded plug-in tokenizers by name (:func:`livetok.tokenizers.registry.load_plugins`)."""

    cfg: TokenizerConfig
    codebooks: CodebookSet
    audio: AudioTokenizer
    video: VideoTokenizer
    plugins: dict[str, Plugin] = field(default_factory=dict)

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


@dataclass(frozen=True)
class VideoItem:
    """One frame to encode for one stream (any source): ``image [S, S, 3] uint8``, interval in the
    stream's clock."""

    stream: VideoStream
    image: np.ndarray
    start_ns: int
    end_ns: int


def encode_video(toks: Tokenizers, items: Sequence[VideoItem], codes: BatchCodes | None = None
                 ) -> list[list[TokenPacket]]:
    """Frames of any streams -> one batched tokenizer call -> per item its packets (fine, coarse).

    ``[B, S, S, 3]`` uint8 in, for each of the B items ``[fine, coarse]`` out (delta mode: only the
    changed positions). The one video path: files (:class:`MediaTokenizer`) and the daemon use it.
    ``codes``: the batch already encoded by :func:`encode_images` (the daemon encodes in a thread of
    its own, so that audio never waits behind a batch of frames; the streams' state is touched here).
    """
    if not items:
        return []
    if codes is None:
        codes = encode_images(toks, [it.image for it in items])
    return [it.stream.packets(it.image, codes, k, it.start_ns, it.end_ns) for k, it in enumerate(items)]


def encode_images(toks: Tokenizers, images: Sequence[np.ndarray],
                  fine_levels: Sequence[int] | None = None, greedy: bool = False) -> BatchCodes:
    """``B x [S, S, 3]`` uint8 -> their codes, both scales: pure (no stream state), any thread.
    ``fine_levels [B]``, ``greedy``: an overloaded daemon's plan (:mod:`livetok.pipeline.shedding`)."""
    return toks.video.encode(np.stack(images), vectors=toks.cfg.video.vectors, fine_levels=fine_levels,
                             greedy=greedy)


class AudioTrack:
    """One source's audio, any rate and layout, -> audio token packets in the source's media time.

    The one audio path: files (:class:`MediaTokenizer`) and the daemon push the same ``[C, N]`` float32
    blocks (PyAV frames converted by :class:`~livetok.media.audioconv.AudioToFloat`) with their media
    time. The stream starts at the first block's time and follows the sample count; when a block says
    input was lost (``discontinuity``, ``overflow``, a rate change, or a time off the sample count),
    the running stream is flushed first — every received sample ends up in a token — and a new one
    starts at the block's time, its first packets flagged (DISCONTINUITY, or GAP), sequence numbers
    continuing.
    """

    def __init__(self, toks: Tokenizers, source: str, clock: Clock = Clock.MEDIA, batch_ns: int = 0) -> None:
        self.toks = toks
        self.source = source
        self.clock = clock
        self.stream: AudioStream | None = None
        self.rate = 0
        self.base_ns = 0  # media time of the running stream's first sample
        self.samples_in = 0  # samples received by the running stream, at ``rate``
        self.restarts = 0  # streams started again after lost input
        self._next_seq: dict[str, int] = {}  # per scale: one past the last sequence number put out
        # batch_ns > 0 (files, where latency does not count): blocks that continue the running stream
        # are held, up to that much audio, and go to it as one block. Each step costs a resampler
        # call, a log-mel and an RVQ call however few samples it has (12 -> 5 ms of CPU per s of
        # 48 kHz AAC, 21 ms frames vs 0.5 s); the stream's output does not depend on the chunking.
        self.batch_ns = batch_ns
        self._held: list[np.ndarray] = []
        self._held_samples = 0

    def push(self, samples: np.ndarray, rate: int, media_ns: int, *, discontinuity: bool = False,
             overflow: bool = False) -> list[TokenPacket]:
        """``samples [C, N]`` float32 at ``rate`` Hz whose first sample is at ``media_ns`` -> packets."""
        out: list[TokenPacket] = []
        cause = self._break(samples.shape[1], rate, media_ns, discontinuity, overflow)
        if cause is not None:
            out += self.flush()
        if self.stream is None:
            self.stream = self.toks.audio.stream(self.source, media_ns, self.clock, seq0=self._next_seq)
            self.rate, self.base_ns, self.samples_in = rate, media_ns, 0
            if cause is not None:
                self.restarts += 1
                if cause == Flag.DISCONTINUITY:
                    self.stream.reset(media_ns)  # flags DISCONTINUITY on the next packet of each scale
                else:
                    self.stream.mark_gap()
        self.samples_in += samples.shape[1]
        if self.batch_ns <= 0:
            return self._numbered(out + self.stream.push_array(samples, rate))
        if self._held and self._held[0].shape[0] != samples.shape[0]:  # a new layout: not one array
            out += self._release()
        self._held.append(samples)
        self._held_samples += samples.shape[1]
        if self._held_samples * NS >= self.batch_ns * rate:
            out += self._release()
        return out

    def _release(self) -> list[TokenPacket]:
        """The held blocks, as one, into the running stream (``[]`` when none are held)."""
        if not self._held or self.stream is None:
            return []
        held = self._held[0] if len(self._held) == 1 else np.concatenate(self._held, axis=1)
        self._held, self._held_samples = [], 0
        return self._numbered(self.stream.push_array(held, self.rate))

    def _numbered(self, packets: list[TokenPacket]) -> list[TokenPacket]:
        for p in packets:
            self._next_seq[p.stream_name] = p.seq + 1
        return packets

    def _break(self, n: int, rate: int, media_ns: int, discontinuity: bool, overflow: bool) -> Flag | None:
        """Why the running stream cannot continue with this block (None: it can, or there is none)."""
        if self.stream is None:
            return None
        if discontinuity:
            return Flag.DISCONTINUITY
        # Off the count (livetok.media.continuity): samples were lost or doubled upstream; continuing
        # would shift every later timestamp, so the stream starts again at the block's own time.
        expected = expected_ns(self.base_ns, self.samples_in, self.rate)
        if overflow or rate != self.rate or not continues(expected, media_ns, n, rate):
            return Flag.GAP
        return None

    def flush(self) -> list[TokenPacket]:
        """End of input (or of the running stream): every received sample into a token."""
        if self.stream is None:
            return []
        out = self._release()
        out += self._numbered(self.stream.flush())
        self.stream = None
        return out


class MediaTokenizer:
    """Streaming tokenizer for one source's decoded frames (both modalities)."""

    def __init__(self, toks: Tokenizers, source: str, clock: Clock = Clock.MEDIA,
                 encoder: Executor | None = None, in_flight: int = 2,
                 builtin: frozenset[str] = frozenset({"audio", "video"})) -> None:
        """``encoder``: threads that encode full video batches (:func:`encode_images`) while this one
        goes on; at most ``in_flight`` batches wait for theirs. None: each batch is encoded in
        :meth:`feed`. The stream's state (sequence numbers, delta reference) is only touched here,
        batch after batch in order, so the packets are the same either way. ``builtin``: the
        modalities the built-in kinds tokenize; every plug-in of ``toks`` runs too (its model called
        as soon as a block or frame makes a job: a failed call raises its ModelRunError)."""
        from livetok.tokenizers.plugin_track import PluginAudioTrack, PluginVideoTrack

        self.toks = toks
        self.builtin = builtin
        plugins = toks.plugins.values()
        self.plugin_audio = [PluginAudioTrack(p, source, clock) for p in plugins if p.modality == "audio"]
        self.plugin_video = [PluginVideoTrack(p, source, clock) for p in plugins if p.modality == "video"]
        self.source = source
        self.clock = clock
        self.audio = AudioTrack(toks, source, clock, batch_ns=AUDIO_BATCH_NS)
        self.video: VideoStream = toks.video.stream(source, clock)
        self._to_float = AudioToFloat()
        self._batch: list[VideoItem] = []
        self._last_video_ns: int | None = None
        self._encoder = encoder
        self._in_flight = max(1, in_flight)
        self._encoding: deque[tuple[Future[BatchCodes], list[VideoItem]]] = deque()

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
            out = [p for t in self.plugin_video for p in _plugged(t, t.take(item.image, item.start_ns, item.end_ns))]
            if "video" not in self.builtin:
                return out
            self._batch.append(VideoItem(self.video, item.image, item.start_ns, item.end_ns))
            return out + (self._encode_batch() if len(self._batch) >= self.toks.cfg.video.batch_size else [])
        frame = item.audio
        samples = self._to_float.convert(frame)
        out = [p for t in self.plugin_audio for p in _plugged(t, t.take(samples, frame.sample_rate, item.pts_ns))]
        if "audio" not in self.builtin:
            return out
        return out + self.audio.push(samples, frame.sample_rate, item.pts_ns)

    def flush(self) -> list[TokenPacket]:
        """End of input: encode the partial video batch, wait for every batch, drain the audio streams."""
        out = self._encode_batch()
        out += [p for t in self.plugin_audio for p in _plugged(t, t.end())]
        return out + self._encoded(wait=len(self._encoding)) + self.audio.flush()

    def _encode_batch(self) -> list[TokenPacket]:
        batch, self._batch = self._batch, []
        if self._encoder is None:
            return [p for packets in encode_video(self.toks, batch) for p in packets]
        if batch:
            images = [it.image for it in batch]
            self._encoding.append((self._encoder.submit(encode_images, self.toks, images), batch))
        return self._encoded(wait=len(self._encoding) - self._in_flight)

    def _encoded(self, wait: int) -> list[TokenPacket]:
        """Packets of the batches encoded so far, in order: the first ``wait`` waited for."""
        out: list[TokenPacket] = []
        while self._encoding and (wait > 0 or self._encoding[0][0].done()):
            codes, batch = self._encoding.popleft()
            out += [p for packets in encode_video(self.toks, batch, codes.result()) for p in packets]
            wait -= 1
        return out


def _plugged(track: Any, jobs: list[Any]) -> list[TokenPacket]:
    """One plug-in track's jobs run at once (:func:`run_tokenizer`), emitted in order; a failed call
    raises (a file has no stream to flag GAP and go on with)."""
    from livetok.tokenizers.plugin_track import run_tokenizer

    packets, err = run_tokenizer(track.plugin, [(track, job) for job in jobs])
    if err is not None:
        raise err
    return [p for ps in packets for p in ps]
