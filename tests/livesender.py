"""A live camera on loopback whose clock is the truth: MPEG-TS over UDP, encoded as it is captured.

``python tests/livesender.py PORT --seconds 10 --record sent.ts --truth truth.json``

Frame ``i`` is *captured* at ``T0 + i / fps`` and audio sample ``n`` at ``T0 + n / rate`` on this
machine's monotonic clock (``T0``: when the sender starts), each encoded the moment it exists (H.264
``zerolatency``, AAC) and sent at once as MPEG-TS in 1316-byte datagrams, like a network camera. So
the true capture time of anything in the stream is ``T0 +`` its timestamp, and ``--truth`` writes
``T0`` (monotonic and UNIX) and how long each video frame took from capture to the socket. The
exact bytes sent go to ``--record`` too, for an offline reference (``livetok tokenize``).

The picture moves every frame (no two frames alike) and is a full white frame every
``--marker-s`` seconds, when a 1 kHz beep of 50 ms starts in the audio (quiet noise otherwise):
flash/beep markers to count. ``--pause-at S --pause-s P``: the camera sends nothing for ``P``
seconds from ``S`` (its clock goes on; what follows continues the stream, no keyframe forced), so
a receiver sees a silent gap between two bursts.

Why not ``ffmpeg -re``: its start is not known to the millisecond, and a muxer holds a video packet
until the audio has caught up with it (a frame or more). Here the video packets carry a DTS that
is ``DTS_LEAD_S`` before their PTS, so the muxer's interleaving never waits on the audio for them:
the sender's own latency (capture to socket) is a few ms, measured per frame in the truth file.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np

NS = 1_000_000_000
DATAGRAM = 1316  # 7 TS packets, as ffmpeg's udp://...?pkt_size=1316
DTS_LEAD_S = 0.2  # video DTS this much before its PTS: the muxer never holds video for audio (s)
AUDIO_BLOCK = 1024  # samples per AAC frame
BEEP_HZ, BEEP_S, BEEP_LEVEL, NOISE_LEVEL = 1000.0, 0.05, 0.5, 0.02


class UdpTee:
    """A write-only file: every byte goes to the UDP peer (datagrams of 1316) and to ``record``."""

    def __init__(self, host: str, port: int, record: BinaryIO | None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.peer = (host, port)
        self.record = record
        self.sending = True  # False during a pause: bytes are recorded as not sent
        self._pending = b""

    def write(self, data: bytes) -> int:
        if not self.sending:
            return len(data)  # the camera's network is down: gone, and not in the recording either
        if self.record is not None:
            self.record.write(data)
        buf = self._pending + bytes(data)
        cut = len(buf) - len(buf) % 188
        for i in range(0, cut, DATAGRAM):
            self.sock.sendto(buf[i:min(i + DATAGRAM, cut)], self.peer)
        self._pending = buf[cut:]
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.sock.close()


def picture(i: int, width: int, height: int, flash: bool) -> np.ndarray:
    """Frame ``i``: ``[H, W, 3]`` uint8, a diagonal ramp that scrolls and a box that moves; all white on a flash."""
    if flash:
        return np.full((height, width, 3), 255, np.uint8)
    y, x = np.mgrid[0:height, 0:width]
    ramp = ((x + 2 * y + 5 * i) % 160).astype(np.uint8)
    img = np.stack([ramp, (ramp // 2 + 40).astype(np.uint8), (150 - ramp // 2).astype(np.uint8)], axis=-1)
    bx, by = (7 * i) % (width - 40), (3 * i) % (height - 40)
    img[by:by + 40, bx:bx + 40] = (200, 30, 30)
    return img


def sound(first: int, n: int, rate: int, marker_s: float, rng: np.random.Generator) -> np.ndarray:
    """Samples ``[first, first + n)``: quiet noise, plus a beep at every marker instant."""
    t = (first + np.arange(n)) / rate
    x = NOISE_LEVEL * rng.standard_normal(n)
    if marker_s > 0:
        beep = (t % marker_s) < BEEP_S
        x = x + BEEP_LEVEL * beep * np.sin(2 * np.pi * BEEP_HZ * t)
    return x.astype(np.float32)


def run(args: argparse.Namespace) -> dict[str, Any]:
    width, height = (int(v) for v in args.size.split("x"))
    fps = Fraction(args.fps).limit_denominator(1001)
    frames = int(args.seconds * fps)
    record = open(args.record, "wb") if args.record else None  # noqa: SIM115 (closed below)
    tee = UdpTee(args.host, args.port, record)
    out = av.open(tee, mode="w", format="mpegts", options={"flush_packets": "1", "max_interleave_delta": "1"})
    vs = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "tune": "zerolatency",
                                                      "g": str(args.gop), "bf": "0"})
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    vs.codec_context.time_base = 1 / fps
    aus = out.add_stream("aac", rate=args.rate, layout="mono")
    rng = np.random.default_rng(1)
    marker_frames = round(args.marker_s * fps) if args.marker_s > 0 else 0
    lead = round(DTS_LEAD_S / vs.codec_context.time_base)  # in the encoder's time base (frames)
    lag: list[int] = []
    pause = (args.pause_at, args.pause_at + args.pause_s) if args.pause_s > 0 else None
    skipped = 0
    t0 = time.monotonic_ns()
    t0_unix = time.time_ns() - (time.monotonic_ns() - t0)
    sample, frame_i = 0, 0
    while frame_i < frames:
        v_due = t0 + frame_i * NS * fps.denominator // fps.numerator
        a_due = t0 + (sample + AUDIO_BLOCK) * NS // args.rate  # an audio block exists once its last sample does
        due = min(v_due, a_due)
        if (wait := due - time.monotonic_ns()) > 0:
            time.sleep(wait / NS)
        paused = pause is not None and pause[0] * NS <= due - t0 < pause[1] * NS
        tee.sending = not paused
        if a_due <= v_due:
            af = av.AudioFrame.from_ndarray(sound(sample, AUDIO_BLOCK, args.rate, args.marker_s, rng)[None, :],
                                            format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = args.rate, sample, Fraction(1, args.rate)
            sample += AUDIO_BLOCK
            if not paused:
                out.mux(aus.encode(af))
            continue
        flash = marker_frames > 0 and frame_i % marker_frames == 0
        vf = av.VideoFrame.from_ndarray(picture(frame_i, width, height, flash), format="rgb24")
        vf.pts, vf.time_base = frame_i, vs.codec_context.time_base
        frame_i += 1
        if paused:
            skipped += 1  # not captured: the camera was off
            continue
        for p in vs.encode(vf):
            p.dts = p.pts - lead
            out.mux(p)
        lag.append(time.monotonic_ns() - v_due)
    tee.sending = True
    out.mux(vs.encode(None))
    out.mux(aus.encode(None))
    out.close()
    tee.close()
    if record is not None:
        record.close()
    return {"t0_mono_ns": t0, "t0_unix_ns": t0_unix, "fps": str(fps), "rate": args.rate, "frames": frames,
            "frames_sent": frames - skipped, "audio_samples": sample, "marker_s": args.marker_s,
            "gop": args.gop, "pause": [args.pause_at, args.pause_s] if pause else None,
            "video_lag_ms": {"min": min(lag) / 1e6, "median": float(np.median(lag)) / 1e6, "max": max(lag) / 1e6}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", default="30")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--gop", type=int, default=60, help="frames from one keyframe to the next")
    ap.add_argument("--marker-s", type=float, default=1.0)
    ap.add_argument("--pause-at", type=float, default=0.0)
    ap.add_argument("--pause-s", type=float, default=0.0)
    ap.add_argument("--record", type=Path)
    ap.add_argument("--truth", type=Path)
    args = ap.parse_args()
    truth = run(args)
    text = json.dumps(truth)
    if args.truth:
        args.truth.write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
