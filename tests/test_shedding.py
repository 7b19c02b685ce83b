"""The overload policy (livetok.pipeline.shedding) on synthetic backlogs: which frames keep their fine
tokens and how many levels, in what order, and a simulated tokenizer at twice its sustainable load."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
import pytest
import skimage

from livetok.config.tokenizer import DeltaConfig, VideoConfig
from livetok.media.frames import to_model_image
from livetok.pipeline.shedding import ShedPolicy
from livetok.tokenizers import TokenizerConfig, Tokenizers
from livetok.wire import Flag, Scale


def test_fraction_falls_from_low_to_high() -> None:
    p = ShedPolicy(levels=4, min_levels=2)
    assert p.fraction(0.0) == p.fraction(0.25) == 1.0
    assert p.fraction(0.5) == pytest.approx(0.5)
    assert p.fraction(0.75) == p.fraction(1.0) == 0.0
    with pytest.raises(ValueError):
        ShedPolicy(levels=4, min_levels=5)


def test_no_pressure_sheds_nothing_full_pressure_sheds_all_fine() -> None:
    p = ShedPolicy(levels=4, min_levels=2)
    assert p.plan(["a", "b", "a"], {}, 0.0) == [4, 4, 4]
    assert p.plan(["a", "b", "a"], {}, 1.0) == [0, 0, 0]


def test_finest_levels_go_before_whole_fine_frames() -> None:
    """Within one priority, a frame loses its fine tokens whole only when no frame keeps more than
    min_levels; and the levels spent follow the allowed share exactly over time."""
    p = ShedPolicy(levels=4, min_levels=2)
    sources = [f"s{i}" for i in range(8)]
    total = 0
    for k in range(200):
        fill = 0.25 + 0.5 * ((k * 37) % 100) / 100  # pressures all over the shedding range
        out = p.plan(sources, {}, fill)
        assert set(out) <= {0, 2, 4}
        assert not (0 in out and 4 in out), out
        total += sum(out)
    # the budget is f x frames x levels, each batch's remainder carried: the total matches within a step
    allowed = sum(p.fraction(0.25 + 0.5 * ((k * 37) % 100) / 100) * 8 * 4 for k in range(200))
    assert abs(total - allowed) <= 4


def test_lower_priority_sheds_everything_fine_before_higher_sheds_anything() -> None:
    p = ShedPolicy(levels=4, min_levels=2)
    prios = {"hi": 1, "lo": 0}
    sources = ["hi", "lo"] * 4
    for fill in [0.3, 0.4, 0.5, 0.6, 0.7] * 10:
        out = p.plan(sources, prios, fill)
        hi = [n for s, n in zip(sources, out, strict=True) if s == "hi"]
        lo = [n for s, n in zip(sources, out, strict=True) if s == "lo"]
        if any(lo):
            assert all(n == 4 for n in hi), (fill, out)
    # at half the fine work, the high-priority source keeps all of it
    q = ShedPolicy(levels=4, min_levels=2)
    for _ in range(20):
        out = q.plan(sources, prios, 0.5)
    assert [n for s, n in zip(sources, out, strict=True) if s == "hi"] == [4, 4, 4, 4]


@dataclass
class _Sim:
    """A tokenizer that sustains ``capacity`` frames per tick at full cost, fed by ``n`` sources of one
    frame per tick each through drop-oldest hand-overs of ``depth`` frames (the daemon's batcher:
    round-robin batches of ``batch`` frames, a plan per batch)."""

    n: int
    capacity: float
    priorities: dict[str, int] = field(default_factory=dict)
    depth: int = 8
    batch: int = 8
    coarse_cost: float = 0.25  # of a full frame; each fine level costs (1 - coarse_cost) / 4
    call_cost: float = 0.0  # per tokenizer call, whatever its size (the daemon: waiting for the GIL)
    catch_up: bool = True  # the batcher's catch-up batches (ShedPolicy.batch_limit); False: as before them
    feedback: bool = True  # drops since the last plan lower the ceiling (ShedPolicy.settle); False: fill only
    captured: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    coarse: Counter[str] = field(default_factory=Counter)
    fine: Counter[str] = field(default_factory=Counter)
    levels: Counter[str] = field(default_factory=Counter)
    _next: int = 0  # the source the next batch begins with

    def run(self, ticks: int) -> None:
        names = [f"cam{i}" for i in range(self.n)]
        queues: dict[str, deque[int]] = {s: deque() for s in names}
        policy = ShedPolicy(levels=4, min_levels=2)
        credit, seen_drops = 0.0, 0
        for t in range(ticks + 1000):
            for s in names if t < ticks else []:  # then the backlog drains
                self.captured[s] += 1
                if len(queues[s]) == self.depth:
                    queues[s].popleft()
                    self.dropped[s] += 1
                queues[s].append(t)
            credit = min(credit + self.capacity, self.capacity)
            while credit > 0 and any(queues.values()):
                backlog = sum(len(q) for q in queues.values())
                limit, coarse_only = policy.batch_limit(self._fill(queues), self.batch, backlog)
                if not self.catch_up:
                    limit, coarse_only = self.batch, False
                batch = self._take(queues, names, limit)
                drops = sum(self.dropped.values())
                fill = 1.0 if coarse_only else self._fill(queues)
                plan = policy.plan(batch, self.priorities, fill, self.feedback and drops > seen_drops,
                                   catch_up=self.feedback and coarse_only)
                seen_drops = drops
                credit -= self.call_cost
                for s, lv in zip(batch, plan, strict=True):
                    self.coarse[s] += 1
                    self.fine[s] += lv > 0
                    self.levels[s] += lv
                    credit -= self.coarse_cost + lv * (1 - self.coarse_cost) / 4

    def _fill(self, queues: dict[str, deque[int]]) -> float:
        return max(len(q) for q in queues.values()) / self.depth

    def _take(self, queues: dict[str, deque[int]], names: list[str], limit: int) -> list[str]:
        """As the daemon's take_round_robin: one frame per source in turn, from after the last served."""
        batch: list[str] = []
        while len(batch) < limit and any(queues.values()):
            for k in range(len(names)):
                s = names[(self._next + k) % len(names)]
                if queues[s] and len(batch) < limit:
                    queues[s].popleft()
                    batch.append(s)
                    last = names.index(s)
            self._next = last + 1
        return batch


