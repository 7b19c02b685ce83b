"""The token rate where a user meets it on the command line: ``livetok tokenize --token-fps`` (a file's
video at that rate, exactly as the daemon tokenizes the same file played with ``token_fps``) and
``livetok run --token-fps`` (every ``--source`` of the command line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from mediagen import ffmpeg
from requires import require

import livetok.pipeline.engine as engine
from livetok.cli import main
from livetok.commands.run_flags import compose
from livetok.config import LivetokConfig
from livetok.daemon.main import run_blocking
from livetok.media.decode import ticks_to_ns
from livetok.wire import Modality, Scale, TokenPacket, read_ltk
from livetok.wire.packet import encode_packet

MS = 1_000_000
SLOT = 200 * MS  # 5 fps
Key = tuple[Modality, Scale]


@pytest.fixture(scope="module")
def bclip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of 320x240 at 30 fps, H.264 with B-frames (the decoder skips the non-reference ones), a
    keyframe every second, and an AAC tone."""
    require("ffmpeg")
    path = tmp_path_factory.mktemp("ratecli") / "b.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=3",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=3",
           "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "30", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-shortest", str(path))
    return path


def streams(packets: list[Any]) -> dict[Key, list[TokenPacket]]:
    out: dict[Key, list[TokenPacket]] = {}
    for p in packets:
        if isinstance(p, TokenPacket):
            out.setdefault((p.modality, p.scale), []).append(p)
    return out


def frame_times(path: Path) -> list[int]:
    """The media time (ns) of every video frame of the file, from a full decode."""
    with av.open(str(path)) as c:
        return sorted(ticks_to_ns(f.pts, f.time_base) for f in c.decode(video=0)
                      if f.pts is not None and f.time_base is not None)


@pytest.mark.slow
def test_tokenize_at_5_fps_equals_the_daemon_playing_the_file_at_5_fps(
        bclip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Streaming equals offline with a token rate: the same kept frames (the first of each 200 ms slot
    of media time), the same codes, sequence numbers and flags, the same media times (each frame
    standing for its slot). The daemon's packets are taken as its engine made them, in media time,
    before its clock maps them to the host's (its file sink writes those mapped times)."""
    offline, live = tmp_path / "offline.ltk", tmp_path / "live.ltk"
    assert main(["tokenize", str(bclip), "-o", str(offline), "--token-fps", "5"]) == 0
    err = capsys.readouterr().err
    assert "token rate 5 fps: 15 of 90 video frames tokenized (75 skipped by the rate" in err, err

    made: list[TokenPacket] = []
    real = engine.encode_video

    def recorded(*args: Any, **kwargs: Any) -> list[list[TokenPacket]]:
        out = real(*args, **kwargs)
        made.extend(p for packets in out for p in packets)
        return out

    monkeypatch.setattr(engine, "encode_video", recorded)
    cfg = LivetokConfig.model_validate({"sources": [{"kind": "file", "name": "b", "path": str(bclip), "token_fps": 5}],
                                        "sinks": [{"kind": "file", "path": str(live)}]})
    report = run_blocking(cfg, 30.0)
    assert report.stopped_by != "duration"  # the file played to its end
    row = report.accounting["captures"]["b.video"]
    assert (row["captured"], row["skipped_by_rate"], row["tokenized"]) == (90, 75, 15)

    a, b, sent = streams(read_ltk(offline).packets), streams(made), streams(read_ltk(live).packets)
    kept = frame_times(bclip)[::6]  # 30 fps: the first frame of every 200 ms slot
    for scale in Scale:
        key = (Modality.VIDEO, scale)
        assert len(a[key]) == len(b[key]) == len(sent[key]) == 15, key
        assert [p.start_ns for p in a[key]] == [p.start_ns for p in b[key]] == [t - kept[0] for t in kept]
        assert {p.end_ns - p.start_ns for p in a[key]} == {p.end_ns - p.start_ns for p in b[key]} == {SLOT}
        for p, q, s in zip(a[key], b[key], sent[key], strict=True):
            assert (p.seq, p.flags, p.grid) == (q.seq, q.flags, q.grid) == (s.seq, s.flags, s.grid), key
            assert np.array_equal(p.codes, q.codes) and np.array_equal(p.codes, s.codes), (key, p.seq)
    for scale in Scale:  # the audio is untouched by the rate, and the same too
        key = (Modality.AUDIO, scale)
        assert len(a[key]) == len(sent[key]) > 10
        assert all(np.array_equal(p.codes, s.codes) for p, s in zip(a[key], sent[key], strict=True))


@pytest.mark.slow
def test_tokenize_skips_decoding_what_the_rate_drops_and_keeps_every_frame_at_or_above_the_files_rate(
        bclip: Path, tmp_path: Path, toks: Any) -> None:
    """At 5 fps the decoder is told to skip non-reference frames (never decoded, counted); at 30 and
    at 1000 fps (above the file's 30) every stream's packets are those of a run without the flag."""
    from livetok.commands.tokenize import tokenize_files

    report = tokenize_files([bclip], toks, tmp_path / "5.ltk", token_fps=5)
    assert report.frames["video"] == 15 and report.rate["captured"] == 90 and report.rate["skipped"] == 75
    assert 0 < report.rate["undecoded"] <= 75
    tokenize_files([bclip], toks, tmp_path / "all.ltk")
    every = streams(read_ltk(tmp_path / "all.ltk").packets)
    for fps in (30, 1000):
        r = tokenize_files([bclip], toks, tmp_path / f"{fps}.ltk", token_fps=fps)
        assert r.frames["video"] == 90 and r.rate["skipped"] == 0
        got = streams(read_ltk(tmp_path / f"{fps}.ltk").packets)
        assert got.keys() == every.keys()
        for key, packets in every.items():  # the streams interleave in the order the threads made them
            assert [encode_packet(p) for p in got[key]] == [encode_packet(p) for p in packets], (fps, key)


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "1001", "five"])
@pytest.mark.parametrize("command", ["tokenize", "run"])
def test_a_bad_token_fps_is_one_line_78(bclip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        command: str, value: str) -> None:
    out = tmp_path / "out.ltk"
    argv = (["tokenize", str(bclip), "-o", str(out)] if command == "tokenize"
            else ["run", "--source", str(bclip), "--sink", f"file:{out}", "--duration", "1"])
    assert main([*argv, f"--token-fps={value}"]) == 78
    err = capsys.readouterr().err
    assert err == f"livetok: error: --token-fps {value}: expected frames per second from 0.01 to 1000\n", err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_run_token_fps_applies_to_every_source_flag_and_to_no_source_of_the_file(tmp_path: Path) -> None:
    clip = tmp_path / "door.mp4"
    clip.write_bytes(b"x")  # --source takes an existing file; nothing opens it here
    cfg = LivetokConfig.model_validate({"sources": [{"kind": "lavfi", "name": "own", "graph": "testsrc2",
                                                     "token_fps": 2},
                                                    {"kind": "lavfi", "name": "every", "graph": "testsrc2"}]})
    out = compose(cfg, [str(clip), "rtsp://cam/stream", "synthetic"], [], [], token_fps=5)
    rates = {s.name: s.token_fps for s in out.sources}  # type: ignore[union-attr]
    assert rates == {"own": 2, "every": None, "door": 5, "cam_stream": 5, "src2": 5}


def test_run_token_fps_without_a_source_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--token-fps", "5", "--duration", "1"]) == 78
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--token-fps applies to the --source flags, and none was given" in err, err
