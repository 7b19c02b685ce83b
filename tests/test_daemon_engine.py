"""The daemon's core without threads: captures in, packets and steps out, on one clock."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from livetok.config import LivetokConfig
from livetok.pipeline.engine import Engine
from livetok.pipeline.outbound import WireStamper
from livetok.pipeline.results import EngineOutput, HostPacket
from livetok.streams.types import AudioCapture, VideoCapture
from livetok.tokenizers import Tokenizers
from livetok.wire import AlignedStep, Clock, Flag, Modality, Scale, StepFlag, TokenPacket

NS = 1_000_000_000
RATE = 16000
BLOCK = 320  # 20 ms
FRAME_NS = NS // 30


class Collected:
    """What the engine put out, as the runner would: host packets, and wire messages (UNIX)."""

    def __init__(self, stamper: WireStamper | None = None) -> None:
        self.stamper = stamper or WireStamper()
        self.host: list[HostPacket] = []
        self.items: list[TokenPacket | AlignedStep] = []
        self.gaps: list[tuple[str, str]] = []

    def add(self, out: EngineOutput) -> None:
        self.host += out.packets
        self.gaps += out.gaps
        self.items += [self.stamper.packet(hp) for hp in out.packets]
        self.items += [self.stamper.step(hs) for hs in out.steps]


def engine(toks: Tokenizers, sources: list[dict[str, object]], **extra: object) -> tuple[Engine, Collected]:
    cfg = LivetokConfig.model_validate({"sources": sources, **extra})
    return Engine(cfg, toks), Collected()


def feed(eng: Engine, sink: Collected, seconds: float, t0: int | None = None, delay_ns: int = 3_000_000,
         audio_drift: float = 0.0, drop_audio_at: int | None = None, audio_lag_ns: int = 0,
         early_extra_ns: int = 0) -> None:
    """Frames at 30 fps and 20 ms audio blocks of one 'cam' source, arriving ``delay_ns`` after
    capture (plus jitter), in arrival order; ticks the engine as time passes. ``audio_lag_ns``:
    audio arrives this much later than its time (MPEG-TS carries audio behind video);
    ``early_extra_ns``: a busy machine at start-up, items of the first second arrive up to this much later."""
    t0 = time.monotonic_ns() if t0 is None else t0
    rng = np.random.default_rng(0)
    events: list[tuple[int, object]] = []
    image = np.full((224, 224, 3), 90, np.uint8)

    def busy(media: int) -> int:
        return int(early_extra_ns * max(0.0, 1 - media / NS))

    for i in range(int(seconds * 30)):
        media = i * FRAME_NS
        arrival = t0 + media + delay_ns + busy(media) + int(rng.exponential(1e6))
        events.append((arrival, VideoCapture("cam", image, media, arrival, FRAME_NS, discontinuity=i == 0)))
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(BLOCK) / RATE)).astype(np.float32)[None]
    for j in range(int(seconds * RATE / BLOCK)):
        if drop_audio_at is not None and j == drop_audio_at:
            continue
        media = j * BLOCK * NS // RATE
        end_host = t0 + round((media + BLOCK * NS // RATE) * (1 + audio_drift))
        arrival = end_host + delay_ns + audio_lag_ns + busy(media) + int(rng.exponential(1e6))
        events.append((arrival, AudioCapture("cam", tone, RATE, media, arrival, discontinuity=j == 0)))
    for arrival, item in sorted(events, key=lambda e: e[0]):
        if isinstance(item, VideoCapture):
            sink.add(eng.on_video([item]))
        else:
            assert isinstance(item, AudioCapture)
            sink.add(eng.on_audio([item]))
        sink.add(eng.tick(arrival))


@pytest.fixture(scope="module")
def run(toks: Tokenizers) -> tuple[Engine, Collected]:
    eng, sink = engine(toks, [{"kind": "synthetic", "name": "cam"}])
    feed(eng, sink, 3.0, t0=10 * NS)
    sink.add(eng.flush())
    return eng, sink


def test_steps_hold_four_fine_one_coarse_and_the_frames(run: tuple[Engine, Collected]) -> None:
    _, sink = run
    steps = [s for s in sink.items if isinstance(s, AlignedStep)]
    assert 30 <= len(steps) <= 38  # 3 s / 80 ms, the last ones flushed
    assert [s.seq for s in steps] == list(range(len(steps)))
    middle = steps[5:-5]
    for s in middle:
        kinds = [(p.modality, p.scale) for p in s.packets]
        assert kinds.count((Modality.AUDIO, Scale.FINE)) == 4
        assert kinds.count((Modality.AUDIO, Scale.COARSE)) == 1
        assert kinds.count((Modality.VIDEO, Scale.FINE)) in (2, 3)  # 80 ms of 30 fps
        assert s.flags == StepFlag.NONE and s.clock == Clock.UNIX
        for p in s.packets:
            mid = (p.start_ns + p.end_ns) // 2 if p.modality == Modality.AUDIO else p.start_ns
            assert s.start_ns <= mid < s.end_ns
            assert p.clock == Clock.UNIX


def test_video_and_audio_of_one_instant_share_a_timestamp(toks: Tokenizers) -> None:
    """Media time 1 s of the source: the video frame and the audio step that start there carry the
    same UNIX time (within the arrival jitter the clock model cannot remove)."""
    eng, sink = engine(toks, [{"kind": "synthetic", "name": "cam"}])
    feed(eng, sink, 1.5)
    packets = [p for p in sink.items if isinstance(p, TokenPacket)]
    frame30 = next(p for p in packets if p.modality == Modality.VIDEO and p.scale == Scale.FINE and p.seq == 30)
    audio50 = next(p for p in packets if p.modality == Modality.AUDIO and p.scale == Scale.FINE and p.seq == 50)
    assert abs(frame30.start_ns - audio50.start_ns) < 2_000_000
    unix_now = time.time_ns()
    assert abs(frame30.start_ns - unix_now) < 3600 * NS  # UNIX epoch, not monotonic


def test_no_late_packets(run: tuple[Engine, Collected]) -> None:
    eng, _ = run
    assert eng.aligner_stats()["cam"]["late_packets"] == 0


def test_missing_audio_gives_late_flagged_steps(toks: Tokenizers) -> None:
    eng, sink = engine(toks, [{"kind": "stream", "name": "cam", "url": "udp://127.0.0.1:1"}])
    image = np.zeros((224, 224, 3), np.uint8)
    for i in range(30):
        sink.add(eng.on_video([VideoCapture("cam", image, i * FRAME_NS, 10 * NS + i * FRAME_NS, FRAME_NS)]))
    sink.add(eng.tick(10 * NS + 3 * NS))  # long past the lateness bound
    steps = [s for s in sink.items if isinstance(s, AlignedStep)]
    assert steps and all(s.flags & StepFlag.MISSING_AUDIO and s.flags & StepFlag.LATE for s in steps)


def test_lost_audio_block_restarts_the_stream_with_a_gap(toks: Tokenizers) -> None:
    eng, sink = engine(toks, [{"kind": "synthetic", "name": "cam"}])
    feed(eng, sink, 2.0, drop_audio_at=40)  # the block at 0.8 s never arrives
    sink.add(eng.flush())
    fine = [p for p in sink.items if isinstance(p, TokenPacket) and p.modality == Modality.AUDIO
            and p.scale == Scale.FINE]
    gaps = [p for p in fine if p.flags != Flag.KEYFRAME]  # every audio packet is a keyframe
    # The restarted stream's first packet, numbered on after the old stream's last (flushed) one.
    assert len(gaps) == 1 and gaps[0].flags == Flag.KEYFRAME | Flag.GAP
    assert [p.seq for p in fine] == list(range(len(fine)))
    assert sink.gaps.count(("cam", "audio")) == 1
    # no packet claims the lost 20 ms: every fine packet after the gap starts at or after 0.82 s
    t_gap = min(p.start_ns for p in gaps)
    before = [p for p in fine if p.end_ns <= t_gap]
    assert before and max(p.end_ns for p in before) <= t_gap
    # the old stream was flushed before the restart: its 40 blocks (0.8 s) are all in fine packets
    assert len(before) == 40


def test_a_discontinuity_flushes_the_audio_first(toks: Tokenizers) -> None:
    """1 s of audio, then a block flagged DISCONTINUITY (a reconnect): all 50 fine and the 13 coarse
    packets of the first second come out (the 13th partial, zero-padded), then the new stream."""
    eng, sink = engine(toks, [{"kind": "stream", "name": "cam", "url": "udp://127.0.0.1:1"}])
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(BLOCK) / RATE)).astype(np.float32)[None]
    t0 = 10 * NS
    for j in range(50):
        media = j * BLOCK * NS // RATE
        sink.add(eng.on_audio([AudioCapture("cam", tone, RATE, media, t0 + media + 25_000_000, j == 0)]))
    first = [p for p in sink.items if isinstance(p, TokenPacket)]
    sink.add(eng.on_audio([AudioCapture("cam", tone, RATE, 3 * NS, t0 + 3 * NS, discontinuity=True)]))
    sink.add(eng.flush())
    packets = [p for p in sink.items if isinstance(p, TokenPacket)]
    fine = [p for p in packets if p.scale == Scale.FINE]
    coarse = [p for p in packets if p.scale == Scale.COARSE]
    assert len([p for p in first if p.scale == Scale.FINE]) < 50  # the window's tail was still pending
    assert [p.seq for p in fine] == list(range(51)) and [p.seq for p in coarse] == list(range(14))
    assert fine[50].flags & Flag.DISCONTINUITY and coarse[13].flags & Flag.DISCONTINUITY
    assert all(p.flags == Flag.KEYFRAME for p in fine[:50] + coarse[:13])


@pytest.mark.parametrize(("audio_lag_ms", "busy_ms"), [(700, 0), (700, 290), (0, 290), (300, 45)])
def test_av_relation_holds_from_the_first_packet(toks: Tokenizers, audio_lag_ms: int, busy_ms: int) -> None:
    """Audio and video of one media clock keep their media-time relation in host time, for every
    packet from the first, however late the audio arrives and however busy the start is: the
    mapping is committed along media time and slewed, never re-decided per arrival."""
    eng, sink = engine(toks, [{"kind": "synthetic", "name": "cam"}])
    feed(eng, sink, 3.0, t0=50 * NS, audio_lag_ns=audio_lag_ms * 1_000_000, early_extra_ns=busy_ms * 1_000_000)
    sink.add(eng.flush())
    video = sorted((hp.packet.start_ns, hp.start_ns) for hp in sink.host
                    if hp.modality == Modality.VIDEO and hp.scale == Scale.FINE)
    audio = [(hp.packet.start_ns, hp.start_ns) for hp in sink.host if hp.modality == Modality.AUDIO]
    assert len(video) == 90 and len(audio) > 150
    vm = np.array([m for m, _ in video])
    worst = 0
    for media, host in audio:
        i = int(np.argmin(np.abs(vm - media)))  # the frame nearest in media time (within 17 ms: 5 % is 0.83 ms)
        v_media, v_host = video[i]
        worst = max(worst, abs((host - v_host) - (media - v_media)))
    assert worst <= 1_000_000, f"A/V relation off by {worst / 1e6:.3f} ms"


def test_audio_latency_offset_shifts_audio_only(toks: Tokenizers) -> None:
    stamper = WireStamper()
    a, sa = engine(toks, [{"kind": "synthetic", "name": "cam"}])
    b, sb = engine(toks, [{"kind": "synthetic", "name": "cam", "audio_latency_ms": 25}])
    sa.stamper = sb.stamper = stamper  # the same UNIX mapping, so the two runs compare exactly
    t0 = time.monotonic_ns()
    for e, s in ((a, sa), (b, sb)):
        feed(e, s, 1.0, t0=t0)
        s.add(e.flush())

    def first(sink: Collected, modality: Modality) -> int:
        return next(p.start_ns for p in sink.items if isinstance(p, TokenPacket) and p.modality == modality)

    assert first(sa, Modality.AUDIO) - first(sb, Modality.AUDIO) == 25_000_000
    assert first(sa, Modality.VIDEO) == first(sb, Modality.VIDEO)


def test_packets_keep_media_time_until_the_wire(run: tuple[Engine, Collected]) -> None:
    """The engine's packets carry the tokenizer's media times, labelled MEDIA; only the stamper
    converts (host -> UNIX) and labels UNIX, once."""
    _, sink = run
    assert all(hp.packet.clock == Clock.MEDIA for hp in sink.host)
    first_video = next(hp for hp in sink.host if hp.modality == Modality.VIDEO)
    assert first_video.packet.start_ns == 0  # the synthetic source's media time starts at 0
    wire = [p for p in sink.items if isinstance(p, TokenPacket)]
    assert all(p.clock == Clock.UNIX for p in wire)
    stamper = sink.stamper
    assert wire[0].start_ns == stamper.wall.to_unix(sink.host[0].start_ns)


@pytest.mark.slow
def test_a_camera_only_daemon_does_not_need_portaudio() -> None:
    """Importing the daemon (and building a camera source) must not import sounddevice."""
    import subprocess
    import sys

    code = ("import sys; import livetok.daemon.runner, livetok.pipeline.sources, livetok.daemon.main; "
            "print('sounddevice' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_late_burst_start_is_held_then_stamped_true_from_the_first_packet(toks: Tokenizers) -> None:
    """The first second arrives up to 700 ms late (a stream's start after probing, a busy machine):
    nothing goes out until the clock has seen the delay floor, then every packet, the first
    included, carries its capture time (+ the 3 ms floor, which latency_ms would remove). Before
    the hold, the first packets were 700 ms late and the whole run slewed at 5 %."""
    eng, sink = engine(toks, [{"kind": "stream", "name": "cam", "url": "udp://127.0.0.1:1"}])
    t0 = 50 * NS
    feed(eng, sink, 3.0, t0=t0, early_extra_ns=700_000_000)
    sink.add(eng.flush())
    assert len([hp for hp in sink.host if hp.modality == Modality.VIDEO and hp.scale == Scale.FINE]) == 90
    errors = [hp.start_ns - (t0 + hp.packet.start_ns) for hp in sink.host]
    assert all(2_000_000 <= e <= 5_000_000 for e in errors), (min(errors), max(errors))
    clocks = eng.clocks()["cam"]
    assert clocks.settled_after_ms is not None and 500 <= clocks.settled_after_ms <= 3000
    assert eng.aligner_stats()["cam"]["late_packets"] == 0


def test_a_hold_ends_by_time_and_at_the_end_of_the_run(toks: Tokenizers) -> None:
    eng, sink = engine(toks, [{"kind": "stream", "name": "cam", "url": "udp://127.0.0.1:1"}])
    image = np.zeros((224, 224, 3), np.uint8)
    t0 = 20 * NS
    for i in range(5):  # a camera that sends five frames and goes quiet
        sink.add(eng.on_video([VideoCapture("cam", image, i * FRAME_NS, t0 + i * FRAME_NS + 5_000_000, FRAME_NS)]))
    sink.add(eng.tick(t0 + 300_000_000))
    assert sink.host == []  # held: too early to know the floor
    sink.add(eng.tick(t0 + 4 * FRAME_NS + 5_000_000 + 500_000_000))  # quiet for 0.5 s: out they go
    assert len([hp for hp in sink.host if hp.scale == Scale.FINE]) == 5
    eng2, sink2 = engine(toks, [{"kind": "stream", "name": "cam", "url": "udp://127.0.0.1:1"}])
    sink2.add(eng2.on_video([VideoCapture("cam", image, 0, t0, FRAME_NS)]))
    assert sink2.host == []
    sink2.add(eng2.flush())  # the end of a run: whatever is held goes out, mapped as well as known
    assert len(sink2.host) == 2 and sink2.host[0].start_ns == t0


def test_a_group_waits_for_its_source_that_holds(toks: Tokenizers) -> None:
    """A microphone runs; the camera of its group starts 2 s later (and is held while its clock
    settles): the group's steps wait for it instead of going out without video and dropping the
    camera's first frames as late."""
    eng, sink = engine(toks, [{"kind": "stream", "name": "cam", "url": "udp://127.0.0.1:1", "audio": False},
                              {"kind": "synthetic", "name": "mic"}],
                       groups=[{"name": "g", "video": "cam", "audio": "mic"}])
    image = np.full((224, 224, 3), 90, np.uint8)
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(BLOCK) / RATE)).astype(np.float32)[None]
    t0 = 30 * NS
    events: list[tuple[int, VideoCapture | AudioCapture]] = []
    for j in range(4 * RATE // BLOCK):  # 4 s of audio from t0
        media = j * BLOCK * NS // RATE
        arrival = t0 + media + BLOCK * NS // RATE + 2_000_000
        events.append((arrival, AudioCapture("mic", tone, RATE, media, arrival, discontinuity=j == 0)))
    for i in range(60):  # 2 s of video from t0 + 2 s, its first 0.4 s in a burst 0.4 s late
        media = 7 * NS + i * FRAME_NS  # its own media clock
        arrival = max(t0 + 2 * NS + i * FRAME_NS + 4_000_000, t0 + 2_400_000_000 + i * 1_000_000)
        events.append((arrival, VideoCapture("cam", image, media, arrival, FRAME_NS, discontinuity=i == 0)))
    for arrival, item in sorted(events, key=lambda e: e[0]):
        sink.add(eng.on_video([item]) if isinstance(item, VideoCapture) else eng.on_audio([item]))
        sink.add(eng.tick(arrival))
    sink.add(eng.flush())
    steps = [s for s in sink.items if isinstance(s, AlignedStep)]
    with_video = [s for s in steps if any(p.modality == Modality.VIDEO for p in s.packets)]
    assert sum(len([p for p in s.packets if p.modality == Modality.VIDEO and p.scale == Scale.FINE])
               for s in with_video) == 60  # every frame of the camera is in a step
    assert eng.aligner_stats()["g"]["late_packets"] == 0


def test_a_restarted_media_clock_maps_the_old_streams_tail_on_the_old_timeline(toks: Tokenizers) -> None:
    """A reconnect whose media clock starts again elsewhere (100 s on): the old stream's last packets,
    flushed by the discontinuity, keep the old mapping; they used to be mapped with the new one,
    100 s off."""
    eng, sink = engine(toks, [{"kind": "synthetic", "name": "cam"}])
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(BLOCK) / RATE)).astype(np.float32)[None]
    t0 = 10 * NS
    for j in range(50):
        media = j * BLOCK * NS // RATE
        sink.add(eng.on_audio([AudioCapture("cam", tone, RATE, media, t0 + media + 22_000_000, j == 0)]))
    for j in range(50):  # the new timeline, 1 s later in host time
        media = 100 * NS + j * BLOCK * NS // RATE
        arrival = t0 + NS + j * BLOCK * NS // RATE + 22_000_000
        sink.add(eng.on_audio([AudioCapture("cam", tone, RATE, media, arrival, discontinuity=j == 0)]))
    sink.add(eng.flush())
    fine = [hp for hp in sink.host if hp.scale == Scale.FINE]
    assert len(fine) >= 99
    starts = [hp.start_ns for hp in fine]
    assert all(b > a for a, b in itertools.pairwise(starts)), "host time ran back"
    assert max(starts) - min(starts) < 3 * NS  # nothing mapped 100 s away
