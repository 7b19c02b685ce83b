"""The stats document (docs/bus.md): the bus's rendering of the run snapshot, published retained on
``{prefix}/{instance}/stats`` every ``stats_interval_s``.

Per source: state, rates, latency percentiles and packet counts per stream (the built-in scales
and the plug-in tokenizers' named streams), drift, slewing, drops, queue depths, faults; per
group: the aligner's counts, skew, step latency; per plug-in tokenizer, its failed model calls;
per sink: its books and state; the bus's own state.
JSON-ready (no NaN). Rates are over the last ``stats_interval_s`` (the snapshots before it are kept
for that), so each document the bus publishes measures the interval since the one before.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from livetok.pipeline.snapshot import RunSnapshot, SeriesSnap

MODALITIES = ("video", "audio")
SCALES = ("fine", "coarse")
# A rate's window starts at the newest snapshot at least this share of stats_interval_s old (the
# snapshots come a fraction of the interval apart, give or take the loop's lag).
WINDOW_DUE = 0.9


class StatsDocument:
    """Renders stats documents from successive snapshots (it keeps those a rate needs)."""

    def __init__(self) -> None:
        self._past: deque[tuple[int, Counter[tuple[str, str]]]] = deque()

    def render(self, snap: RunSnapshot, interval_s: float) -> dict[str, Any]:
        bus = snap.bus
        doc: dict[str, Any] = {
            "run_id": snap.run_id, "time_unix_ns": snap.time_unix_ns, "stats_interval_s": interval_s,
            "uptime_s": snap.uptime_s, "sources": self._sources(snap, self._rates(snap, interval_s)),
            "groups": groups(snap),
            "model_errors": {k[1]: n for k, n in snap.counters.items()
                             if isinstance(k, tuple) and len(k) == 2 and k[0] == "model_errors"},
            "sinks": {s.name: {"state": s.state, "written": s.written, "dropped": s.dropped, "failed": s.failed,
                               "queue_depth": s.queue_depth, "last_error": s.last_error} for s in snap.sinks},
        }
        if bus is not None:
            doc["bus"] = bus.doc
        return doc

    def _rates(self, snap: RunSnapshot, interval_s: float) -> dict[tuple[str, str], float]:
        """Captures tokenized per second per (source, modality), over about the last interval."""
        self._past.append((snap.taken_ns, snap.tokenized))
        due_ns = WINDOW_DUE * interval_s * 1e9
        while len(self._past) > 2 and snap.taken_ns - self._past[1][0] >= due_ns:
            self._past.popleft()
        then_ns, then = self._past[0]
        dt = (snap.taken_ns - then_ns) / 1e9
        if dt <= 0:
            return {}
        return {k: round((v - then[k]) / dt, 2) for k, v in snap.tokenized.items()}

    @staticmethod
    def _sources(snap: RunSnapshot, rates: dict[tuple[str, str], float]) -> dict[str, Any]:
        bus = snap.bus
        out: dict[str, Any] = {}
        for src in snap.sources:
            n = src.name
            lat: dict[str, Any] = {}
            for modality, stream in source_streams(snap, n):
                entry = {"emit": _pct(snap.series.get(("latency", "emit", n, modality, stream)))}
                if bus is not None:
                    entry["publish"] = _pct(snap.series.get(("latency", "publish", bus.name, n, modality, stream)))
                lat[f"{modality}/{stream}"] = entry
            g = snap.gauges
            out[n] = {
                "state": src.state.value, "fps": rates.get((n, "video")), "token_fps": src.token_fps,
                "nominal_fps": src.nominal_fps, "audio_blocks_per_s": rates.get((n, "audio")),
                "latency_ms": lat, "drift_ppm": g.get(("drift_ppm", n)), "slewing_ms": g.get(("clock_slewing_ms", n)),
                "settled_ms": g.get(("clock_settled_ms", n)),
                "dropped": {"capture": dict(src.dropped), "sinks": dict(src.sink_drops)}, "queue": dict(src.queue),
                "reconnects": src.reconnects, "stalls": src.stalls, "errors": src.errors, "last_error": src.last_error,
                "books": scale_books(snap.captures.get((n, "video"))),
                "streams": {f"{mod}/{stream}": {"packets": snap.counters.get(("packets", n, mod, stream), 0),
                                                "gaps": snap.counters.get(("gap_packets", n, mod, stream), 0)}
                            for mod, stream in source_streams(snap, n)},
            }
        return out


def source_streams(snap: RunSnapshot, source: str) -> list[tuple[str, str]]:
    """Every (modality, stream) ``source`` has emitted tokens of: the built-in scales first (video,
    then audio; fine, then coarse), then the named streams by name."""
    seen = {key[3:5] for key in snap.series
            if isinstance(key, tuple) and len(key) == 5 and key[:3] == ("latency", "emit", source)}
    builtin = [(m, s) for m in MODALITIES for s in SCALES if (m, s) in seen]
    return builtin + sorted(k for k in seen if k[1] not in SCALES)


def scale_books(row: dict[str, Any] | None) -> dict[str, dict[str, int]] | None:
    """Per ``video/<scale>`` of the built-in video tokenizer: ``captured = skipped_by_rate + tokenized +
    shed + dropped + queued`` (queued: in the hand-over or in the tokenizer now), and ``degraded``, a part
    of ``tokenized`` made cheaper under overload; None for a source without it."""
    if row is None or "scales" not in row:
        return None
    dropped = row["dropped_queue"] + row["failed"] + row["dropped_shutdown"]
    queued = row.get("queued", 0) + row.get("in_flight", 0)
    return {f"video/{scale}": {"captured": row["captured"], "skipped_by_rate": row.get("skipped_by_rate", 0),
                               "tokenized": r["tokenized"], "shed": r["shed"], "dropped": dropped, "queued": queued,
                               "degraded": r["degraded"]}
            for scale, r in row["scales"].items()}


def groups(snap: RunSnapshot) -> dict[str, Any]:
    """Per group: the aligner's counts (as of the snapshot's refresh), skew, step latency."""
    return {name: {**a, "skew_ms": snap.skew_ms(name),
                   "latency_ms": {"step": _pct(snap.series.get(("latency", "step", name)))}}
            for name, a in snap.groups.items()}


def _pct(s: SeriesSnap | None) -> dict[str, float | None] | None:
    return None if s is None else s.percentiles()
