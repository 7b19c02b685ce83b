"""StreamSpec: what a tokenizer says about each stream it emits; exact step times."""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

import pytest

from livetok.tokenizers.spec import StreamSpec, step_ns_of


def test_exact_step_times_at_any_rate() -> None:
    step = step_ns_of(160, 22050)  # 7 256 235.827... ns: not a whole number
    assert step == Fraction(160_000_000_000, 22050)
    spec = StreamSpec("audio", "units", step, (1, 1), 1, 500)
    bounds = [spec.step_bounds_ns(k) for k in range(10_000)]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))  # they tile time
    assert spec.step_bounds_ns(22050)[0] == 160 * 1_000_000_000  # 22 050 steps of 160 samples: 160 s, exactly
    assert StreamSpec("audio", "fine", step_ns_of(320, 16000), (1, 1), 4, 1024).step_bounds_ns(3) == (
        60_000_000, 80_000_000)


def test_rules() -> None:
    ok = StreamSpec("video", "cells", None, (14, 14), 4, 1024, 64)
    assert ok.cells == 196
    with pytest.raises(ValueError, match="video steps are one per frame"):
        ok.step_bounds_ns(0)
    bad: dict[str, dict[str, Any]] = {
        "modality 'text'": dict(modality="text"),
        "an audio stream needs a step": dict(step_ns=None),
        "step_ns 0 is not a Fraction above 0": dict(step_ns=Fraction(0)),
        r"grid \(0, 1\) needs at least one row": dict(grid=(0, 1)),
        "levels 0 is below 1": dict(levels=0),
        "codebook_size 65537 is not in 2..65536": dict(codebook_size=65537),
        "vector_size 0 is below 1": dict(vector_size=0),
    }
    base: dict[str, Any] = dict(modality="audio", name="s", step_ns=Fraction(20_000_000), grid=(1, 1), levels=1,
                                codebook_size=16)
    for words, change in bad.items():
        with pytest.raises(ValueError, match=words):
            StreamSpec(**(base | change))
