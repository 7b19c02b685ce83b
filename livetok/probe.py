"""``livetok probe``: summarise a .ltk file like ffprobe, or list its packets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from livetok.errors import DecodeError
from livetok.wire import AlignedStep, Flag, TokenPacket, flag_names, iter_ltk


@dataclass
class StreamSummary:
    source: str
    modality: str
    scale: str
    codebook_id: str
    packets: int = 0
    start_ns: int = 0
    end_ns: int = 0
    gaps: int = 0
    last_seq: int | None = None
    first_start: int = 0
    last_start: int = 0

    def add(self, p: TokenPacket) -> None:
        if self.packets == 0:
            self.start_ns, self.first_start = p.start_ns, p.start_ns
        self.start_ns = min(self.start_ns, p.start_ns)
        self.end_ns = max(self.end_ns, p.end_ns)
        # A gap: flagged by the producer, or a sequence number that skipped.
        if p.flags & Flag.GAP or (self.last_seq is not None and p.seq != self.last_seq + 1):
            self.gaps += 1
        self.last_seq = p.seq
        self.last_start = p.start_ns
        self.packets += 1

    def as_json(self) -> dict[str, Any]:
        span = self.last_start - self.first_start
        rate = (self.packets - 1) * 1e9 / span if self.packets > 1 and span > 0 else 0.0
        return {"source": self.source, "modality": self.modality, "scale": self.scale, "packets": self.packets,
                "rate_hz": round(rate, 6), "start_ns": self.start_ns, "end_ns": self.end_ns,
                "codebook_id": self.codebook_id, "gaps": self.gaps}


@dataclass
class Probe:
    streams: dict[tuple[str, str, str], StreamSummary] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, p: TokenPacket) -> None:
        key = (p.source, p.modality.name.lower(), p.scale.name.lower())
        if key not in self.streams:
            self.streams[key] = StreamSummary(*key, codebook_id=p.codebook_id)
        self.streams[key].add(p)

    def as_json(self) -> dict[str, Any]:
        return {"streams": [s.as_json() for s in self.streams.values()], "errors": self.errors}


def probe_file(path: Path) -> Probe:
    """Summary per stream. A file may hold each token packet twice, on its own and inside an
    aligned step: a stream is counted from its own packets when it has any, else from the steps."""
    probe, nested = Probe(), Probe()
    for item in iter_ltk(path):
        if isinstance(item, DecodeError):
            probe.errors.append(str(item))
        elif isinstance(item, AlignedStep):
            for p in item.packets:
                nested.add(p)
        else:
            probe.add(item)
    for key, summary in nested.streams.items():
        probe.streams.setdefault(key, summary)
    return probe


def packet_json(p: TokenPacket) -> dict[str, Any]:
    """One packet as JSON; a delta packet also names the grid ``positions`` its codes are for."""
    out = {"source": p.source, "modality": p.modality.name.lower(), "scale": p.scale.name.lower(),
           "seq": p.seq, "start_ns": p.start_ns, "end_ns": p.end_ns, "flags": flag_names(p.flags),
           "codes": p.codes.tolist()}
    if p.positions is not None:
        out["positions"] = p.positions.tolist()
    return out


def print_tokens(path: Path, out: TextIO) -> list[str]:
    errors = []
    for item in iter_ltk(path):
        if isinstance(item, DecodeError):
            errors.append(str(item))
            continue
        # Aligned steps repeat packets written on their own: list each packet once, in file order.
        if isinstance(item, TokenPacket):
            out.write(json.dumps(packet_json(item), separators=(",", ":")) + "\n")
    return errors


def print_table(probe: Probe, out: TextIO) -> None:
    head = (f"{'source':<16} {'modality':<8} {'scale':<6} {'packets':>8} {'rate_hz':>9} "
            f"{'start_s':>10} {'end_s':>10} {'gaps':>5}  codebook")
    out.write(head + "\n")
    for s in probe.streams.values():
        j = s.as_json()
        out.write(f"{j['source'][:16]:<16} {j['modality']:<8} {j['scale']:<6} {j['packets']:>8} {j['rate_hz']:>9.3f} "
                  f"{j['start_ns'] / 1e9:>10.3f} {j['end_ns'] / 1e9:>10.3f} {j['gaps']:>5}  {j['codebook_id']}\n")
    for e in probe.errors:
        out.write(f"error: {e}\n")
