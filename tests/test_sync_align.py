"""Aligner: grid, membership (video by start, audio by midpoint), watermarks, lateness, flags,
late packets, flush; items and steps stay in host time (the daemon converts them to the wire)."""

from __future__ import annotations

import numpy as np
import pytest

from livetok.sync import Aligner, Step
from livetok.wire import (
    Clock,
    Flag,
    Modality,
    Scale,
    StepFlag,
    TokenPacket,
)

MS = 1_000_000
STEP = 80 * MS
T0 = 5_000 * MS  # host monotonic time of the first packet
CODEBOOK = "0123456789abcdef"
UNIX = 1_700_000_000_000_000_000


def packet(modality: Modality, scale: Scale, start: int, end: int, seq: int = 0) -> TokenPacket:
    rows = 1 if modality == Modality.AUDIO else 2
    return TokenPacket(
        source="mic0" if modality == Modality.AUDIO else "cam0",
        modality=modality,
        scale=scale,
        seq=seq,
        start_ns=start,
        end_ns=end,
        clock=Clock.MEDIA,  # the aligner reads start_ns / end_ns as host monotonic ns and never converts
        codebook_id=CODEBOOK,
        flags=Flag.KEYFRAME,
        grid=(rows, rows),
        codes=np.full((rows * rows, 2), seq % 65536, np.uint16),
    )


def video(start: int, seq: int = 0, frame: int = 33_333_333) -> TokenPacket:
    return packet(Modality.VIDEO, Scale.FINE, start, start + frame, seq)


def audio(start: int, length: int, scale: Scale = Scale.FINE, seq: int = 0) -> TokenPacket:
    return packet(Modality.AUDIO, scale, start, start + length, seq)


def av_stream(seconds: float, *, a_rate: float = 1.0, v_rate: float = 1.0, a_start: int = T0, v_start: int = T0,
              fps: int = 30) -> list[TokenPacket]:
    """Audio fine (20 ms) + coarse (80 ms) and video frames, host time, time-ordered by end.

    ``a_rate`` / ``v_rate``: host ns per media ns (1 + drift) of the two capture clocks.
    """
    out: list[tuple[int, TokenPacket]] = []
    for k in range(int(seconds * 50)):
        s, e = a_start + round(k * 20 * MS * a_rate), a_start + round((k + 1) * 20 * MS * a_rate)
        out.append((e, audio(s, e - s, Scale.FINE, k)))
    for k in range(int(seconds * 12.5)):
        s, e = a_start + round(k * 80 * MS * a_rate), a_start + round((k + 1) * 80 * MS * a_rate)
        out.append((e, audio(s, e - s, Scale.COARSE, k)))
    for k in range(int(seconds * fps)):
        s, e = v_start + round(k * 1e9 / fps * v_rate), v_start + round((k + 1) * 1e9 / fps * v_rate)
        out.append((s, video(s, k, e - s)))  # a frame is tokenized as soon as it is captured
    out.sort(key=lambda p: p[0])
    return [p for _, p in out]


def make(**kw: object) -> Aligner[TokenPacket]:
    return Aligner[TokenPacket]("g", **kw)  # type: ignore[arg-type]


def members(step: Step[TokenPacket], modality: Modality, scale: Scale | None = None) -> list[TokenPacket]:
    return [p for p in step.items if p.modality == modality and (scale is None or p.scale == scale)]


def test_steps_complete_on_watermarks() -> None:
    al = make()
    for p in av_stream(1.0):
        assert al.add(p)
    assert al.poll(T0) == []  # no watermark yet, deadline far away
    al.watermark(Modality.VIDEO, T0 + 400 * MS)
    assert al.poll(T0) == []  # audio has not delivered anything
    al.watermark(Modality.AUDIO, T0 + 240 * MS)
    steps = al.poll(T0)  # now is before every deadline: these are complete by watermarks
    assert [s.seq for s in steps] == [0, 1, 2]
    assert [s.start_ns for s in steps] == [T0, T0 + STEP, T0 + 2 * STEP]
    assert all(s.end_ns - s.start_ns == STEP and s.flags == StepFlag.NONE for s in steps)
    for s in steps:
        assert len(members(s, Modality.AUDIO, Scale.FINE)) == 4
        assert len(members(s, Modality.AUDIO, Scale.COARSE)) == 1
        assert len(members(s, Modality.VIDEO)) in (2, 3)
    assert sum(len(members(s, Modality.VIDEO)) for s in steps) == 8  # frames starting in [0, 240 ms)
    assert al.stats.complete == 3 and al.stats.late == 0 and al.stats.steps == 3
    al.watermark(Modality.AUDIO, T0 + 100 * MS)  # watermarks never go back
    assert al.poll(T0) == []
    assert al.pending_steps == 10  # 12.5 steps of audio, last coarse packet mid at 0.92 s


