"""How a live token file compares with the truth of a ``livesender`` run (tests and bench/bench_late.py).

The sender recorded the bytes it sent and its start ``T0``; ``livetok tokenize`` of the recording
gives the reference: the same tokens, with media times from the recording's first timestamp. Video
frame 0 was captured at ``T0``, so the true capture time (UNIX ns) of a reference packet is
``T0 + (its start - frame 0's start)``. Each live packet is paired with the reference packet that
has the same codes (searching forward: a live stream that lost input skips ahead), and its
``start_ns`` is compared with that truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from livetok.commands.probe import probe_file
from livetok.wire import Flag, TokenPacket, read_ltk

NS = 1_000_000_000
NOMINAL_HZ = {("video", "fine"): 30.0, ("video", "coarse"): 30.0, ("audio", "fine"): 50.0, ("audio", "coarse"): 12.5}


def by_stream(path: Path, source: str | None = None) -> dict[tuple[str, str], list[TokenPacket]]:
    """Token packets per (modality, scale) as named by probe ("video", "fine"), in file order."""
    out: dict[tuple[str, str], list[TokenPacket]] = {}
    for p in read_ltk(path).packets:
        if isinstance(p, TokenPacket) and (source is None or p.source == source):
            out.setdefault((p.modality.name.lower(), p.scale.name.lower()), []).append(p)
    return out


def pair(live: list[TokenPacket], ref: list[TokenPacket], reach: int = 90) -> list[int | None]:
    """For each live packet, the index of the reference packet with the same codes (None: none within
    ``reach`` after the previous match). The first live packet may match anywhere (a lost start)."""
    out: list[int | None] = []
    j = 0
    for n, p in enumerate(live):
        hi = len(ref) if n == 0 or j == 0 else min(len(ref), j + reach)
        k = next((k for k in range(j, hi) if np.array_equal(p.codes, ref[k].codes)), None)
        out.append(k)
        if k is not None:
            j = k + 1
    return out


@dataclass
class StreamTruth:
    """One stream of a live run against the truth."""

    key: tuple[str, str]
    packets: int  # live packets
    reference: int  # packets in the offline reference
    matched: int  # live packets paired with a reference packet
    missing: int  # reference packets after the first match that no live packet matches (lost)
    lost_start: int  # reference packets before the first matched one
    gaps: int  # live packets flagged GAP or DISCONTINUITY after the first
    rate_hz: float  # as `livetok probe` reports it
    errors_ms: list[float] = field(default_factory=list)  # live start - truth, per matched packet
    first_s_errors_ms: list[float] = field(default_factory=list)  # ... those within 1 s of the first

    @property
    def rate_error_pct(self) -> float:
        return (self.rate_hz / NOMINAL_HZ[self.key] - 1) * 100

    def summary(self) -> dict[str, Any]:
        def stats(xs: list[float]) -> dict[str, float | None]:
            a = np.abs(np.array(xs)) if xs else None
            return {"max": None if a is None else round(float(a.max()), 2),
                    "p50": None if a is None else round(float(np.median(a)), 2),
                    "mean": None if a is None else round(float(np.mean(xs)), 2)}
        return {"stream": "/".join(self.key), "packets": self.packets, "reference": self.reference,
                "matched": self.matched, "missing": self.missing, "lost_start": self.lost_start,
                "gaps": self.gaps, "rate_hz": round(self.rate_hz, 3), "rate_error_pct": round(self.rate_error_pct, 3),
                "error_ms": stats(self.errors_ms), "first_second_error_ms": stats(self.first_s_errors_ms)}


def compare(live_path: Path, reference_path: Path, truth: dict[str, Any],
            source: str) -> dict[tuple[str, str], StreamTruth]:
    """Every stream of ``source`` in the live file against the reference and the sender's ``T0``."""
    live, ref = by_stream(live_path, source), by_stream(reference_path)
    rates = {(s["modality"], s["scale"]): s["rate_hz"] for s in probe_file(live_path).as_json()["streams"]
             if s["source"] == source}
    epoch = ref[("video", "fine")][0].start_ns  # frame 0: captured at T0
    out: dict[tuple[str, str], StreamTruth] = {}
    first_truth: int | None = None
    for key in sorted(live, key=lambda k: (k[0] != "video", k)):  # video first: it fixes the first second
        lv, rf = live[key], ref.get(key, [])
        idx = pair(lv, rf)
        hits = [(p, rf[k]) for p, k in zip(lv, idx, strict=True) if k is not None]
        ks = [k for k in idx if k is not None]
        truths = [truth["t0_unix_ns"] + r.start_ns - epoch for _, r in hits]
        if truths and first_truth is None:
            first_truth = min(truths)
        errs = [(p.start_ns - t) / 1e6 for (p, _), t in zip(hits, truths, strict=True)]
        first = [e for e, t in zip(errs, truths, strict=True) if first_truth is not None and t < first_truth + NS]
        flagged = sum(1 for p in lv[1:] if p.flags & (Flag.GAP | Flag.DISCONTINUITY))
        out[key] = StreamTruth(key, len(lv), len(rf), len(hits),
                               (ks[-1] - ks[0] + 1 - len(ks)) if ks else 0, ks[0] if ks else len(rf),
                               flagged, float(rates.get(key, 0.0)), errs, first)
    return out
