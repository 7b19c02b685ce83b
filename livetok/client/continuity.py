"""Per-stream continuity: which sequence numbers a consumer got, missed, or got twice.

A stream is (instance, source, modality, stream name) for token topics (the stream name:
``fine``, ``coarse`` or a plug-in tokenizer's named stream) and (instance, group) for step topics.
Every message is classified against what its stream has seen so far, within the daemon run it
belongs to (the run id: new at every daemon start):

    FIRST      the first message of the stream this consumer sees (it may join mid-run: no gap)
    OK         seq is the next one expected
    GAP        seqs were skipped: ``missing`` of them; remembered, in case they come late
    LATE       a seq reported missing earlier arrived after all (out of order); no longer missing
    DUPLICATE  a seq already seen in this run (a QoS 1 redelivery after a reconnect, say)
    RESTART    a new run of the daemon: seq starts over at 0; a first seq above 0 also counts as
               a gap of that many (the start of the new run was missed)
    STALE      a message of a run this stream has already moved on from

The state survives reconnects (it lives in the consumer, not the connection). Holes are kept
for the last :data:`MAX_HOLES` gaps; a seq from an older hole that arrives later counts as a
duplicate. When the run id is not known per message (MQTT 3.1.1 before the meta arrived) a seq
of 0 below what the stream expects is taken as a restart, the best evidence there is.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from livetok.wire import Modality, Scale

MAX_HOLES = 64
MAX_OLD_RUNS = 8


class Continuity(enum.Enum):
    FIRST = "first"
    OK = "ok"
    GAP = "gap"
    LATE = "late"
    DUPLICATE = "duplicate"
    RESTART = "restart"
    STALE = "stale"


@dataclass(frozen=True)
class StreamKey:
    """One stream: ``name`` is the source (tokens) or the group (steps, where modality and scale are None).

    A built-in stream has its ``scale``; a named stream (wire v2) has ``scale`` None and its
    ``stream`` name, as :class:`~livetok.wire.TokenPacket`.
    """

    instance: str
    name: str
    modality: Modality | None = None
    scale: Scale | None = None
    stream: str = ""

    @property
    def is_steps(self) -> bool:
        return self.modality is None

    @property
    def stream_name(self) -> str | None:
        """"fine", "coarse", the named stream's name; None for steps."""
        if self.modality is None:
            return None
        return self.stream if self.scale is None else self.scale.name.lower()

    def sort_key(self) -> tuple[str, str, int, int, str]:
        """Instance, name, then the group's steps before its source's streams (fine, coarse, then
        named streams by name)."""
        return (self.instance, self.name, -1 if self.modality is None else int(self.modality),
                -1 if self.modality is None else (len(Scale) if self.scale is None else int(self.scale)), self.stream)

    def __str__(self) -> str:
        if self.modality is None:
            return f"{self.instance}/{self.name}/steps"
        return f"{self.instance}/{self.name}/{self.modality.name.lower()}/{self.stream_name}"


@dataclass
class StreamStats:
    """Counters of one stream (or, in :attr:`SubscriberStats.total`, of all).

    ``received``: messages of the stream that decoded; ``gaps``: times seqs were skipped;
    ``missing``: seqs skipped and not (yet) arrived; ``late``: skipped seqs that arrived later;
    ``duplicates``, ``restarts``, ``stale``: see the module doc; ``invalid``: messages that did not
    decode or did not match their topic (not in ``received``).
    """

    received: int = 0
    gaps: int = 0
    missing: int = 0
    late: int = 0
    duplicates: int = 0
    restarts: int = 0
    stale: int = 0
    invalid: int = 0
    run_id: str | None = None
    last_seq: int | None = None

    def add(self, other: StreamStats) -> None:
        for name in ("received", "gaps", "missing", "late", "duplicates", "restarts", "stale", "invalid"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class Observation:
    """What one message was: ``missing`` seqs were skipped right before it (GAP, RESTART)."""

    continuity: Continuity
    missing: int = 0


@dataclass
class _State:
    stats: StreamStats = field(default_factory=StreamStats)
    next_seq: int = 0
    holes: deque[list[int]] = field(default_factory=lambda: deque(maxlen=MAX_HOLES))  # [lo, hi) ranges
    old_runs: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_OLD_RUNS))