def test_twice_the_sustainable_load_keeps_every_coarse_token_and_sheds_fine_evenly() -> None:
    sim = _Sim(n=6, capacity=3.0)  # 6 frames arrive per tick, 3 full frames can be tokenized
    sim.run(3000)
    for s in sim.captured:
        assert sim.dropped[s] == 0
        assert sim.coarse[s] == sim.captured[s]  # every captured frame has its coarse tokens
    shares = [sim.levels[s] / (4 * sim.captured[s]) for s in sim.captured]
    assert min(shares) > 0.2 and max(shares) < 0.6  # (0.5 - 0.25) / 0.75 = 1/3 of the fine work fits
    assert max(shares) - min(shares) < 0.02  # evenly


def test_a_cost_per_call_is_caught_up_by_larger_coarse_only_batches() -> None:
    """The daemon's tokenizer call costs a fixed time besides its frames (its wait for the GIL): 12
    sources where calls of 8 coarse-only frames fall behind (3 cost units per 8 frames against 4 per
    tick: 10.7 of the 12 frames a tick) and calls of 32 do not (9 per 32: 14.2)."""
    before = _Sim(n=12, capacity=4.0, call_cost=1.0, catch_up=False, feedback=False)
    before.run(2000)
    assert sum(before.dropped.values()) > 0.05 * sum(before.captured.values())  # what the daemon did
    sim = _Sim(n=12, capacity=4.0, call_cost=1.0)
    sim.run(2000)
    assert sum(sim.dropped.values()) == 0
    assert sim.coarse == sim.captured  # every captured frame has its coarse tokens
    assert 0 < sum(sim.fine.values()) < 0.3 * sum(sim.captured.values())  # some fine work, the rest shed


def test_catch_up_needs_a_full_hand_over_and_more_waiting_than_a_batch_takes() -> None:
    """One camera's burst (its 8-frame hand-over full, as a network source's start-up hold releases
    it) is taken whole by a batch of 8 and tokenized as usual (its codes as offline); the same fill with
    more frames waiting than a batch takes is congestion: a batch of 4 x 8, coarse only."""
    p = ShedPolicy(levels=4, min_levels=2)
    assert p.batch_limit(1.0, 8, backlog=8) == (8, False)
    assert p.batch_limit(0.75, 8, backlog=60) == (8, False)  # not yet 7/8 full
    assert p.batch_limit(0.875, 8, backlog=9) == (32, True)
    assert p.batch_limit(1.0, 8, backlog=96) == (32, True)


