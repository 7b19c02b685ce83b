"""Live sources on loopback for the streams tests: ffmpeg servers (UDP, HTTP, RTSP through
rtsp-server-perl), a stalling HTTP server, a private PulseAudio daemon with a null sink, and a
child process that captures a microphone (PortAudio reads its environment when it initialises).

Every process started here is killed by the fixture or context that started it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mediagen import ffmpeg
from requires import require

T = TypeVar("T")
TESTS = Path(__file__).resolve().parent


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nobody listens on now (TCP by default; socket.SOCK_DGRAM for UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll until ``predicate()`` is true; False if ``timeout_s`` passed first (a generous deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def listening(port: int) -> bool:
    """Whether a TCP socket listens on the port, read from /proc/net/tcp: connecting to find out
    would be taken as the one client of ``ffmpeg -listen 1``."""
    try:
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    for row in rows:
        fields = row.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: TCP_LISTEN
            return True
    return False


def udp_bound(port: int) -> bool:
    """Whether a UDP socket is bound to the port (a reader waiting for its sender), from /proc/net/udp."""
    try:
        rows = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(int(row.split()[1].rsplit(":", 1)[1], 16) == port for row in rows)


def wait_listening(port: int, timeout_s: float = 10.0) -> None:
    """Wait until something listens for TCP connections on the loopback port."""
    if not wait_until(lambda: listening(port), timeout_s, 0.05):
        raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def drain(handoff: Any) -> list[Any]:
    """Everything queued in a Handoff now."""
    out = []
    while (item := handoff.get_nowait()) is not None:
        out.append(item)
    return out


class Collector:
    """A consumer thread that keeps everything a Handoff receives (the event loop's stand-in)."""

    def __init__(self, handoff: Any) -> None:
        self.items: list[Any] = []
        self._handoff = handoff
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            items = drain(self._handoff)
            self.items.extend(items)
            if not items:
                time.sleep(0.005)

    def count(self, pred: Callable[[Any], bool] = lambda _: True) -> int:
        return sum(1 for x in list(self.items) if pred(x))

    def close(self) -> list[Any]:
        self._stop.set()
        self._thread.join(2)
        self.items.extend(drain(self._handoff))
        return self.items


# -- processes -------------------------------------------------------------------------------------


class Proc:
    """A child process killed (its whole process group) at ``stop()``."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, stdin: Any = subprocess.DEVNULL,
                 stdout: Any = subprocess.DEVNULL) -> None:
        self.args = args
        self.popen = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL, env=env,
                                      start_new_session=True)

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


def make_clip(path: Path, seconds: float = 4.0, audio: bool = True, size: str = "320x240", fps: int = 25) -> Path:
    """An H.264 (+ AAC 48 kHz stereo tone) clip with a keyframe every 0.4 s (quick to resync)."""
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-ac", "2",
                 "-c:a", "aac"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(max(1, fps * 2 // 5)), "-pix_fmt", "yuv420p",
             "-shortest", str(path)]
    ffmpeg(*args)
    return path


def _ffmpeg_live(clip: Path, *out: str) -> list[str]:
    return ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy",
            *out]


def serve_udp(clip: Path, port: int) -> Proc:
    """ffmpeg sending the clip, looped, as live MPEG-TS to udp://127.0.0.1:port."""
    return Proc(_ffmpeg_live(clip, "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"))


def serve_rtp(clip: Path, port: int) -> Proc:
    """ffmpeg sending the clip, looped, as live MPEG-TS over RTP to rtp://127.0.0.1:port."""
    return Proc(_ffmpeg_live(clip, "-f", "rtp_mpegts", f"rtp://127.0.0.1:{port}"))


def serve_http(clip: Path, port: int) -> Proc:
    """ffmpeg serving the clip, looped, as live MPEG-TS over HTTP to one client (then it exits)."""
    proc = Proc(_ffmpeg_live(clip, "-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{port}/live.ts"))
    wait_listening(port)
    return proc


class LiveCamera:
    """``tests/livesender.py`` as a child: a live H.264 + AAC camera sending MPEG-TS to a UDP port,
    whose clock is the truth (see its docstring). ``finish()`` waits for it and returns the truth."""

    def __init__(self, port: int, tmp: Path, seconds: float, *extra: str) -> None:
        self.truth_path, self.record = tmp / f"truth-{port}.json", tmp / f"sent-{port}.ts"
        self.proc = Proc([sys.executable, str(TESTS / "livesender.py"), str(port), "--seconds", str(seconds),
                          "--truth", str(self.truth_path), "--record", str(self.record), *extra])

    def finish(self, timeout_s: float = 60.0) -> dict[str, Any]:
        try:
            self.proc.popen.wait(timeout_s)
        finally:
            self.proc.stop()
        if not self.truth_path.exists():
            raise RuntimeError(f"the live camera failed (exit {self.proc.popen.returncode})")
        return dict(json.loads(self.truth_path.read_text()))


class RtspRelay:
    """rtsp-server-perl on loopback, fed by ffmpeg; readers use ``url`` (UDP transport)."""

    def __init__(self, clip: Path) -> None:
        self.client_port, self.source_port = free_port(), free_port()
        self.server = Proc(["rtsp-server-perl", "-c", str(self.client_port), "-s", str(self.source_port),
                            "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1"])
        self.feeder: Proc | None = None
        try:
            wait_listening(self.source_port)
            wait_listening(self.client_port)
            self.feeder = Proc(_ffmpeg_live(clip, "-f", "rtsp", f"rtsp://127.0.0.1:{self.source_port}/cam"))
        except Exception:
            self.stop()
            raise
        self.url = f"rtsp://127.0.0.1:{self.client_port}/cam"

    def stop(self) -> None:
        if self.feeder is not None:
            self.feeder.stop()
        self.server.stop()


class StallingHttpServer:
    """Serves ``prefix`` bytes of MPEG-TS after an HTTP header, then keeps the socket open, silent."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(8)
        self.port = int(self._srv.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/live.ts"
        self.connections = 0
        self.sent_ns = 0  # monotonic ns: the last byte sent (then silence)
        self._conns: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            self._conns.append(conn)
            self.connections += 1
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n\r\n" + self.prefix)
                self.sent_ns = time.monotonic_ns()
            except OSError:
                continue  # the reader gave up first

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._srv.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
        self._srv.close()
        for c in self._conns:
            c.close()
        self._thread.join(2)


# -- PulseAudio ------------------------------------------------------------------------------------


class PulseAudio:
    """A private PulseAudio daemon (its own XDG_RUNTIME_DIR) with a null sink whose monitor is a microphone."""

    def __init__(self, runtime_dir: Path, sink: str = "vmic", rate: int = 16000) -> None:
        self.runtime_dir = runtime_dir
        self.sink = sink
        self.rate = rate
        runtime_dir.mkdir(parents=True, exist_ok=True)
        runtime_dir.chmod(0o700)
        self.env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir), "PULSE_SOURCE": f"{sink}.monitor",
                    "HOME": str(runtime_dir)}
        self.env.pop("PULSE_SERVER", None)
        self.daemon: Proc | None = None
        self._players: list[Proc] = []

    @property
    def socket_path(self) -> Path:
        return self.runtime_dir / "pulse" / "native"

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # a socket left by a killed daemon
        self.daemon = Proc(["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--system=false",
                            "--disallow-exit", "-n", f"--load=module-null-sink sink_name={self.sink} rate={self.rate}",
                            "--load=module-native-protocol-unix"], env=self.env)
        ok = wait_until(lambda: subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode == 0,
                        15.0, 0.1)
        if not ok:
            self.stop()
            raise RuntimeError("PulseAudio did not start")

    def kill(self) -> None:
        """The daemon dies (the microphone disappears)."""
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None

    def play_tone(self, freq_hz: float, seconds: float) -> Proc:
        """Play a sine into the null sink (so its monitor hears it): ffmpeg | pacat, one process group."""
        cmd = (f"ffmpeg -nostdin -loglevel error -f lavfi -i sine=frequency={freq_hz}:sample_rate={self.rate}"
               f":duration={seconds} -af volume=0.5 -f s16le -ac 2 - | pacat --device={self.sink} --rate={self.rate}"
               " --channels=2 --format=s16le")
        p = Proc(["sh", "-c", cmd], env=self.env)
        self._players.append(p)
        return p

    def stop(self) -> None:
        for p in self._players:
            p.stop()
        self.kill()


@pytest.fixture()
def pulse() -> Iterator[PulseAudio]:
    """A private PulseAudio daemon with a null sink ``vmic`` at 16 kHz; killed at teardown."""
    for tool in ("pulseaudio", "pacat", "pactl", "ffmpeg"):
        require(tool)
    # A short path: the daemon's unix socket path must fit in 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="lt-pa-"))
    pa = PulseAudio(root / "xdg", rate=16000)
    try:
        pa.start()
        yield pa
    finally:
        pa.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- a microphone captured in a child process --------------------------------------------------------


class MicChild:
    """Runs :func:`mic_child_main` in a child with the PulseAudio environment; reads its status lines.

    The child prints one JSON status line every 50 ms and a final JSON result when its stdin closes.
    """

    def __init__(self, pulse: PulseAudio, config: dict[str, Any]) -> None:
        env = {**pulse.env, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
        self.proc = Proc([sys.executable, "-c", "import streamgen; streamgen.mic_child_main()", json.dumps(config)],
                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.status: dict[str, Any] = {}
        self.result: dict[str, Any] | None = None
        self._lines = threading.Thread(target=self._read, daemon=True)
        self._lines.start()

    def _read(self) -> None:
        out = self.proc.popen.stdout
        assert out is not None
        for raw in out:
            msg = json.loads(raw)
            if msg.get("final"):
                self.result = msg
            else:
                self.status = msg

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float) -> bool:
        return wait_until(lambda: bool(self.status) and predicate(self.status), timeout_s, 0.05)

    def pause(self, seconds: float) -> None:
        """Freeze the child (SIGSTOP) so its device buffer overflows, then let it go on."""
        os.kill(self.proc.popen.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(self.proc.popen.pid, signal.SIGCONT)

    def finish(self, timeout_s: float = 20.0) -> dict[str, Any]:
        stdin = self.proc.popen.stdin
        assert stdin is not None
        with contextlib.suppress(BrokenPipeError):
            stdin.close()
        self._lines.join(timeout_s)
        self.proc.stop()
        if self.result is None:
            raise RuntimeError(f"the capture child gave no result (last status: {self.status})")
        return self.result

    def stop(self) -> None:
        self.proc.stop()


def mic_child_main() -> None:
    """Child side of :class:`MicChild`: capture with MicSource, report status, then analyse."""
    import numpy as np
    import sounddevice as sd

    from livetok.runtime.backoff import BackoffPolicy
    from livetok.streams.handoff import Handoff
    from livetok.streams.mic import MicOptions, MicSource
    from livetok.streams.types import AudioCapture, SourceStats

    cfg = json.loads(sys.argv[1])
    clock = _portaudio_clock(sd)
    handoff: Handoff[AudioCapture] = Handoff(int(cfg.get("capacity", 10_000)))
    stats = SourceStats()
    policy = BackoffPolicy(initial_s=0.2, max_s=1.0, stable_s=1.0)
    opts = MicOptions(device=cfg.get("device", "pulse"), rate=int(cfg.get("rate", 16000)),
                      channels=int(cfg.get("channels", 1)), block_ms=float(cfg.get("block_ms", 20)),
                      stall_timeout_s=float(cfg.get("stall_timeout_s", 2.0)), backoff=policy)
    mic = MicSource("mic", opts, handoff, stats)
    blocks: list[AudioCapture] = []
    consume = bool(cfg.get("consume", True))
    done = threading.Event()

    def wait_stdin() -> None:  # the parent closes our stdin to end the capture
        sys.stdin.read()
        done.set()
    threading.Thread(target=wait_stdin, daemon=True).start()
    mic.start()
    while not done.wait(0.05):
        if consume:
            blocks.extend(drain(handoff))
        after_first = sum(1 for b in blocks[1:] if b.discontinuity)
        print(json.dumps({"state": stats.state.value, "blocks": stats.blocks, "received": len(blocks),
                          "reconnects": stats.reconnects, "stalls": stats.stalls, "errors": stats.errors,
                          "connects": stats.connects, "flagged_after_first": after_first,
                          "last_error": stats.last_error}), flush=True)
    stopped = mic.stop(5.0)
    blocks.extend(drain(handoff))
    result: dict[str, Any] = {"final": True, "stopped": stopped, "state": stats.state.value,
                              "stats": {k: v for k, v in vars(stats).items() if isinstance(v, int)},
                              "handoff_dropped": handoff.dropped, "clock": clock, "received": len(blocks)}
    if blocks:
        media = [b.media_ns for b in blocks]
        result["media_increasing"] = all(b > a for a, b in itertools.pairwise(media))
        result["shapes"] = sorted({str(b.samples.shape) for b in blocks})
        result["rates"] = sorted({b.rate for b in blocks})
        result["dtypes"] = sorted({str(b.samples.dtype) for b in blocks})
        result["arrival_minus_media_ms"] = [(b.arrival_ns - b.media_ns) / 1e6 for b in blocks]
        result["discontinuities"] = [i for i, b in enumerate(blocks) if b.discontinuity]
        # Where a block does not start where the previous one ended (beyond 5 ms): (index, ms).
        result["steps_ms"] = [(i, (b.media_ns - a.media_ns - a.samples.shape[1] * 10**9 // a.rate) / 1e6)
                              for i, (a, b) in enumerate(itertools.pairwise(blocks), start=1)
                              if abs(b.media_ns - a.media_ns - a.samples.shape[1] * 10**9 // a.rate) > 5_000_000]
        result["overflow_blocks"] = sum(b.overflow for b in blocks)
        if cfg.get("tone_hz"):
            result["phase_breaks"] = phase_breaks(blocks, float(cfg["tone_hz"]))
        x = np.concatenate([b.samples[0] for b in blocks[len(blocks) // 4:]])  # past any start-up silence
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        result["peak_hz"] = float(np.argmax(spectrum) * blocks[0].rate / len(x))
        result["rms"] = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    print(json.dumps(result), flush=True)


def phase_breaks(blocks: list[Any], tone_hz: float, window: int = 800) -> list[int]:
    """Block indices where a captured steady tone's phase breaks: samples were lost (or repeated) there.

    The samples are fitted, window by window, with a sinusoid of the known frequency on the sample
    index the capture *claims* (contiguous blocks); the phase is constant while no sample is lost.
    """
    import numpy as np

    x = np.concatenate([b.samples[0] for b in blocks]).astype(np.float64)
    rate, block = blocks[0].rate, blocks[0].samples.shape[1]
    w = 2 * np.pi * tone_hz / rate
    fits = []
    for start in range(0, len(x) - window + 1, window):
        t = np.arange(start, start + window)
        basis = np.stack([np.cos(w * t), np.sin(w * t)], axis=1)
        (c, s), *_ = np.linalg.lstsq(basis, x[start:start + window], rcond=None)
        fits.append((start, float(np.hypot(c, s)), float(np.arctan2(-s, c))))
    loud = np.median([a for _, a, _ in fits]) / 2  # skip windows without the tone (start-up silence)
    breaks, last = [], None
    for start, amp, phase in fits:
        if amp < loud:
            continue
        if last is not None and abs((phase - last + np.pi) % (2 * np.pi) - np.pi) > 0.3:
            breaks.append(start // block)
        last = phase
    return breaks


def _portaudio_clock(sd: Any) -> dict[str, float]:
    """Where PortAudio's stream clock stands against CLOCK_REALTIME and CLOCK_MONOTONIC (s)."""
    try:
        stream = sd.InputStream(device="pulse", samplerate=16000, channels=1)
    except Exception as err:
        return {"error": str(err)}  # type: ignore[dict-item]
    try:
        t_mono, t_real, t_pa = time.monotonic(), time.time(), stream.time
        return {"pa_minus_realtime_s": t_pa - t_real, "pa_minus_monotonic_s": t_pa - t_mono}
    finally:
        stream.close()


def first(items: Iterator[T] | list[T], pred: Callable[[T], bool]) -> T | None:
    """The first item matching ``pred`` (None when none does)."""
    return next((x for x in items if pred(x)), None)
