"""``livetok probe``: summarise a .ltk file like ffprobe, or list its packets.

A stream is (source, modality, stream name): ``fine``/``coarse`` for the built-in tokenizers'
scales, or a plug-in tokenizer's named stream (wire v2). In JSON, ``stream`` is that name and
``scale`` stays ``fine``/``coarse``, or null for a named stream (docs/cli.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from livetok.errors import DecodeError
from livetok.wire import AlignedStep, Flag, TokenPacket, flag_names, iter_ltk


def scale_of(p: TokenPacket) -> str | None:
    """``"fine"``/``"coarse"``, None for a named stream's packet."""
    return None if p.scale is None else p.scale.name.lower()


@dataclass
class StreamSummary:
    source: str
    modality: str
    stream: str
    scale: str | None
    codebook_id: str
    packets: int = 0
    start_ns: int = 0
    end_ns: int = 0
    gaps: int = 0
    restarts: int = 0
    last_seq: int | None = None
    run_start: int = 0  # start_ns of the current run's first packet
    last_start: int = 0
    span_ns: int = 0  # the start-to-start time covered by earlier runs
    intervals: int = 0  # packet-to-packet steps within runs (a restart is not one)

    def add(self, p: TokenPacket) -> None:
        if self.packets == 0:
            self.start_ns, self.run_start, self.end_ns = p.start_ns, p.start_ns, p.end_ns
        self.start_ns = min(self.start_ns, p.start_ns)
        self.end_ns = max(self.end_ns, p.end_ns)
        if self.last_seq is not None and p.seq <= self.last_seq and (p.seq == 0 or p.flags & Flag.DISCONTINUITY):
            # A new run of the producer (a daemon restarted, appending to its file): its sequence
            # numbers start over. A discontinuity, not a loss: counted apart from the gaps, and the
            # time between the runs (the daemon was down) is not in the rate.
            self.restarts += 1
            self.span_ns += self.last_start - self.run_start
            self.run_start = p.start_ns
        else:
            # A gap: flagged by the producer, or a sequence number that skipped (or went back).
            if p.flags & Flag.GAP or (self.last_seq is not None and p.seq != self.last_seq + 1):
                self.gaps += 1
            self.intervals += self.packets > 0
        self.last_seq = p.seq
        self.last_start = p.start_ns
        self.packets += 1

    def as_json(self) -> dict[str, Any]:
        span = self.span_ns + self.last_start - self.run_start
        rate = self.intervals * 1e9 / span if self.intervals > 0 and span > 0 else 0.0
        return {"source": self.source, "modality": self.modality, "scale": self.scale, "stream": self.stream,
                "packets": self.packets,
                "rate_hz": round(rate, 6), "start_ns": self.start_ns, "end_ns": self.end_ns,
                "codebook_id": self.codebook_id, "gaps": self.gaps, "restarts": self.restarts}


@dataclass
class Probe:
    streams: dict[tuple[str, str, str], StreamSummary] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, p: TokenPacket) -> None:
        key = (p.source, p.modality.name.lower(), p.stream_name)
        if key not in self.streams:
            self.streams[key] = StreamSummary(*key, scale=scale_of(p), codebook_id=p.codebook_id)
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
    """One token packet as JSON (docs/cli.md); a delta packet also names the grid ``positions`` its
    codes are for."""
    out: dict[str, Any] = {
        "kind": "packet", "source": p.source, "modality": p.modality.name.lower(), "scale": scale_of(p),
        "stream": p.stream_name, "seq": p.seq, "start_ns": p.start_ns, "end_ns": p.end_ns, "flags": flag_names(p.flags),
        "codes": p.codes.tolist()}
    if p.positions is not None:
        out["positions"] = p.positions.tolist()
    return out


def step_json(s: AlignedStep) -> dict[str, Any]:
    """One aligned step as JSON (docs/cli.md), its token packets nested in full; ``skew_ns`` is
    null when the step's skew is unknown."""
    return {"kind": "step", "group": s.group, "seq": s.seq, "start_ns": s.start_ns, "end_ns": s.end_ns,
            "skew_ns": s.skew_ns, "flags": flag_names(s.flags), "packets": [packet_json(p) for p in s.packets]}


def print_tokens(path: Path, out: TextIO) -> list[str]:
    """One JSON line per record, in file order: a token packet, or an aligned step with its packets
    nested. Returns the reader's error messages (damaged regions), which are not printed here."""
    errors = []
    for item in iter_ltk(path):
        if isinstance(item, DecodeError):
            errors.append(str(item))
            continue
        doc = packet_json(item) if isinstance(item, TokenPacket) else step_json(item)
        out.write(json.dumps(doc, separators=(",", ":")) + "\n")
    return errors


def print_table(probe: Probe, out: TextIO) -> None:
    """One row per stream; the stream column is as wide as the longest name (at least 6)."""
    w = max([6, *(len(s.stream) for s in probe.streams.values())])
    head = (f"{'source':<16} {'modality':<8} {'stream':<{w}} {'packets':>8} {'rate_hz':>9} "
            f"{'start_s':>10} {'end_s':>10} {'gaps':>5} {'restarts':>8}  codebook")
    out.write(head + "\n")
    for s in probe.streams.values():
        j = s.as_json()
        out.write(f"{j['source'][:16]:<16} {j['modality']:<8} {j['stream']:<{w}} {j['packets']:>8} "
                  f"{j['rate_hz']:>9.3f} "
                  f"{j['start_ns'] / 1e9:>10.3f} {j['end_ns'] / 1e9:>10.3f} {j['gaps']:>5} {j['restarts']:>8}  "
                  f"{j['codebook_id']}\n")
    for e in probe.errors:
        out.write(f"error: {e}\n")


def command(args: argparse.Namespace) -> int:
    """``livetok probe FILE.ltk``: a summary, ``--json``, or ``--tokens`` (one JSON line per record); 65
    when the file is damaged (what could be read is reported first)."""
    if args.config:  # a token file carries all probe needs; a configuration given is checked all the same
        from livetok.config import load_config

        load_config(args.config)
    path = Path(args.file)
    if args.tokens:
        errors = print_tokens(path, sys.stdout)
        for e in errors:
            print(f"livetok: warning: {e}", file=sys.stderr)
        return 0 if not errors else 65
    result = probe_file(path)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print_table(result, sys.stdout)
    return 0 if not result.errors else 65