def test_the_ceiling_halves_at_drops_and_comes_back_slowly() -> None:
    p = ShedPolicy(levels=4, min_levels=2)
    assert p.plan(["a"] * 8, {}, 0.0, dropped=True) == [2] * 8  # halved: half the fine work, finest levels first
    assert p.ceiling == 0.5
    p.plan(["a"] * 8, {}, 0.0, dropped=True)
    assert p.ceiling == 0.25
    assert p.plan(["a"] * 8, {}, 0.0, dropped=True) == [0] * 8  # the drops go on: nothing fine
    for k in range(1, 50):
        p.plan(["a"] * 8, {}, 0.0)
        assert p.ceiling == pytest.approx(min(1.0, 0.02 * k))
    assert p.plan(["a"] * 8, {}, 0.0) == [4] * 8  # after 50 batches without a drop
    assert p.plan(["a"] * 8, {}, 1.0, catch_up=True) == [0] * 8  # a catch-up batch: coarse only...
    assert p.ceiling == 0.5  # ... and congestion: the fine work comes back slowly after it
    assert p.plan(["a"] * 8, {}, 0.0) == [2] * 8  # 0.52 of the fine work: the first two levels of each


def test_under_overload_priority_decides_who_sheds() -> None:
    sim = _Sim(n=4, capacity=2.5, priorities={"cam0": 5, "cam1": 5})
    sim.run(3000)
    assert sum(sim.dropped.values()) == 0
    hi = [sim.levels[s] / (4 * sim.captured[s]) for s in ("cam0", "cam1")]
    lo = [sim.levels[s] / (4 * sim.captured[s]) for s in ("cam2", "cam3")]
    assert min(hi) > 0.9 and max(lo) < 0.2, (hi, lo)
    assert abs(hi[0] - hi[1]) < 0.02 and abs(lo[0] - lo[1]) < 0.02


def test_light_load_sheds_nothing() -> None:
    sim = _Sim(n=4, capacity=4.5)
    sim.run(1000)
    assert all(sim.levels[s] == 4 * sim.captured[s] for s in sim.captured)


def _moving_square(n: int) -> list[np.ndarray]:
    base = to_model_image(skimage.data.astronaut(), 224, "crop")
    frames = []
    for i in range(n):
        f = base.copy()
        f[32:48, 64 + 16 * i : 80 + 16 * i] = 255  # a white 16x16 square stepping right
        frames.append(f)
    return frames


@pytest.mark.parametrize("delta", [False, True])
def test_a_shed_fine_frame_is_a_flagged_hole_and_the_fine_stream_restarts_on_a_keyframe(delta: bool) -> None:
    """Frames 2 and 3 shed their fine tokens, frame 4 keeps 2 of 4 levels: the coarse stream is whole and
    unchanged, the fine stream's seqs stay contiguous, its next packet is GAP + KEYFRAME (delta coding
    starts again there), and the reduced levels are the full encoding's first levels."""
    toks = Tokenizers.from_config(TokenizerConfig(device="cpu", video=VideoConfig(
        delta=DeltaConfig(enabled=delta, threshold=3.0, keyframe_interval_s=10.0))))
    frames = _moving_square(7)
    images = np.stack(frames)
    plan = [4, 4, 0, 0, 2, 4, 4]
    full, shed = toks.video.encode(images), toks.video.encode(images, fine_levels=plan)
    ref, got = toks.video.stream("cam"), toks.video.stream("cam")
    ns = 40_000_000
    for i, f in enumerate(frames):
        want = {p.scale: p for p in ref.packets(f, full, i, i * ns, (i + 1) * ns)}
        have = {p.scale: p for p in got.packets(f, shed, i, i * ns, (i + 1) * ns)}
        c = have[Scale.COARSE]
        assert (c.seq, c.flags, c.positions is None) == (want[Scale.COARSE].seq, want[Scale.COARSE].flags,
                                                          want[Scale.COARSE].positions is None)
        assert np.array_equal(c.codes, want[Scale.COARSE].codes)
        if plan[i] == 0:
            assert Scale.FINE not in have
            continue
        fine = have[Scale.FINE]
        assert fine.seq == i - sum(1 for n in plan[:i] if n == 0)  # contiguous: no seq is skipped
        assert fine.codes.shape[1] == plan[i]
        if i == 4:  # the first fine packet after the hole: a whole grid, flagged
            assert fine.flags & Flag.GAP and fine.flags & Flag.KEYFRAME and fine.positions is None
            assert np.array_equal(fine.codes, full.codes["fine"][i][:, :2])
        elif i == 5 and delta:  # delta coding resumed against the keyframe: the two patches the square moved
            assert fine.flags & Flag.DELTA and sorted(fine.positions.tolist()) == [2 * 14 + 8, 2 * 14 + 9]
            assert np.array_equal(fine.codes, full.codes["fine"][i][fine.positions])
        else:
            assert not fine.flags & Flag.GAP
            assert np.array_equal(fine.codes, want[Scale.FINE].codes)
