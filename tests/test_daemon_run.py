"""``livetok run`` end to end: real threads, the synthetic source, a dead source, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from test_service_notify import NotifySocket

from livetok.cli import main
from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking
from livetok.wire import AlignedStep, Modality, Scale, TokenPacket, read_ltk


@pytest.mark.slow
def test_synthetic_run_recovers_the_marker_offset(tmp_path: Path) -> None:
    out = tmp_path / "syn.ltk"
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": "syn", "audio_offset_ms": 37, "marker_interval_s": 1.0}],
        "sinks": [{"kind": "file", "path": str(out)}],
    })
    report = run_blocking(cfg, 3.5)
    assert report.stopped_by == "duration"
    result = read_ltk(out)
    assert result.errors == []
    steps = [p for p in result.packets if isinstance(p, AlignedStep)]
    packets = [p for p in result.packets if isinstance(p, TokenPacket)]
    assert report.steps == len(steps) > 0
    # one step per 80 ms of the grid, none missing (however many a loaded machine got through)
    assert [s.seq for s in steps] == list(range(len(steps)))
    assert [round((s.start_ns - steps[0].start_ns) / 80_000_000) for s in steps] == list(range(len(steps)))
    skews = [s.skew_ns for s in steps if s.skew_ns is not None]
    assert skews and abs(skews[-1] - 37_000_000) <= 2_000_000  # audio minus video, from the markers
    fine_audio = [p for p in packets if p.modality == Modality.AUDIO and p.scale == Scale.FINE]
    assert [p.seq for p in fine_audio] == list(range(len(fine_audio)))  # none lost, none repeated
    gauges = report.metrics["gauges"]
    books = report.accounting["captures"]["syn.video"]
    fine_video = [p for p in packets if p.modality == Modality.VIDEO and p.scale == Scale.FINE]
    assert isinstance(gauges, dict) and gauges["source.syn.frames"] == books["captured"] > 0
    assert books["tokenized"] == len(fine_video) and books["balanced"] == 1  # every frame a packet, or counted


@pytest.mark.slow
def test_dead_source_does_not_stop_the_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A UDP stream nobody sends to stalls and is retried; the synthetic source keeps flowing."""
    out = tmp_path / "two.ltk"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources:\n"
        "  - {kind: stream, name: dead, url: 'udp://127.0.0.1:9', format: mpegts,\n"
        "     open_timeout_s: 1, read_timeout_s: 1}\n"
        "  - {kind: synthetic, name: syn}\n"
        f"sinks:\n  - {{kind: file, path: '{out}'}}\n")
    assert main(["run", "-c", str(cfg), "--duration", "3"]) == 0
    packets = [p for p in read_ltk(out).packets if isinstance(p, TokenPacket)]
    assert {p.source for p in packets} == {"syn"}
    err = capsys.readouterr().err
    assert '"source.dead.frames": 0' in err and '"source.syn.frames"' in err


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_the_file_whole(tmp_path: Path) -> None:
    out = tmp_path / "sig.ltk"
    proc = subprocess.Popen(
        [sys.executable, "-m", "livetok.cli", "run", "--source", "synthetic", "--sink", f"file:{out}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 20_000):
            time.sleep(0.2)
        assert out.exists() and out.stat().st_size >= 20_000, "no tokens written"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    result = read_ltk(out)
    assert result.errors == [] and len(result.packets) > 20  # the last packet is whole


def test_bad_flags_are_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--source", str(tmp_path / "nope.mp4"), "--duration", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 78 and err.startswith("livetok: error: --source") and len(err.splitlines()) == 1
    code = main(["run", "--source", "synthetic", "--sink", "ftp://x", "--duration", "1"])
    assert code == 78 and "--sink ftp://x" in capsys.readouterr().err
    code = main(["run", "--source", "synthetic", "--sink", "mqtt://me:hunter2@x", "--duration", "1"])
    err = capsys.readouterr().err
    assert code == 78 and "contains a password" in err and "hunter2" not in err


def test_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources:\n  - {kind: synthetic, name: s}\n  - {kind: mic, name: m}\n")
    assert main(["check-config", "-c", str(cfg)]) == 0
    assert "groups: s(video=s, audio=m)" in capsys.readouterr().out
    cfg.write_text("sources:\n  - {kind: synthetic, name: s, fps: -1}\n")
    assert main(["check-config", "-c", str(cfg)]) == 78
    assert "c.yaml:2: sources.0.fps" in capsys.readouterr().err


def test_devices_lists_or_says_none(capsys: pytest.CaptureFixture[str]) -> None:
    """``livetok devices`` prints this machine's cameras (each /dev/videoN, or "none") and microphones
    (each PortAudio input, or "none"), as livetok.streams.devices lists them."""
    from livetok.streams.devices import DEV, format_devices, list_devices

    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    devices = list_devices()
    assert out == format_devices(devices) + "\n"
    cameras, _, rest = out.partition("microphones (PortAudio):\n")
    nodes = sorted((p for p in DEV.glob("video*") if p.name[5:].isdigit()), key=lambda p: int(p.name[5:]))
    assert cameras.startswith("cameras (V4L2):\n")
    assert [ln.split()[0] for ln in cameras.splitlines()[1:]] == ([str(p) for p in nodes] or ["none"])
    mics = [ln for ln in rest.splitlines() if not ln.startswith("note: ")]
    if devices.microphones:  # a header, then one line each
        assert len(mics) == 1 + len(devices.microphones) and mics[0].split()[:2] == ["#", "name"]
    else:
        assert mics == ["  none"]


def _cli(*args: str, notify: NotifySocket | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if notify is not None:  # the daemon says where it is in its life (sd_notify), as under systemd
        env["NOTIFY_SOCKET"] = str(notify.path)
    return subprocess.Popen([sys.executable, "-m", "livetok.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


def _wait(predicate: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, f"never {what}"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["sinks open", "tokenizers loading"])
def test_sigterm_during_start_up_stops_cleanly(tmp_path: Path, notify: NotifySocket, phase: str) -> None:
    """SIGTERM in start-up, at two points the daemon shows: its file sink is open (made before the
    tokenizers load); its first EXTEND_TIMEOUT_USEC (sent while they load). Either way before READY."""
    out = tmp_path / "early.ltk"
    proc = _cli("run", "--source", "synthetic", "--sink", f"file:{out}", notify=notify)
    try:
        if phase == "sinks open":
            _wait(out.exists, "made the sink's file")
        else:
            notify.wait_for("EXTEND_TIMEOUT_USEC")
        assert not any("READY" in f for _, f in notify.messages)  # still starting
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert read_ltk(out).errors == []


@pytest.mark.slow
def test_a_second_sigint_means_hurry_not_a_traceback(tmp_path: Path, notify: NotifySocket) -> None:
    """The second SIGINT arrives once the daemon said it is stopping (STOPPING=1)."""
    out = tmp_path / "twice.ltk"
    proc = _cli("run", "--source", "synthetic", "--sink", f"file:{out}", notify=notify)
    try:
        _wait(lambda: out.exists() and out.stat().st_size >= 20_000, "wrote 20 kB of tokens")
        proc.send_signal(signal.SIGINT)
        notify.wait_for("STOPPING", "1")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by SIGINT" in err and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert read_ltk(out).errors == []


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf", "soon"])
def test_bad_durations_are_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--source", "synthetic", "--sink", "file:/tmp/never.ltk", "--duration", value]) == 78
    err = capsys.readouterr().err
    assert f"--duration {value}" in err and len(err.strip().splitlines()) == 1


def test_no_sink_says_how_to_add_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--source", "synthetic", "--duration", "1"]) == 78
    assert "--sink file:PATH.ltk" in capsys.readouterr().err


@pytest.mark.exclusive  # it overloads the machine on purpose: nothing else runs beside it
@pytest.mark.slow
def test_overload_books_balance_exactly(tmp_path: Path) -> None:
    """Six 1280x720@60 synthetic sources on this machine, tiny queues: frames and blocks are dropped,
    and every one of them is counted: captured = tokenized + dropped, per source and modality."""
    out = tmp_path / "load.ltk"
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": f"s{i}", "size": "1280x720", "fps": 60} for i in range(6)],
        "sinks": [{"kind": "file", "path": str(out), "queue_messages": 64}],
        "queues": {"video_frames": 2, "audio_blocks": 4},
    })
    report = run_blocking(cfg, 4.0)
    books = report.accounting
    assert books["balanced"] == 1, books
    caps = books["captures"]
    assert len(caps) == 12
    for row in caps.values():
        assert row["captured"] == (row["tokenized"] + row["dropped_queue"] + row["failed"]
                                   + row["dropped_shutdown"])
    assert sum(r["dropped_queue"] for r in caps.values()) > 0  # overloaded indeed: the drop path ran
    sink = books["sinks"]["file0"]
    assert sink["offered"] == sink["written"] + sink["dropped"] + sink["failed"]
    assert len(read_ltk(out).packets) == sink["written"]
    for key, n in books["emitted"].items():  # every message made reached the sink's books
        assert sink["streams"][key]["produced"] == n


@pytest.mark.slow
def test_run_a_file_gives_the_codes_of_tokenize(tmp_path: Path, av_clip: Path) -> None:
    """One tokenizer path: the daemon playing a file live and `livetok tokenize` give, packet for
    packet, the same codes, sequence numbers and flags (only the timestamps' epoch differs)."""
    live, offline = tmp_path / "live.ltk", tmp_path / "offline.ltk"
    assert main(["tokenize", str(av_clip), "-o", str(offline)]) == 0
    assert main(["run", "--source", str(av_clip), "--sink", f"file:{live}", "--duration", "30"]) == 0

    def streams(path: Path) -> dict[tuple[Modality, Scale], list[TokenPacket]]:
        out: dict[tuple[Modality, Scale], list[TokenPacket]] = {}
        for p in read_ltk(path).packets:
            if isinstance(p, TokenPacket):
                out.setdefault((p.modality, p.scale), []).append(p)
        return out

    a, b = streams(live), streams(offline)
    assert set(a) == set(b) == {(m, s) for m in Modality for s in Scale}
    for key in b:
        assert len(a[key]) == len(b[key]) > 10, key
        for p, q in zip(a[key], b[key], strict=True):
            assert (p.seq, p.flags, p.grid) == (q.seq, q.flags, q.grid), key
            assert np.array_equal(p.codes, q.codes), (key, p.seq)


@pytest.mark.slow
def test_a_source_that_will_not_stop_cannot_hold_the_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sources are stopped in the daemon's own lanes (daemon threads), not the default executor, whose
    threads the loop's close joins: a stop stuck past the shutdown deadline is abandoned, and the run
    returns while it still hangs."""
    import threading

    import livetok.pipeline.runner as runner_module
    from livetok.pipeline.sources import RunningSource

    release, returned = threading.Event(), threading.Event()
    real_stop = RunningSource.stop

    def stuck_stop(self: RunningSource) -> None:
        release.wait(90)  # a capture thread's stop that hangs (a driver call that never returns)
        real_stop(self)

    monkeypatch.setattr(RunningSource, "stop", stuck_stop)
    monkeypatch.setattr(runner_module, "SHUTDOWN_S", 1.0)
    monkeypatch.setattr(runner_module, "STOP_ON_ERROR_S", 1.0, raising=False)
    cfg = LivetokConfig.model_validate({"sources": [{"kind": "synthetic", "name": "cam", "size": "160x120"}],
                                        "sinks": [{"kind": "file", "path": str(tmp_path / "s.ltk")}]})
    still_stuck: list[bool] = []

    def go() -> None:
        run_blocking(cfg, 1.0)
        still_stuck.append(not release.is_set())
        returned.set()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    try:
        assert returned.wait(60), "the run never returned while a stop hung"
    finally:
        release.set()
        t.join(30)
    assert still_stuck == [True]


@pytest.mark.slow
def test_frames_captured_while_the_sources_stop_are_tokenized(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A source takes a while to see its stop (a read in progress) and delivers frames meanwhile: 0.6 s
    at 60 fps is 36 frames, more than its hand-over holds (8). The daemon stops capture before it stops
    taking frames, so none is dropped (before: the batcher stopped first and the hand-over overflowed)."""
    from livetok.pipeline.sources import RunningSource

    real_stop = RunningSource.stop

    def slow_stop(self: RunningSource) -> None:
        time.sleep(0.6)
        real_stop(self)

    monkeypatch.setattr(RunningSource, "stop", slow_stop)
    cfg = LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": "cam", "size": "160x120", "fps": 60}],
        "sinks": [{"kind": "file", "path": str(tmp_path / "s.ltk")}],
    })
    books = run_blocking(cfg, 1.5).accounting
    row = books["captures"]["cam.video"]
    assert books["balanced"] == 1, books
    assert row["captured"] > 100  # 1.5 s and the 0.6 s stop at 60 fps
    assert row["dropped_queue"] == row["dropped_shutdown"] == row["failed"] == 0, row
    assert row["tokenized"] == row["captured"]


def test_the_start_up_objects_are_frozen_out_of_the_collector_while_running(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """After the warm-up, gc.freeze(): a full collection then scans only what the run makes (before, one
    held the GIL up to 87 ms at 12 cameras and every thread stalled); unfrozen when the run ends."""
    import gc

    from livetok.pipeline.engine import Engine

    frozen: list[int] = []
    real = Engine.on_video

    def on_video(self: Engine, *args: object, **kwargs: object) -> object:
        frozen.append(gc.get_freeze_count())
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "on_video", on_video)
    cfg = LivetokConfig.model_validate({"sources": [{"kind": "synthetic", "name": "cam", "size": "160x120"}],
                                        "sinks": [{"kind": "file", "path": str(tmp_path / "gc.ltk")}]})
    run_blocking(cfg, 1.0)
    assert frozen and min(frozen) > 10_000  # torch, the codebooks, the config: frozen while frames flow
    assert gc.get_freeze_count() == 0
