"""What capture threads hand to the event loop: captured video frames and audio blocks.

Times: ``media_ns`` is the source's own timestamp (stream PTS, V4L2 buffer time, PortAudio ADC
time, all converted to integer ns); ``arrival_ns`` is ``time.monotonic_ns()`` when the capture
thread handed the item over. The clock model (livetok.sync) maps media time to host time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np


@dataclass(frozen=True)
class VideoCapture:
    """One captured frame, already converted to the model image in the capture thread."""

    source: str
    image: np.ndarray  # [S, S, 3] uint8 model image
    media_ns: int  # source timestamp of the frame (ns); arrival time when the source has none
    arrival_ns: int  # time.monotonic_ns() at hand-over
    duration_ns: int  # nominal frame duration (ns), from the stream's rate
    discontinuity: bool = False  # first frame after a (re)connect or a timestamp jump


@dataclass(frozen=True)
class AudioCapture:
    """One captured block of audio samples."""

    source: str
    samples: np.ndarray  # [C, N] float32 in [-1, 1]
    rate: int  # Hz
    media_ns: int  # source timestamp of the first sample (ns): PTS, or ADC time on the monotonic clock
    arrival_ns: int  # time.monotonic_ns() at hand-over
    discontinuity: bool = False  # first block after a (re)connect or a timestamp jump
    overflow: bool = False  # the device reported lost input before this block


class SourceState(Enum):
    CONNECTING = "connecting"
    RUNNING = "running"
    BACKOFF = "backoff"  # waiting before reconnecting
    STOPPED = "stopped"
    WAITING = "waiting"  # a listening source (UDP, RTP, SRT listener...) open, with no data for now


@dataclass
class SourceStats:
    """Counters of one source, written by its capture thread, read by metrics (ints: no lock needed)."""

    frames: int = 0  # video frames handed over (the token frames: not those skipped by the token rate)
    blocks: int = 0  # audio blocks handed over
    dropped_frames: int = 0  # video frames dropped (queue full, or decoder late)
    dropped_blocks: int = 0  # audio blocks dropped
    overflows: int = 0  # device-reported input overflows
    reconnects: int = 0
    gaps: int = 0  # discontinuities flagged downstream
    stalls: int = 0  # reads that timed out
    last_error: str = ""
    state: SourceState = SourceState.CONNECTING
    extra: dict[str, int] = field(default_factory=dict)
    connects: int = 0  # successful opens (the first included)
    errors: int = 0  # faults other than stalls: failed opens, lost connections, undecodable packets
    loops: int = 0  # times a looped file started again from its beginning
    waits: int = 0  # a listening source had no data for read_timeout_s (its socket stays open), count
    # The token rate (livetok.streams.rate): video frames captured but not tokenized by choice, never
    # handed over (captured = frames + skipped_by_rate); ``undecoded``: those of them the decoder was
    # told to skip (skip_frame), a part of skipped_by_rate.
    skipped_by_rate: int = 0
    undecoded: int = 0
    nominal_fps: float = 0.0  # the camera's nominal frame rate (frames/s) as the stream says; 0: unknown