def test_packets_inside_a_step_are_ordered() -> None:
    al = make()
    for p in reversed(av_stream(0.08)):  # added in reverse
        al.add(p)
    al.watermark(Modality.AUDIO, T0 + STEP)
    al.watermark(Modality.VIDEO, T0 + STEP)
    (step,) = al.poll(T0)
    keys = [(p.modality, p.scale, p.start_ns) for p in step.items]
    assert keys == sorted(keys)
    assert keys[0] == (Modality.AUDIO, Scale.FINE, T0) and keys[-1][0] == Modality.VIDEO


def test_missing_modality_yields_late_steps_flagged() -> None:
    al = make(lateness_ns=500 * MS)
    for k in range(30):  # one second of video, no audio at all
        al.add(video(T0 + k * 33_333_333, k))
    al.watermark(Modality.VIDEO, T0 + 1_000 * MS)
    assert al.poll(T0 + 579 * MS) == []  # step 0 ends at 80 ms: due at 580 ms
    steps = al.poll(T0 + 580 * MS)
    assert len(steps) == 1 and steps[0].flags == StepFlag.MISSING_AUDIO | StepFlag.LATE
    assert len(members(steps[0], Modality.VIDEO)) == 3
    steps = al.poll(T0 + 500 * MS + 400 * MS)  # steps 1..4 end by 400 ms
    assert [s.seq for s in steps] == [1, 2, 3, 4]
    assert all(s.flags == StepFlag.MISSING_AUDIO | StepFlag.LATE for s in steps)
    assert al.stats.late == 5 and al.stats.complete == 0 and al.stats.missing == 5


def test_a_dead_source_can_be_released_by_its_watermark() -> None:
    """Advancing a dead modality's watermark emits steps at once: MISSING but not LATE."""
    al = make()
    al.add(video(T0))
    al.watermark(Modality.VIDEO, T0 + STEP)
    al.watermark(Modality.AUDIO, T0 + STEP)
    (step,) = al.poll(T0)
    assert step.flags == StepFlag.MISSING_AUDIO


def test_video_by_start_audio_by_midpoint() -> None:
    al = make()
    al.add(video(T0))  # anchors the grid at T0
    al.add(video(T0 + STEP - 1))  # starts 1 ns before the boundary: step 0 though mostly in step 1
    al.add(video(T0 + STEP))  # starts at the boundary: step 1
    al.add(audio(T0 + STEP - 30 * MS, 80 * MS, Scale.COARSE))  # midpoint 10 ms into step 1
    al.add(audio(T0 + STEP - 50 * MS, 80 * MS, Scale.COARSE, 1))  # midpoint 10 ms before its end
    al.add(audio(T0 + STEP - 10 * MS, 20 * MS, Scale.FINE))  # midpoint exactly at the boundary: step 1
    al.add(audio(T0 + STEP - 11 * MS, 20 * MS, Scale.FINE, 1))  # midpoint 1 ms before: step 0
    steps = al.flush()
    assert [s.start_ns for s in steps] == [T0, T0 + STEP]
    s0, s1 = steps
    assert [p.start_ns for p in members(s0, Modality.VIDEO)] == [T0, T0 + STEP - 1]
    assert [p.start_ns for p in members(s1, Modality.VIDEO)] == [T0 + STEP]
    assert [p.seq for p in members(s0, Modality.AUDIO, Scale.COARSE)] == [1]
    assert [p.seq for p in members(s1, Modality.AUDIO, Scale.COARSE)] == [0]
    assert [p.seq for p in members(s0, Modality.AUDIO, Scale.FINE)] == [1]
    assert [p.seq for p in members(s1, Modality.AUDIO, Scale.FINE)] == [0]


def test_packets_before_the_anchor_extend_the_grid_back() -> None:
    al = make()
    al.add(video(T0))
    al.add(audio(T0 - 60 * MS, 20 * MS))  # midpoint 50 ms before the anchor: step -1
    steps = al.flush()
    assert [s.start_ns for s in steps] == [T0 - STEP, T0]
    assert [s.seq for s in steps] == [0, 1]
    assert steps[0].flags == StepFlag.MISSING_VIDEO | StepFlag.LATE


