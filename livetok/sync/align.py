"""Alignment: one source group's token packets -> aligned steps on a fixed grid of host time.

Pure and deterministic: the caller supplies every time (items already mapped to host
monotonic ns by a :class:`~livetok.sync.clock.SourceClock`, watermarks, ``now_ns``). The aligner
never converts times: its items and the :class:`Step`\\ s it emits are in host monotonic ns, and
the daemon converts them to the wire clock once, where packets are encoded. Rules (docs/sync.md):

* grid: step k covers ``[anchor + k * step_ns, anchor + (k + 1) * step_ns)``, ``anchor`` being
  the start of the first packet added; k may be negative for packets added before anything
  was emitted (the grid extends back, its phase does not move);
* membership: a video packet belongs to the step holding its ``start_ns``, an audio packet to
  the step holding its midpoint ``(start_ns + end_ns) // 2`` — audio packets of drifting
  clocks slide slowly against the grid, and the midpoint is the point furthest from a boundary;
* a step is *complete* when every expected modality's watermark has reached its end, and
  *late* (flag LATE) when ``now_ns >= end + lateness_ns`` first; either way expected modalities
  with no packet in it are flagged MISSING_AUDIO / MISSING_VIDEO;
* steps go out in grid order, each once; a packet for a step already emitted is counted in
  ``stats.late_packets`` and dropped (``add`` returns False).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from livetok.wire import Modality, Scale, StepFlag

DEFAULT_STEP_NS = 80_000_000  # the coarse audio step: 12.5 steps/s
DEFAULT_LATENESS_NS = 500_000_000

_MISSING = {Modality.AUDIO: StepFlag.MISSING_AUDIO, Modality.VIDEO: StepFlag.MISSING_VIDEO}


@dataclass
class AlignerStats:
    """Counters of one aligner (steps and packets); ``pending_*`` are current depths."""

    steps: int = 0  # steps emitted
    complete: int = 0  # ...of which complete by watermarks
    late: int = 0  # ...of which emitted on the lateness deadline (or flushed incomplete)
    missing: int = 0  # steps emitted with at least one MISSING_* flag
    late_packets: int = 0  # packets dropped because their step had already been emitted
    late_by_modality: dict[Modality, int] = field(default_factory=dict)
    empty_skipped: int = 0  # steps with no packet at all, not emitted (emit_empty=False)
    packets: int = 0  # packets emitted inside steps
    pending_steps: int = 0  # steps holding packets, not yet emitted
    pending_packets: int = 0
    max_pending_steps: int = 0


class Timed(Protocol):
    """What the aligner needs of an item: its stream and its interval in host monotonic ns."""

    @property
    def source(self) -> str: ...
    @property
    def modality(self) -> Modality: ...
    @property
    def scale(self) -> Scale | None: ...
    @property
    def stream_name(self) -> str: ...
    @property
    def start_ns(self) -> int: ...
    @property
    def end_ns(self) -> int: ...


def _packet_order(p: Timed) -> tuple[int, int, str, int, str]:
    """Within a step: by modality (audio, video), the built-in scales (fine, coarse) before named streams, time."""
    return (int(p.modality), 255 if p.scale is None else int(p.scale), p.stream_name, p.start_ns, p.source)


T = TypeVar("T", bound=Timed)


@dataclass(frozen=True)
class Step(Generic[T]):
    """One aligned step, in host monotonic ns: ``[start_ns, end_ns)`` of the group's grid, its items
    (audio before video, fine before coarse, by time), the skew stamped on it, its flags."""

    group: str
    seq: int
    start_ns: int
    end_ns: int
    skew_ns: int | None
    flags: StepFlag
    items: tuple[T, ...]


@dataclass
class _Pending(Generic[T]):
    packets: list[T] = field(default_factory=list)
    present: set[Modality] = field(default_factory=set)


class Aligner(Generic[T]):
    """Aligns one group (at most one video and one audio source) onto a grid of ``step_ns``.

    ``modalities``:
    the modalities the group expects (watermarks and MISSING_* flags only concern these; adding
    a packet of another modality is an error). ``lateness_ns``: how long after its end a step
    waits for a modality that has not delivered. ``emit_empty``: also emit steps that hold no
    packet at all (all MISSING_*), keeping one step per grid slot; by default they are skipped
    and counted, so a dead group does not produce 12.5 empty steps a second.
    """

    def __init__(
        self,
        group: str,
        *,
        modalities: Iterable[Modality] = (Modality.AUDIO, Modality.VIDEO),
        step_ns: int = DEFAULT_STEP_NS,
        lateness_ns: int = DEFAULT_LATENESS_NS,
        emit_empty: bool = False,
    ) -> None:
        if len(group.encode("utf-8")) > 255:
            raise ValueError(f"group name {group!r} is longer than 255 bytes in UTF-8")
        if step_ns <= 0 or lateness_ns < 0:
            raise ValueError(f"need step_ns > 0 and lateness_ns >= 0, got {step_ns}, {lateness_ns}")
        self.group = group
        self.modalities = frozenset(Modality(m) for m in modalities)
        if not self.modalities:
            raise ValueError("an aligner needs at least one modality")
        self.step_ns = int(step_ns)
        self.lateness_ns = int(lateness_ns)
        self.emit_empty = emit_empty
        self.skew_ns: int | None = None  # stamped on every step emitted from now on
        self.stats = AlignerStats()
        self._anchor: int | None = None
        self._next_k: int | None = None  # first grid index not yet emitted (None: none emitted)
        self._seq = 0
        self._pending: dict[int, _Pending[T]] = {}
        self._order: list[int] = []  # sorted keys of _pending (a handful: lateness / step)
        self._watermark: dict[Modality, int | None] = dict.fromkeys(self.modalities)

    # -- input ------------------------------------------------------------------------------------
    def add(self, packet: T) -> bool:
        """Queue a packet (times in host monotonic ns). False: its step was already emitted, so
        it was dropped and counted in ``stats.late_packets``."""
        modality = packet.modality
        if modality not in self.modalities:
            raise ValueError(f"group {self.group!r} does not expect {modality.name} packets ({packet.source!r})")
        if self._anchor is None:
            self._anchor = packet.start_ns
        t = packet.start_ns if modality == Modality.VIDEO else (packet.start_ns + packet.end_ns) // 2
        k = (t - self._anchor) // self.step_ns
        if self._next_k is not None and k < self._next_k:
            self.stats.late_packets += 1
            self.stats.late_by_modality[modality] = self.stats.late_by_modality.get(modality, 0) + 1
            return False
        pending = self._pending.get(k)
        if pending is None:
            pending = self._pending[k] = _Pending[T]()
            bisect.insort(self._order, k)
            self.stats.max_pending_steps = max(self.stats.max_pending_steps, len(self._order))
        pending.packets.append(packet)
        pending.present.add(modality)
        self.stats.pending_steps = len(self._order)
        self.stats.pending_packets += 1
        return True

    def watermark(self, modality: Modality, ns: int) -> None:
        """``modality`` has delivered every packet that starts before ``ns`` (host monotonic ns).

        For a modality with several streams (audio fine and coarse) pass the minimum over them
        of the end of the last packet delivered. Watermarks only move forward (a lower value is
        ignored).
        """
        if modality not in self._watermark:
            raise ValueError(f"group {self.group!r} does not expect {Modality(modality).name}")
        old = self._watermark[modality]
        if old is None or ns > old:
            self._watermark[modality] = ns

    def set_skew(self, skew_ns: int | None) -> None:
        """Measured A/V skew (audio minus video, ns) to stamp on the steps emitted from now on."""
        self.skew_ns = skew_ns

    # -- output -----------------------------------------------------------------------------------
    def poll(self, now_ns: int) -> list[Step[T]]:
        """Every step, in grid order, that is complete or whose ``end + lateness_ns <= now_ns``."""
        out: list[Step[T]] = []
        while (k := self._candidate()) is not None:
            end = self._start(k + 1)
            complete = self._complete(end)
            if not complete and end + self.lateness_ns > now_ns:
                break  # later steps end later: none of them can be due either
            out.append(self._emit(k, late=not complete))
        return out

    def flush(self) -> list[Step[T]]:
        """Emit every pending step now (shutdown); steps not complete by watermarks are LATE."""
        out: list[Step[T]] = []
        last = self._order[-1] if self._order else None
        while (k := self._candidate()) is not None and last is not None and k <= last:
            out.append(self._emit(k, late=not self._complete(self._start(k + 1))))
        return out

    @property
    def pending_steps(self) -> int:
        """Steps holding packets that have not been emitted yet."""
        return len(self._order)

    # -- internals --------------------------------------------------------------------------------
    def _start(self, k: int) -> int:
        assert self._anchor is not None
        return self._anchor + k * self.step_ns

    def _complete(self, end: int) -> bool:
        return all(w is not None and w >= end for w in self._watermark.values())

    def _candidate(self) -> int | None:
        """Grid index of the next step to emit, or None when there is nothing to consider."""
        if self.emit_empty and self._next_k is not None:
            return self._next_k
        return self._order[0] if self._order else None

    def _emit(self, k: int, late: bool) -> Step[T]:
        pending = self._pending.pop(k, None)
        if pending is not None:
            self._order.remove(k)  # it is _order[0]: cheap
        else:
            pending = _Pending[T]()
        if self._next_k is not None and k > self._next_k:
            self.stats.empty_skipped += k - self._next_k
        flags = StepFlag.NONE
        for m in self.modalities:
            if m not in pending.present:
                flags |= _MISSING[m]
        if late:
            flags |= StepFlag.LATE
        # Deterministic order inside a step: audio before video, fine before coarse, by time.
        packets = tuple(sorted(pending.packets, key=_packet_order))
        step = Step(group=self.group, seq=self._seq, start_ns=self._start(k), end_ns=self._start(k + 1),
                    skew_ns=self.skew_ns, flags=flags, items=packets)
        self._seq += 1
        self._next_k = k + 1
        st = self.stats
        st.steps += 1
        st.late += late
        st.complete += not late
        st.missing += bool(flags & (StepFlag.MISSING_AUDIO | StepFlag.MISSING_VIDEO))
        st.packets += len(packets)
        st.pending_steps = len(self._order)
        st.pending_packets -= len(packets)
        return step
