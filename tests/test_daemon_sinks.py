"""Sinks keep data: append, refuse what is not theirs, lock, undo partial writes, rotate; a failing,
slow or hung sink is counted and never stops capture or the other sinks; the books balance."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from requires import not_on_this_machine, require_root

from livetok.config import FileSink as FileSinkConfig
from livetok.config import LivetokConfig
from livetok.daemon.runner import run
from livetok.errors import OutputError
from livetok.runtime.lane import BlockingLane
from livetok.runtime.stopping import StopControl
from livetok.sinks import FileSink, Outgoing, Sink
from livetok.tokenizers import Tokenizers
from livetok.wire import Clock, Flag, Modality, Scale, TokenPacket, encode_packet, read_ltk

LIVETOK = [sys.executable, "-m", "livetok.cli"]


def message(seq: int, source: str = "cam") -> Outgoing:
    p = TokenPacket(source=source, modality=Modality.AUDIO, scale=Scale.FINE, seq=seq, start_ns=seq * 20_000_000,
                    end_ns=(seq + 1) * 20_000_000, clock=Clock.UNIX, codebook_id="0123456789abcdef",
                    flags=Flag.NONE, grid=(1, 1), codes=np.full((1, 4), seq % 1000, np.uint16))
    return Outgoing(p, encode_packet(p), source, "audio", "fine", time.monotonic_ns())


def write(path: Path, seqs: range, **cfg: object) -> FileSink:
    async def go() -> FileSink:
        async with FileSink(FileSinkConfig(path=path, **cfg), "f") as sink:  # type: ignore[arg-type]
            for s in seqs:
                await sink.write_batch([message(s)])
        return sink

    return asyncio.run(go())


def seqs_in(path: Path) -> list[int]:
    result = read_ltk(path)
    assert result.errors == [], result.errors
    return [p.seq for p in result.packets]


def test_a_restarted_sink_appends(tmp_path: Path) -> None:
    out = tmp_path / "a.ltk"
    write(out, range(0, 5))
    write(out, range(5, 9))
    assert seqs_in(out) == list(range(9))


@pytest.mark.parametrize("content", [b"hello, not tokens\n", b"\x00" * 100])
def test_a_file_that_is_not_a_token_file_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    out = tmp_path / "media.mp4"
    out.write_bytes(content)
    with pytest.raises(OutputError, match=r"not a \.ltk token file; refusing to overwrite it"):
        write(out, range(3))
    assert out.read_bytes() == content


def test_not_a_regular_file_and_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="not a regular file"):
        write(tmp_path, range(1))
    with pytest.raises(OutputError, match="does not exist"):
        write(tmp_path / "nope" / "a.ltk", range(1))


def test_a_second_writer_is_refused_and_the_first_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "shared.ltk"

    async def go() -> None:
        async with FileSink(FileSinkConfig(path=out), "first") as first:
            await first.write_batch([message(0)])
            with pytest.raises(OutputError, match="in use by another process"):
                async with FileSink(FileSinkConfig(path=out), "second"):
                    pass
            await first.write_batch([message(1)])

    asyncio.run(go())
    assert seqs_in(out) == [0, 1]


def test_a_damaged_tail_is_moved_aside_not_truncated(tmp_path: Path) -> None:
    out = tmp_path / "crash.ltk"
    write(out, range(4))
    damaged = out.read_bytes()[:-7]  # a crash in the middle of the last record
    out.write_bytes(damaged)
    write(out, range(10, 12))
    assert seqs_in(out) == [10, 11]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("crash.damaged-")]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # every byte kept


def test_rotation_by_size_keeps_the_newest(tmp_path: Path) -> None:
    out = tmp_path / "rot.ltk"
    per = len(message(0).data) + 12
    write(out, range(30), rotate_mb=per * 10 / 1e6, keep=2)  # about 10 records per file
    rotated = sorted(p for p in tmp_path.iterdir() if p.name != "rot.ltk")
    assert len(rotated) == 2
    seen = [s for p in [*rotated, out] for s in seqs_in(p)]
    assert seen == list(range(seen[0], 30)) and seen[0] > 0  # the oldest file was deleted, none torn


def run_cli(*args: str, limit_kb: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [*LIVETOK, *args]
    if limit_kb is not None:
        cmd = ["bash", "-c", f'ulimit -f {limit_kb}; exec "$@"', "livetok", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_input_media_is_never_a_sink(tmp_path: Path, av_clip: Path) -> None:
    clip = tmp_path / "av.mp4"
    shutil.copy(av_clip, clip)
    before = clip.read_bytes()
    r = run_cli("run", "--source", str(clip), "--sink", f"file:{clip}", "--duration", "2")
    assert r.returncode == 73 and "not a .ltk token file; refusing to overwrite it" in r.stderr
    assert "Traceback" not in r.stderr and clip.read_bytes() == before


def _full_disk_checks(r: subprocess.CompletedProcess[str], out: Path, what: str) -> None:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert what in r.stderr
    assert r.stderr.count(what) <= 3  # said once per run of failures, not per retry
    assert "books balanced" in r.stderr
    result = read_ltk(out)
    assert result.errors == [] and len(result.packets) > 10  # whole records only


@pytest.mark.slow
def test_a_file_size_limit_is_counted_and_the_file_stays_whole(tmp_path: Path) -> None:
    out = tmp_path / "limited.ltk"
    r = run_cli("run", "--source", "synthetic", "--sink", f"file:{out}", "--duration", "5", limit_kb=150)
    _full_disk_checks(r, out, "file size limit reached")
    assert "failed" in r.stderr.split("books")[1]


@pytest.mark.slow
def test_a_full_disk_is_named_and_the_file_stays_whole(tmp_path: Path) -> None:
    require_root("mounting a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)], capture_output=True,
                           text=True)
    if mount.returncode != 0:  # root in a container without CAP_SYS_ADMIN: the machine's kind
        not_on_this_machine(f"root cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        out = mnt / "full.ltk"
        r = run_cli("run", "--source", "synthetic", "--sink", f"file:{out}", "--duration", "5")
        _full_disk_checks(r, out, "disk full")
    finally:
        subprocess.run(["umount", str(mnt)])


# -- sinks that misbehave, next to a good one -----------------------------------------------------

class SlowSink(Sink):
    """A sink slower than the stream: 50 ms per batch of at most 2 messages, a channel of 8."""

    def __init__(self) -> None:
        super().__init__("slow", queue_messages=8)

    async def write_batch(self, batch: list[Outgoing]) -> None:
        await asyncio.sleep(0.05)


class HungSink(Sink):
    """Its first write never returns (a dead NFS mount): stuck in its lane's thread, like a file's."""

    def __init__(self) -> None:
        super().__init__("hung", queue_messages=100)
        self.release = threading.Event()
        self.returned = threading.Event()
        self.lane = BlockingLane("hung")
        self.stuck_at_return = False

    async def write_batch(self, batch: list[Outgoing]) -> None:
        await self.lane.run(self._hang)

    def _hang(self) -> None:
        self.release.wait(30)
        self.returned.set()


def _run_with(toks: Tokenizers, tmp_path: Path, extra: list[Sink], seconds: float) -> tuple[object, float, Path]:
    out = tmp_path / "good.ltk"
    cfg = LivetokConfig.model_validate({"sources": [{"kind": "synthetic", "name": "syn"}],
                                        "sinks": [{"kind": "file", "path": str(out)}]})

    async def go() -> tuple[object, float]:
        stop = StopControl()
        stop.bind()
        good = FileSink(cfg.sinks[0], "file0")
        async with good:
            t0 = time.monotonic()
            report = await run(cfg, toks, [good, *extra], stop, seconds)
            for sink in extra:
                if isinstance(sink, HungSink):
                    sink.stuck_at_return = not sink.returned.is_set()
            return report, time.monotonic() - t0

    report, took = asyncio.run(go())
    return report, took, out


@pytest.mark.slow
def test_a_slow_sink_fills_only_its_own_channel(toks: Tokenizers, tmp_path: Path) -> None:
    import livetok.sinks.base as sinks_module

    slow = SlowSink()
    old = sinks_module.BATCH
    sinks_module.BATCH = 2
    try:
        report, _, out = _run_with(toks, tmp_path, [slow], 3.0)
    finally:
        sinks_module.BATCH = old
    books = report.accounting  # type: ignore[attr-defined]
    assert books["balanced"] == 1
    good, bad = books["sinks"]["file0"], books["sinks"]["slow"]
    assert good["dropped"] == 0 and good["written"] == good["offered"] > 0
    assert bad["offered"] == good["offered"]  # both were given every message; only the slow one dropped
    assert bad["dropped"] > 0 and bad["written"] + bad["dropped"] + bad["failed"] == bad["offered"]
    assert len(read_ltk(out).packets) == good["written"]


@pytest.mark.slow
def test_a_hung_sink_cannot_hold_the_shutdown(toks: Tokenizers, tmp_path: Path) -> None:
    import livetok.pipeline.runner as runner_module

    hung = HungSink()
    old = runner_module.SHUTDOWN_S
    runner_module.SHUTDOWN_S = 2.0
    try:
        report, _, out = _run_with(toks, tmp_path, [hung], 2.0)
    finally:
        runner_module.SHUTDOWN_S = old
        hung.release.set()
    books = report.accounting  # type: ignore[attr-defined]
    assert hung.stuck_at_return  # the run returned while the write was still hanging: nothing waited for it
    assert books["balanced"] == 1
    h = books["sinks"]["hung"]
    assert h["written"] == 0 and h["failed"] >= 1 and h["failed"] + h["dropped"] == h["offered"]
    assert books["sinks"]["file0"]["written"] == books["sinks"]["file0"]["offered"]
    assert read_ltk(out).errors == []


@pytest.mark.slow
def test_a_second_daemon_is_refused_before_the_slow_start_up(tmp_path: Path) -> None:
    """The file is locked as a running daemon's file sink locks it (flock, held by this test): a
    second `run` on it is refused in one line, exit 73, before torch is even imported."""
    import fcntl

    out = tmp_path / "held.ltk"
    write(out, range(2))
    fd = os.open(out, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        probe = ("import sys\nfrom livetok.cli import main\n"
                 f"code = main(['run', '--source', 'synthetic', '--sink', 'file:{out}', '--duration', '5'])\n"
                 "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\nsys.exit(code)\n")
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    finally:
        os.close(fd)
    assert r.returncode == 73, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "in use by another process (locked)" in err[0], r.stderr
    assert r.stdout.strip() == "torch not imported"
    assert seqs_in(out) == [0, 1]  # untouched
