"""The token rate's choice of frames on the capture clock (livetok.streams.rate), on synthetic
timelines: regular, rounded to a coarse time base, jittery, variable-rate, restarted; and which
packets the decoder may skip."""

from __future__ import annotations

import itertools
import random

import pytest

from livetok.streams.rate import DecodeSkip, KeyframeHold, RateGate

NS = 1_000_000_000
MS = 1_000_000


def chosen(gate: RateGate, times: list[int], restarts: frozenset[int] = frozenset()) -> list[int]:
    """Indices of the frames the gate keeps."""
    return [i for i, t in enumerate(times) if gate.keep(t, restart=i in restarts)]


def gate(token_fps: float, camera_fps: float | None) -> RateGate:
    g = RateGate(token_fps)
    g.set_frame_ns(int(NS / camera_fps) if camera_fps else 0)
    return g


def test_30_to_5_fps_keeps_one_frame_per_200_ms_slot() -> None:
    times = [i * NS // 30 for i in range(300)]  # 10 s at exactly 30 fps
    kept = chosen(gate(5, 30), times)
    assert kept == list(range(0, 300, 6))
    assert {times[b] - times[a] for a, b in itertools.pairwise(kept)} == {200 * MS}


def test_a_time_base_in_milliseconds_still_gives_a_regular_grid() -> None:
    """FLV/RTMP stamps in ms: 0, 33, 67, 100, 133, ... A strict 'at or after the boundary' would take
    the frame at 167 ms for the slot starting at 133.3 ms (133 is 0.3 ms early): half a frame's
    tolerance takes the frame nearest each boundary."""
    times = [round(i * 1000 / 30) * MS for i in range(90)]
    assert chosen(gate(15, 30), times) == list(range(0, 90, 2))
    assert chosen(gate(10, 30), times) == list(range(0, 90, 3))


def test_the_first_frame_anchors_the_slots_not_time_zero() -> None:
    times = [7 * MS + 123 + i * NS // 30 for i in range(60)]
    assert chosen(gate(5, 30), times) == list(range(0, 60, 6))


def test_a_jittery_camera_gets_exactly_one_frame_per_slot_near_its_boundary() -> None:
    rng = random.Random(16)
    times = [i * NS // 30 + rng.randint(-8 * MS, 8 * MS) for i in range(900)]  # 30 s, +-8 ms jitter
    times[0] = 0
    g = gate(5, 30)
    kept = chosen(g, times)
    slots = [(times[i] + g.tolerance_ns) // (200 * MS) for i in kept]
    assert slots == list(range(len(kept)))  # one per slot, none skipped, in order
    assert len(kept) == 150
    for k, i in enumerate(kept):
        # the first frame of its slot (tolerance included): its predecessor was before the boundary
        boundary = k * 200 * MS
        assert times[i] >= boundary - g.tolerance_ns
        assert i == 0 or times[i - 1] < boundary - g.tolerance_ns
        assert abs(times[i] - boundary) <= 8 * MS + NS // 60  # regular: within jitter + half a frame


def test_a_variable_rate_camera_gets_the_first_frame_of_every_slot_it_filled() -> None:
    """A camera whose rate wanders (20-150 ms between frames) and says no nominal rate: strictly the
    first frame at or after each boundary; a slot with no frame stays empty (no catching up)."""
    rng = random.Random(7)
    times, t = [], 0
    for _ in range(400):
        times.append(t)
        t += rng.randint(20 * MS, 150 * MS)
    g = gate(5, None)
    assert g.tolerance_ns == 0 and not g.passes_all
    kept = chosen(g, times)
    expect, last = [], -1
    for i, ti in enumerate(times):
        if ti // (200 * MS) > last:
            expect.append(i)
            last = ti // (200 * MS)
    assert kept == expect
    assert len({times[i] // (200 * MS) for i in kept}) == len(kept)


@pytest.mark.parametrize(("token_fps", "camera_fps"), [(30, 30), (60, 30), (29.97, 30000 / 1001), (1000, 25)])
def test_a_rate_at_or_above_the_cameras_keeps_every_frame(token_fps: float, camera_fps: float) -> None:
    rng = random.Random(3)
    times = [round(i * NS / camera_fps) + rng.randint(-12 * MS, 12 * MS) for i in range(300)]
    times.sort()
    g = gate(token_fps, camera_fps)
    assert g.passes_all
    assert chosen(g, times) == list(range(300))


def test_exact_timestamps_at_the_cameras_rate_keep_every_frame_without_the_shortcut() -> None:
    """Even where the token rate is a hair below the camera's, exact timestamps lose nothing: each
    frame is nearest its own slot's boundary."""
    times = [i * 1001 * NS // 30000 for i in range(300)]
    g = gate(29.9, 30000 / 1001)
    assert not g.passes_all
    assert len(chosen(g, times)) == 299  # 29.9 slots a second over 10 s: one frame fewer


def test_a_discontinuity_anchors_the_slots_again() -> None:
    """A reconnect or a jump restarts the grid at its first frame, which is kept."""
    times = [i * NS // 30 for i in range(30)] + [50 * NS + 17 * MS + i * NS // 30 for i in range(30)]
    kept = chosen(gate(5, 30), times, restarts=frozenset({0, 30}))
    assert kept == [*range(0, 30, 6), *range(30, 60, 6)]


def test_very_low_rates() -> None:
    times = [i * NS // 30 for i in range(30 * 60)]  # a minute
    assert chosen(gate(1, 30), times) == list(range(0, 1800, 30))
    assert chosen(gate(0.1, 30), times) == list(range(0, 1800, 300))


def test_bad_rates_are_refused() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match="positive"):
            RateGate(bad)


def test_decode_skip_never_flags_the_frame_the_gate_keeps_b_frames_included() -> None:
    """Packets in decode order with B-frames (I P B B P B B ...: each P before the two B-frames
    shown before it): a packet is flagged only when an earlier frame of its slot is known, so the
    frame kept for each slot is always decoded; the frames the decoder then discards are counted
    by the order frames come out in."""
    n = 121
    order: list[int] = [0]
    for p in range(3, n, 3):
        order += [p, p - 2, p - 1]
    assert sorted(order) == list(range(n))
    times = [i * NS // 30 for i in range(n)]
    g = gate(5, 30)
    skip = DecodeSkip(g)
    flagged = set()
    armed = False
    out: list[int] = []  # what comes out of the decoder, in presentation order, once decoded
    undecoded = 0
    nonref = {i for i in range(n) if i % 3}  # the B-frames: a NONREF decode discards them
    pending: list[int] = []
    for i in order:
        if skip.skippable(times[i], armed):
            skip.sent(times[i])
            flagged.add(i)
        if not (i in flagged and i in nonref):
            pending.append(i)
        # a decoder with one frame of reordering delay: it gives the earliest it holds once it holds two
        while len(pending) >= 2 or (i == order[-1] and pending):
            first = min(pending)
            pending.remove(first)
            undecoded += skip.decoded(times[first])
            out.append(first)
            armed = True
            g.keep(times[first], restart=first == 0)
    undecoded += skip.end()
    kept = list(range(0, n, 6))
    assert not flagged & set(kept)  # the kept frames are never flagged
    assert flagged  # and the rest mostly are
    assert undecoded == len(flagged & nonref) == n - len(out)
    assert [i for i in out if i in kept] == kept


def test_decode_skip_takes_back_a_frame_counted_too_early_and_needs_an_anchor() -> None:
    g = gate(5, 30)
    skip = DecodeSkip(g)
    assert not skip.skippable(0, armed=False) and not skip.skippable(NS // 30, armed=True)  # no anchor yet
    assert g.keep(0, restart=True)
    assert not skip.skippable(0, armed=True)  # the first of its slot
    assert skip.skippable(NS // 30, armed=True) and skip.skippable(2 * NS // 30, armed=True)
    skip.sent(NS // 30)
    skip.sent(2 * NS // 30)
    assert skip.decoded(2 * NS // 30) == 1  # frame 1 never came: discarded
    assert skip.decoded(NS // 30) == -1  # ... it came after all: taken back
    assert skip.end() == 0
    assert not skip.skippable(None, armed=True)  # no timestamp: always decoded


def test_keyframe_hold_drops_what_the_next_keyframe_makes_useless() -> None:
    """No B-frames, a keyframe every 30 frames, 1 token frame a second: once the keyframe interval is
    known (two keyframes), the frames after each kept one are held, and dropped at the next keyframe."""
    g = gate(1, 30)
    skip, hold = DecodeSkip(g), KeyframeHold[int](g)
    times = [i * NS // 30 for i in range(120)]
    decoded, dropped = [], 0
    for i, t in enumerate(times):
        s = skip.skippable(t, armed=bool(decoded))
        out, n = hold.offer(i, t, i % 30 == 0, s, reorders=False)
        dropped += n
        for j in out:
            decoded.append(j)
            g.keep(times[j], restart=j == 0)
    dropped += hold.end()
    assert hold.interval_ns == NS
    assert decoded == [*range(0, 31), 60, 90]  # the first second decoded whole: the interval was not known
    assert dropped == 120 - len(decoded) == 87


def test_keyframe_hold_decodes_what_it_held_when_the_next_slot_comes_first() -> None:
    """A keyframe every 5 frames, a slot every 6: frames held after a kept one are dropped at the
    keyframe when it comes first, decoded (in order, before it) when the next slot's first frame does."""
    g = gate(5, 30)
    skip, hold = DecodeSkip(g), KeyframeHold[int](g)
    times = [i * NS // 30 for i in range(60)]
    decoded: list[int] = []
    for i, t in enumerate(times):
        out, _ = hold.offer(i, t, i % 5 == 0, skip.skippable(t, armed=bool(decoded)), reorders=False)
        for j in out:
            decoded.append(j)
            g.keep(times[j], restart=j == 0)
    assert decoded == sorted(decoded)  # decode order kept
    kept = list(range(0, 60, 6))
    for k in kept:  # every kept frame decoded with every frame since its last keyframe
        assert set(range(k - k % 5, k + 1)) <= set(decoded), k
    assert len(decoded) < 60


def test_keyframe_hold_never_holds_where_it_cannot_pay_or_frames_reorder() -> None:
    g = gate(1, 30)
    hold = KeyframeHold[int](g)
    for key in (0, 2 * NS):  # keyframes 2 s apart: they do not fit a 1 s slot
        assert hold.offer(0, key, True, False, reorders=False) == ([0], 0)
    assert not hold.fits and hold.offer(1, 2 * NS + 1, False, True, reorders=False) == ([1], 0)
    hold.reset()
    for key in (0, NS // 2):
        hold.offer(0, key, True, False, reorders=False)
    assert hold.fits and hold.offer(1, NS // 2 + 1, False, True, reorders=True) == ([1], 0)
