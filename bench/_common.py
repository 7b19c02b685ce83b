"""Helpers shared by the bench scripts: machine description, timing, test signals, tables.

Not a benchmark itself (run_all.sh runs ``bench_*.py``). Every figure is printed, never asserted.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    """One line naming the CPU, core count and the load average when the bench started."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"machine: {cpu_model()}, {os.cpu_count()} logical cores; load average {load}"


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat; (0, 0) where unavailable."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Contention:
    """How much of the machine's CPU *other* processes used between :meth:`start` and :meth:`report`.

    The bench machine is shared; a run during which others used a large share is not comparable to
    a quiet one. Best-of-N figures are the least disturbed, medians show the disturbance.
    """

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self._jiffies, self._own = _cpu_jiffies(), _own_cpu()

    def others_share(self) -> float:
        busy0, total0 = self._jiffies
        busy1, total1 = _cpu_jiffies()
        if total1 <= total0:
            return float("nan")
        hz = os.sysconf("SC_CLK_TCK")
        own = (_own_cpu() - self._own) * hz
        return max(0.0, (busy1 - busy0 - own) / (total1 - total0))

    def report(self) -> str:
        return f"other processes used {100 * self.others_share():.0f} % of this machine's CPU during the run"


def wait_for_quiet(max_wait: float = 30.0, threshold: float = 0.15) -> str:
    """Wait (at most ``max_wait`` s) until other processes use under ``threshold`` of the CPU."""
    t0 = time.monotonic()
    share = float("nan")
    while True:
        c = Contention()
        time.sleep(0.5)
        share = c.others_share()
        if not share >= threshold or time.monotonic() - t0 >= max_wait:
            break
    waited = time.monotonic() - t0
    return f"others' CPU share before start: {100 * share:.0f} % (waited {waited:.1f} s for <= {100 * threshold:.0f} %)"


def print_header(title: str, wait: bool = True) -> Contention:
    """Print the machine, wait briefly for a quiet machine, and start measuring contention."""
    import torch

    print(f"== {title}")
    print(machine_line())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, numpy {np.__version__}")
    if wait and os.environ.get("BENCH_NO_WAIT") != "1":
        print(wait_for_quiet())
    return Contention()


def timings(fn: Callable[[], object], repeat: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def interleaved(fns: dict[str, Callable[[], object]], repeat: int, warmup: int = 1) -> dict[str, list[float]]:
    """Like :func:`timings` for several functions, alternating them so that load from other
    processes on the machine hits all of them alike (A/B comparisons on a shared box)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[k].append(time.perf_counter() - t)
    return out


def best_median(ts: Sequence[float]) -> tuple[float, float]:
    return min(ts), statistics.median(ts)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table (also readable as plain text)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells[1:]]
    return "\n".join(lines)


def _fmt(c: object) -> str:
    if isinstance(c, float):
        if c == 0 or abs(c) >= 100:
            return f"{c:.0f}"
        if abs(c) >= 10:
            return f"{c:.1f}"
        if abs(c) >= 0.1:
            return f"{c:.2f}"
        return f"{c:.3f}"
    return str(c)


SPEECH_TEXT = (
    "The quick brown fox jumps over the lazy dog. A streaming tokenizer turns live audio and video "
    "into discrete tokens on one clock, with a fine scale at fifty hertz and a coarse scale at twelve "
    "and a half hertz. Residual vector quantization picks one code per level, and each level refines "
    "what the previous ones left. Cameras and microphones keep running, so latency matters as much as "
    "quality, and every millisecond of processor time is paid for again on every stream. "
)


def speech_signal(rate: int, seconds: float, channels: int = 1, seed: int = 0) -> tuple[np.ndarray, str]:
    """``[channels, rate * seconds] float32`` speech-like audio and a word saying how it was made.

    espeak-ng speech (looped to length) when espeak-ng is installed, else a tone + noise mix with a
    syllable-rate envelope. Extra channels are the first one delayed by 1 ms and attenuated.
    """
    import av

    n = round(rate * seconds)
    mono: np.ndarray | None = None
    kind = "espeak-ng speech"
    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "speech.wav"
            text = SPEECH_TEXT * max(1, int(seconds // 25) + 1)
            r = subprocess.run(["espeak-ng", "-s", "160", "-w", str(wav), text], capture_output=True)
            if r.returncode == 0 and wav.stat().st_size > 44:
                with av.open(str(wav)) as c:
                    rs = av.AudioResampler(format="flt", layout="mono", rate=rate)
                    parts = [f.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for f in rs.resample(fr)]
                    parts += [f.to_ndarray().reshape(-1) for f in rs.resample(None)]
                mono = np.concatenate(parts)
    if mono is None or mono.size == 0:
        kind = "tone+noise mix"
        rng = np.random.default_rng(seed)
        t = np.arange(n) / rate
        env = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
        f0 = 140 + 30 * np.sin(2 * np.pi * 0.5 * t)
        tone = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / rate) / k for k in range(1, 8))
        mono = (0.1 * env * tone + 0.01 * rng.standard_normal(n)).astype(np.float32)
    mono = np.resize(mono, n).astype(np.float32)  # loops the speech to the requested length
    if channels == 1:
        return mono[None], kind
    d = max(1, rate // 1000)
    other = np.concatenate([np.zeros(d, np.float32), mono[:-d]]) * 0.8
    return np.stack([mono] + [other] * (channels - 1)), kind
