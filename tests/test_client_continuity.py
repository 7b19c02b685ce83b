"""Per-stream continuity, on its own: gaps, duplicates, late arrivals, restarts, stale runs."""

from __future__ import annotations

from livetok.client.continuity import Continuity, ContinuityTracker, StreamKey
from livetok.wire import Modality, Scale

KEY = StreamKey("host1", "cam0", Modality.VIDEO, Scale.FINE)
C = Continuity


def run(tracker: ContinuityTracker, events: list[tuple[int, str | None]], from_meta: bool = False,
        key: StreamKey = KEY) -> list[tuple[Continuity, int]]:
    out = []
    for seq, run_id in events:
        o = tracker.observe(key, seq, run_id, from_meta)
        out.append((o.continuity, o.missing))
    return out


def test_gaps_duplicates_and_late_arrivals() -> None:
    t = ContinuityTracker()
    got = run(t, [(5, "a"), (6, "a"), (9, "a"), (7, "a"), (9, "a"), (6, "a"), (10, "a"), (8, "a")])
    assert got == [(C.FIRST, 0), (C.OK, 0), (C.GAP, 2), (C.LATE, 0), (C.DUPLICATE, 0), (C.DUPLICATE, 0),
                   (C.OK, 0), (C.LATE, 0)]
    s = t.stats()[KEY]
    assert (s.received, s.gaps, s.missing, s.late, s.duplicates, s.restarts) == (8, 1, 0, 2, 2, 0)


def test_a_new_run_restarts_without_a_gap_and_old_runs_are_stale() -> None:
    t = ContinuityTracker()
    got = run(t, [(0, "a"), (1, "a"), (2, "a"), (0, "b"), (1, "b"), (3, "a"), (2, "b"), (0, "c"), (1, "b")])
    assert got == [(C.FIRST, 0), (C.OK, 0), (C.OK, 0), (C.RESTART, 0), (C.OK, 0), (C.STALE, 0), (C.OK, 0),
                   (C.RESTART, 0), (C.STALE, 0)]
    s = t.stats()[KEY]
    assert (s.restarts, s.gaps, s.missing, s.stale, s.duplicates, s.run_id) == (2, 0, 0, 2, 0, "c")


def test_a_restart_seen_late_counts_what_was_missed() -> None:
    t = ContinuityTracker()
    assert run(t, [(10, "a"), (3, "b"), (1, "b")]) == [(C.FIRST, 0), (C.RESTART, 3), (C.LATE, 0)]
    s = t.stats()[KEY]
    assert (s.gaps, s.missing, s.late) == (1, 2, 1)


def test_without_run_ids_seq_zero_is_a_restart_and_meta_catches_up() -> None:
    # MQTT 3.1.1: the run id comes from meta, which may name the old run for a few messages
    t = ContinuityTracker()
    got = run(t, [(0, "a"), (1, "a"), (2, "a"), (0, "a"), (1, "a"), (2, "b"), (3, "b"), (1, "b")], from_meta=True)
    assert got == [(C.FIRST, 0), (C.OK, 0), (C.OK, 0), (C.RESTART, 0), (C.OK, 0), (C.OK, 0), (C.OK, 0),
                   (C.DUPLICATE, 0)]
    s = t.stats()[KEY]
    assert (s.restarts, s.duplicates, s.gaps, s.run_id) == (1, 1, 0, "b")
    # with no run id at all, the same evidence
    u = ContinuityTracker()
    assert run(u, [(0, None), (1, None), (0, None), (0, None)]) == [
        (C.FIRST, 0), (C.OK, 0), (C.RESTART, 0), (C.RESTART, 0)]


def test_streams_are_independent_and_totals_add_up() -> None:
    t = ContinuityTracker()
    other = StreamKey("host1", "g0")
    run(t, [(0, "a"), (2, "a")])
    run(t, [(0, "a"), (0, "a")], key=other)
    t.invalid(other)
    stats = t.stats()
    assert stats[KEY].gaps == 1 and stats[other].duplicates == 1 and stats[other].invalid == 1
    assert str(other) == "host1/g0/steps" and str(KEY) == "host1/cam0/video/fine"
    # a group named like its source (the daemon's default) sorts beside it
    same = StreamKey("host1", "cam0")
    run(t, [(0, "a")], key=same)
    assert list(t.stats())[:2] == [same, KEY]


def test_an_invalid_message_before_the_first_does_not_make_joining_mid_run_a_gap() -> None:
    """A consumer that joins at seq 40 after one undecodable message: FIRST, no gap of 40."""
    t = ContinuityTracker()
    t.invalid(KEY)
    assert run(t, [(40, "a"), (41, "a")]) == [(C.FIRST, 0), (C.OK, 0)]
    stats = t.stats()[KEY]
    assert (stats.received, stats.gaps, stats.missing, stats.invalid) == (2, 0, 0, 1)


def test_named_streams_are_streams_of_their_own() -> None:
    t = ContinuityTracker()
    units = StreamKey("host1", "cam0", Modality.AUDIO, None, "units")
    patches = StreamKey("host1", "cam0", Modality.AUDIO, None, "patches")
    run(t, [(0, "a"), (1, "a")], key=units)
    assert run(t, [(5, "a"), (7, "a")], key=patches) == [(C.FIRST, 0), (C.GAP, 1)]
    stats = t.stats()
    assert stats[units].gaps == 0 and stats[patches].gaps == 1
    assert str(units) == "host1/cam0/audio/units" and units.stream_name == "units" and KEY.stream_name == "fine"
    assert StreamKey("host1", "g0").stream_name is None
    # fine, coarse, then named streams by name, within a modality
    fine = StreamKey("host1", "cam0", Modality.AUDIO, Scale.FINE)
    run(t, [(0, "a")], key=fine)
    assert list(t.stats()) == [fine, patches, units]