@pytest.mark.slow
@pytest.mark.parametrize(("a_drift", "v_drift"), [(100e-6, -100e-6), (-100e-6, 100e-6)])
def test_membership_under_drift(a_drift: float, v_drift: float) -> None:
    """Ten minutes of a +-100 ppm audio clock and a -+100 ppm camera on the host grid: every
    packet lands exactly once, in the step its rule says; steps keep ~4 fine and ~1 coarse."""
    seconds = 600
    al = make()
    stream = av_stream(seconds, a_rate=1 + a_drift, v_rate=1 + v_drift, a_start=T0 + 41 * MS)
    steps: list[Step[TokenPacket]] = []
    for p in stream:
        assert al.add(p)
        if p.modality == Modality.VIDEO:
            al.watermark(Modality.VIDEO, p.start_ns + 1)  # the next frame starts later
        elif p.scale == Scale.COARSE:
            al.watermark(Modality.AUDIO, p.end_ns)  # coarse lags fine: it bounds the modality
        steps += al.poll(p.end_ns)
    steps += al.flush()
    assert sum(len(s.items) for s in steps) == len(stream)
    assert al.stats.late_packets == 0
    fine, coarse = [], []
    for s in steps:
        for p in s.items:
            t = p.start_ns if p.modality == Modality.VIDEO else (p.start_ns + p.end_ns) // 2
            assert s.start_ns <= t < s.end_ns
        fine.append(len(members(s, Modality.AUDIO, Scale.FINE)))
        coarse.append(len(members(s, Modality.AUDIO, Scale.COARSE)))
    inner = slice(1, -2)  # the first and the flushed last steps are partial
    assert set(fine[inner]) <= {3, 4, 5} and set(coarse[inner]) <= {0, 1, 2}
    assert np.mean(np.array(fine[inner]) == 4) > 0.99
    assert np.mean(np.array(coarse[inner]) == 1) > 0.99
    if a_drift < 0:  # coarse midpoints start 1 ms past a boundary and creep back 8 µs per step
        assert set(coarse[inner]) & {0, 2}  # so the slip by one step happened inside the test
    assert [s.seq for s in steps] == list(range(len(steps)))


def test_late_packets_are_counted_and_dropped() -> None:
    al = make()
    al.add(video(T0))
    al.add(audio(T0, 20 * MS))
    al.watermark(Modality.VIDEO, T0 + STEP)
    al.watermark(Modality.AUDIO, T0 + STEP)
    (step,) = al.poll(T0)
    assert not al.add(audio(T0 + 20 * MS, 20 * MS, seq=1))  # belongs to step 0, already out
    assert not al.add(video(T0 + 40 * MS, seq=1))
    assert al.add(video(T0 + STEP, seq=2))
    assert al.stats.late_packets == 2
    assert al.stats.late_by_modality == {Modality.AUDIO: 1, Modality.VIDEO: 1}
    later = al.flush()
    assert [p.seq for s in later for p in s.items] == [2]
    assert len(step.items) == 2


def test_flush_emits_everything_pending() -> None:
    al = make()
    for p in av_stream(0.5):
        al.add(p)
    al.watermark(Modality.AUDIO, T0 + 2 * STEP)
    al.watermark(Modality.VIDEO, T0 + 10 * STEP)
    assert len(al.poll(T0)) == 2
    rest = al.flush()
    assert al.pending_steps == 0 and al.stats.pending_packets == 0
    assert [s.seq for s in rest] == [2, 3, 4, 5, 6]
    assert all(s.flags & StepFlag.LATE for s in rest)  # audio never covered them
    assert rest[-1].flags & StepFlag.MISSING_VIDEO  # the last fine audio (mid 490 ms) has no frame
    assert al.stats.steps == 7 and al.stats.complete == 2 and al.stats.late == 5
    assert al.flush() == []


def test_items_and_steps_stay_in_host_time() -> None:
    """The aligner converts nothing: the very items go out, on the host grid (one conversion, later)."""
    al = make()
    originals = av_stream(0.16)
    for p in originals:
        al.add(p)
    al.watermark(Modality.AUDIO, T0 + 2 * STEP)
    al.watermark(Modality.VIDEO, T0 + 2 * STEP)
    steps = al.poll(T0)
    assert [(s.start_ns, s.end_ns) for s in steps] == [(T0, T0 + STEP), (T0 + STEP, T0 + 2 * STEP)]
    out = [p for s in steps for p in s.items]
    assert len(out) == len(originals) and {id(p) for p in out} == {id(p) for p in originals}


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        make(step_ns=0)
    with pytest.raises(ValueError):
        make(modalities=[])
    with pytest.raises(ValueError):
        Aligner("x" * 256)
