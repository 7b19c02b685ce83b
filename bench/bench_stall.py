"""A stream source that stalls or must stop: how soon the stall is noticed, how soon ``stop()`` returns.

    .venv/bin/python bench/bench_stall.py [--runs 5]

An AvSource (tests/test_streams_av.py's ``Run``: a capture thread and collectors) reads a live
MPEG-TS clip over HTTP from tests/streamgen.py's ``StallingHttpServer``, which sends a quarter of
the clip and then nothing, its socket open. Measured on the monotonic clock:

* **stall noticed**: from the server's last byte to ``stats.stalls`` counting it (``read_timeout_s``
  is 1.0 s: the floor);
* **stop() in backoff**: the source waiting 5 s before its next attempt;
* **stop() in a blocked read / open**: read and open timeouts of 120 s, so only the interrupt ends them;
* **stop() while pacing**: a lavfi source at one frame every 5 s, waiting for its next frame's time.

Figures only; nothing is asserted (tests/test_streams_faults.py asserts the behaviour: the stall
counted after the last frame, each stop ending its thread, the state it leaves).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import machine_line, table
from streamgen import StallingHttpServer, make_clip, wait_until
from test_streams_av import Run

from livetok.runtime.backoff import BackoffPolicy
from livetok.streams.av_source import AvSourceOptions
from livetok.streams.types import SourceState

LONG = 120.0  # s: open and read timeouts no measurement comes near


def timed_stop(run: Run) -> float:
    t0 = time.monotonic()
    assert run.source.stop(timeout_s=10.0), "the capture thread did not end"
    took = time.monotonic() - t0
    run.stop()
    return took


def stall_then_stop(prefix: bytes) -> tuple[float, float]:
    """(stall noticed after the server's last byte, stop() in the backoff that follows), in s."""
    server = StallingHttpServer(prefix)
    try:
        opts = AvSourceOptions(read_timeout_s=1.0, backoff=BackoffPolicy(initial_s=5.0, max_s=5.0, jitter=0.0))
        run = Run(server.url, opts)
        assert run.wait(lambda r: r.stats.stalls >= 1, 20.0), "no stall"
        noticed = time.monotonic_ns()
        assert run.stats.state is SourceState.BACKOFF
        return (noticed - server.sent_ns) / 1e9, timed_stop(run)
    finally:
        server.close()


def stop_blocked(prefix: bytes) -> float:
    """stop() while the thread is blocked reading (``prefix``) or opening (``b""``) a silent socket."""
    server = StallingHttpServer(prefix)
    try:
        run = Run(server.url, AvSourceOptions(read_timeout_s=LONG, open_timeout_s=LONG))
        if prefix:
            assert run.wait(lambda r: r.frames.count() >= 5), "no frames"
            quiet_since = [run.frames.count(), time.monotonic()]

            def settled() -> bool:  # all the data decoded: blocked on the socket
                n = run.frames.count()
                if n != quiet_since[0]:
                    quiet_since[:] = [n, time.monotonic()]
                return time.monotonic() - quiet_since[1] >= 0.5
            assert wait_until(settled, 20.0)
        else:
            assert wait_until(lambda: server.connections >= 1 and run.stats.state is SourceState.CONNECTING, 10.0)
            time.sleep(0.3)  # inside the open call
        return timed_stop(run)
    finally:
        server.close()


def stop_pacing() -> float:
    run = Run("testsrc2=size=64x64:rate=0.2", AvSourceOptions(format="lavfi"), audio=False)
    assert run.wait(lambda r: r.frames.count() >= 1, 10.0)
    time.sleep(0.2)  # waiting for the next frame's media time (5 s away)
    return timed_stop(run)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        data = make_clip(Path(tmp) / "clip.ts", 4.0).read_bytes()
    prefix = data[: len(data) // 4]
    measures: dict[str, list[float]] = {}
    runs: list[tuple[str, Callable[[], float | tuple[float, float]]]] = [
        ("stall", lambda: stall_then_stop(prefix)), ("stop() in a blocked read", lambda: stop_blocked(prefix)),
        ("stop() in a blocked open", lambda: stop_blocked(b"")), ("stop() while pacing", stop_pacing)]
    for _ in range(args.runs):
        for name, fn in runs:
            got = fn()
            if isinstance(got, tuple):
                measures.setdefault("stall noticed after the last byte", []).append(got[0])
                measures.setdefault("stop() in backoff", []).append(got[1])
            else:
                measures.setdefault(name, []).append(got)
    rows = [(name, len(v), min(v) * 1e3, statistics.median(v) * 1e3, max(v) * 1e3) for name, v in measures.items()]
    print(table(["what", "runs", "min ms", "median ms", "max ms"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