class ContinuityTracker:
    """Classifies messages per stream and keeps the counters (module doc)."""

    def __init__(self) -> None:
        self._streams: dict[StreamKey, _State] = {}

    def observe(self, key: StreamKey, seq: int, run_id: str | None, run_from_meta: bool = False) -> Observation:
        """Classify the message ``seq`` of ``run_id`` on stream ``key`` and count it.

        ``run_from_meta``: the run id was not carried by the message but taken from meta (3.1.1),
        so it may lag a daemon restart by a few messages.
        """
        st = self._streams.get(key)
        if st is None or st.stats.last_seq is None:  # nothing decoded yet (maybe invalid messages)
            st = self._streams.setdefault(key, _State())
            return self._start(st, seq, run_id, Continuity.FIRST)
        stats = st.stats
        if run_id is not None and run_id != stats.run_id:
            if stats.run_id is None:
                # the current run's id was unknown (3.1.1 before its meta); a label from meta that
                # names an older run is only lagging behind the restart, so it does not count
                if not (run_from_meta and run_id in st.old_runs):
                    stats.run_id = run_id
            elif run_id in st.old_runs:
                stats.stale += 1
                return Observation(Continuity.STALE)
            else:
                return self._restart(st, seq, run_id)
        stats.last_seq = seq
        if seq == st.next_seq:
            stats.received += 1
            st.next_seq = seq + 1
            return Observation(Continuity.OK)
        if seq > st.next_seq:
            stats.received += 1
            missing = seq - st.next_seq
            st.holes.append([st.next_seq, seq])
            stats.gaps += 1
            stats.missing += missing
            st.next_seq = seq + 1
            return Observation(Continuity.GAP, missing)
        if self._fill_hole(st, seq):
            stats.received += 1
            stats.late += 1
            stats.missing -= 1
            return Observation(Continuity.LATE)
        if seq == 0 and (run_id is None or run_from_meta):
            return self._restart(st, seq, None)
        stats.received += 1
        stats.duplicates += 1
        return Observation(Continuity.DUPLICATE)

    @staticmethod
    def _start(st: _State, seq: int, run_id: str | None, how: Continuity) -> Observation:
        st.stats.received += 1
        st.stats.run_id = run_id
        st.stats.last_seq = seq
        st.next_seq = seq + 1
        st.holes.clear()
        return Observation(how)

    def _restart(self, st: _State, seq: int, run_id: str | None) -> Observation:
        if st.stats.run_id is not None:
            st.old_runs.append(st.stats.run_id)
        st.stats.restarts += 1
        self._start(st, seq, run_id, Continuity.RESTART)
        if seq > 0:  # the new run's first seqs never came
            st.stats.gaps += 1
            st.stats.missing += seq
            st.holes.append([0, seq])
        return Observation(Continuity.RESTART, seq)

    @staticmethod
    def _fill_hole(st: _State, seq: int) -> bool:
        for i, hole in enumerate(st.holes):
            lo, hi = hole
            if not lo <= seq < hi:
                continue
            if hi - lo == 1:
                del st.holes[i]
            elif seq == lo:
                hole[0] = lo + 1
            elif seq == hi - 1:
                hole[1] = hi - 1
            else:
                hole[1] = seq
                if len(st.holes) < MAX_HOLES:  # else the upper part is forgotten (later: duplicates)
                    st.holes.insert(i + 1, [seq + 1, hi])
            return True
        return False

    def invalid(self, key: StreamKey) -> None:
        """Count a message of ``key`` that did not decode or did not match its topic."""
        st = self._streams.setdefault(key, _State())
        st.stats.invalid += 1

    def stats(self) -> dict[StreamKey, StreamStats]:
        """A copy of every stream's counters."""
        return {k: StreamStats(**vars(self._streams[k].stats)) for k in sorted(self._streams, key=StreamKey.sort_key)}
