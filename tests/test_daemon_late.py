"""A camera that starts after the daemon (issue 12, sections 2 and 3), end to end: the daemon listens on
udp://127.0.0.1:PORT, a live camera starts there seconds later, and the token file is compared with
the camera's own clock.

The camera is ``tests/livesender.py`` (320x240@30 H.264 + 48 kHz AAC, encoded as captured, its start
``T0`` on this machine's clock). The reference is ``livetok tokenize`` of the very bytes it sent; each
live packet is paired with the reference packet of equal codes (``tests/latetruth.py``) and its time
compared with ``T0 +`` its media time. Before the daemon held a source's first tokens until its clock
had seen the delay floor, the first ones were stamped 0.7 s late and every duration was 5 % short
for the whole clip (52.6 Hz audio, 31.6 fps video).

``latency_ms`` is the source's constant latency that no arrival can reveal (docs/sync.md): here
FFmpeg's own, which hands an H.264 frame of an MPEG-TS stream over when the second frame after it
starts to arrive (docs/sources.md). The camera's own capture-to-socket time (1-5 ms, in its truth
file) is part of the error measured.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from latetruth import compare
from requires import require
from streamgen import LiveCamera, free_port, wait_until

from livetok.cli import main
from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking
from livetok.runtime.stopping import StopControl
from livetok.wire import AlignedStep, read_ltk

pytestmark = pytest.mark.slow  # every test here runs a live daemon, broker, stream or subprocess

DEMUX_LATENCY_MS = 2000 / 30
SECONDS = 10.0
TAIL = 2  # the camera's last two frames stay in FFmpeg's demuxer until it sends again (none: it stops)


def udp_bound(port: int) -> bool:
    rows = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(int(r.split()[1].rsplit(":", 1)[1], 16) == port for r in rows)


@pytest.mark.exclusive  # it checks capture times against the camera's clock: a neighbour test on the other core
# delays the arrivals it measures (a 1.6 % rate error seen twice in full runs, never alone or beside a burner)
def test_a_camera_starting_late_loses_nothing_and_is_stamped_true_from_its_first_token(tmp_path: Path) -> None:
    require("ffmpeg")
    port = free_port(socket.SOCK_DGRAM)
    out = tmp_path / "live.ltk"
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "stream", "name": "cam", "url": f"udp://127.0.0.1:{port}", "format": "mpegts",
                     "latency_ms": DEMUX_LATENCY_MS}],
        "sinks": [{"kind": "file", "path": str(out)}],
    })
    stop = StopControl()
    result: dict[str, Any] = {}

    def camera() -> None:
        try:
            assert wait_until(lambda: udp_bound(port), 60.0), "the daemon never listened"
            time.sleep(4.0)  # the scenario: the camera comes up seconds after the daemon
            result["truth"] = LiveCamera(port, tmp_path, SECONDS).finish()
        finally:
            stop.request("camera done")

    t = threading.Thread(target=camera, daemon=True)
    t.start()
    report = run_blocking(cfg, 120.0, stop)
    t.join(10)
    assert "truth" in result, "the camera did not run"
    assert report.stopped_by == "camera done"
    truth = result["truth"]
    reference = tmp_path / "reference.ltk"
    assert main(["tokenize", str(truth_record(tmp_path, port)), "-o", str(reference)]) == 0
    streams = compare(out, reference, truth, "cam")
    summary = {"/".join(k): v.summary() for k, v in streams.items()}
    print(summary)
    video, audio = streams[("video", "fine")], streams[("audio", "fine")]
    # Section 2: nothing lost from the camera's first frame on (the first is a keyframe).
    assert video.lost_start == 0 and video.missing == 0 and video.matched == video.packets == truth["frames"] - TAIL
    assert audio.lost_start == 0 and audio.missing == 0 and audio.matched == audio.packets >= audio.reference - 1
    assert all(s.gaps == 0 for s in streams.values())
    # Section 3: rates within 0.2 % of nominal over the run, every token within 20 ms of the truth.
    for key, s in streams.items():
        assert abs(s.rate_error_pct) <= 0.2, (key, s.summary())
        assert s.errors_ms and max(abs(e) for e in s.errors_ms) <= 20.0, (key, s.summary())
    # The hold is reported (stats document's settled_ms, from this gauge): it ended, after some time.
    settled = report.metrics["gauges"].get("clock_settled_ms.cam")
    assert settled is not None and 0 < settled <= 3000, report.metrics["gauges"]
    steps = [p for p in read_ltk(out).packets if isinstance(p, AlignedStep)]
    assert steps and sum(1 for s in steps if s.flags) <= 2  # complete steps (a partial one at each end)


def truth_record(tmp_path: Path, port: int) -> Path:
    return tmp_path / f"sent-{port}.ts"
