"""``livetok tail`` and ``livetok record``: watch the bus, or write what it carries to a token file.

Both run on model-server machines and import only the light part of livetok (the client, the
wire format): never torch, torchaudio, PyAV or numba.

    livetok tail mqtt://broker [FILTER ...]            one readable line per message
    livetok tail mqtt://broker --json                  JSON lines: probe --tokens' shape plus "topic", "run_id"
    livetok record mqtt://broker -o run.ltk --duration 60

SIGINT and SIGTERM end either one cleanly (exit 0) with a one-line summary on stderr. Continuity
problems (gaps, duplicates, restarts) go to stderr as they happen, so stdout stays pure data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from livetok.bus.tls import TlsOptions
from livetok.bus.topics import TopicKind, data_filters
from livetok.client import Continuity, Message, Subscriber, SubscriberStats
from livetok.commands.probe import packet_json, step_json
from livetok.commands.recordfile import RecordFile
from livetok.errors import ConfigError
from livetok.wire import AlignedStep, Clock, TokenPacket, flag_names

MAX_CODES_SHOWN = 8


def _seconds(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not (seconds > 0 and seconds < float("inf")):
        raise ConfigError(f"{flag} {value}: expected a number of seconds above 0")
    return seconds


def make_subscriber(args: argparse.Namespace, deliver_duplicates: bool = False) -> Subscriber:
    """A Subscriber from the command line (ConfigError for anything wrong in it)."""
    tls = None
    if args.ca_file or args.cert_file or args.key_file:
        tls = TlsOptions(ca_file=_path(args.ca_file), cert_file=_path(args.cert_file), key_file=_path(args.key_file))
    if args.count is not None and args.count < 1:
        raise ConfigError(f"--count {args.count}: expected at least 1")
    filters = args.filters or data_filters(args.prefix)
    return Subscriber(args.url, filters, qos=args.qos, client_id=args.client_id, protocol=args.protocol,
                      persistent=args.persistent, share=args.share, password_file=args.password_file, tls=tls,
                      prefix=args.prefix, connect_attempts=args.connect_attempts, keepalive_s=args.keepalive,
                      backoff_initial_s=0.5, backoff_max_s=5.0, deliver_duplicates=deliver_duplicates)


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


@dataclass
class RunResult:
    """How a tail or record ended: ``messages`` handled; ``interrupted``: by a signal;
    ``stats``: the subscriber's final counters."""

    messages: int
    seconds: float
    interrupted: bool
    stats: SubscriberStats


async def consume(sub: Subscriber, handle: Callable[[Message], None], duration_s: float | None,
                  count: int | None, err: TextIO | None = None) -> RunResult:
    """Connect, feed every message to ``handle`` until SIGINT/SIGTERM, ``duration_s`` or ``count``;
    say on ``err`` once subscribed."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in before:
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    handled = 0

    async def run() -> None:
        nonlocal handled
        async with sub:
            if err is not None:
                err.write(f"livetok: subscribed to {' '.join(sub.subscriptions)} at {sub.url}\n")
                err.flush()
            async for msg in sub:
                handle(msg)
                handled += 1
                if count is not None and handled >= count:
                    return

    task = asyncio.create_task(run())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # re-raises a BusError from connecting or a fatal reconnect
        await sub.close()
        for sig, handler in before.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)  # the command line's again
    return RunResult(handled, time.monotonic() - started, stop.is_set(), sub.stats)


def continuity_note(msg: Message) -> str | None:
    """A one-line note for stderr when a message is not simply the next of its stream."""
    c = msg.continuity
    if c is None or c in (Continuity.OK, Continuity.FIRST):
        return None
    where = f"{msg.stream} seq {msg.seq}"
    if c is Continuity.GAP:
        return f"gap: {msg.missing} missing before {where}"
    if c is Continuity.RESTART:
        lost = f", its first {msg.missing} missing" if msg.missing else ""
        return f"restart: {msg.stream} is a new run {msg.run_id or '(id unknown)'}{lost}"
    return f"{c.value}: {where}"


# -- tail ------------------------------------------------------------------------------------------


def _clock(unix_ns: int) -> str:
    t = time.localtime(unix_ns // 1_000_000_000)
    return time.strftime("%H:%M:%S", t) + f".{unix_ns // 1_000_000 % 1000:03d}"


def _latency(msg: Message, item: TokenPacket | AlignedStep) -> str:
    if item.clock != Clock.UNIX:
        return ""
    return f"  lat {(msg.received_unix_ns - item.end_ns) / 1e6:.1f} ms"


def _codes(p: TokenPacket) -> str:
    flat = p.codes.reshape(-1)
    shown = " ".join(str(int(c)) for c in flat[:MAX_CODES_SHOWN])
    more = " ..." if flat.size > MAX_CODES_SHOWN else ""
    return f"[{shown}{more}]"


def format_line(msg: Message) -> str:
    """One readable line for a message (receive time, topic, seq, flags, a few codes)."""
    head = f"{_clock(msg.received_unix_ns)}  {msg.topic}"
    if msg.packet is not None:
        p = msg.packet
        flags = ",".join(flag_names(p.flags)) or "-"
        pos = f" at {p.positions.size} positions" if p.positions is not None else ""
        return (f"{head}  #{p.seq}  {flags}  {p.codes.shape[0]}x{p.codes.shape[1]}{pos} {_codes(p)}"
                f"{_latency(msg, p)}")
    if msg.step is not None:
        s = msg.step
        counts: dict[str, int] = {}
        for p in s.packets:
            key = f"{p.modality.name.lower()}/{p.stream_name}"
            counts[key] = counts.get(key, 0) + 1
        parts = " ".join(f"{k}x{n}" for k, n in counts.items()) or "no packets"
        skew = "skew ?" if s.skew_ns is None else f"skew {s.skew_ns / 1e6:+.1f} ms"
        flags = ",".join(flag_names(s.flags))
        return (f"{head}  #{s.seq}  {(s.end_ns - s.start_ns) / 1e6:.0f} ms  {skew}  {parts}"
                f"{'  ' + flags if flags else ''}{_latency(msg, s)}")
    if msg.meta is not None:
        m = msg.meta
        streams = " ".join(f"{k}:{s.grid[0]}x{s.grid[1]}x{s.levels}" for k, s in m.streams.items())
        return f"{head}  run {m.run_id}  codebooks {m.codebook_id}  {streams}"
    if msg.kind is TopicKind.STATS:
        return f"{head}  {len(msg.text or '')} bytes of stats"
    return f"{head}  {msg.text if msg.text else '(cleared)'}"


def message_json(msg: Message) -> dict[str, Any]:
    """A message as JSON: probe --tokens' shape for packets and steps, plus ``topic`` and ``run_id``."""
    base: dict[str, Any] = {"topic": msg.topic, "run_id": msg.run_id}
    if msg.packet is not None:
        return {**packet_json(msg.packet), **base}
    if msg.step is not None:
        return {**step_json(msg.step), **base}
    if msg.meta is not None:
        return {"kind": "meta", **base, "meta": msg.meta.to_dict()}
    if msg.kind is TopicKind.STATS:
        return {"kind": "stats", **base, "stats": msg.data}
    return {"kind": msg.kind.value, **base, "text": msg.text}


def run_tail(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    duration = _seconds(args.duration, "--duration")
    sub = make_subscriber(args, deliver_duplicates=True)  # a live view shows them, flagged on stderr

    def handle(msg: Message) -> None:
        note = continuity_note(msg)
        if note:
            err.write(f"livetok: {note}\n")
            err.flush()
        line = json.dumps(message_json(msg), separators=(",", ":")) if args.json else format_line(msg)
        out.write(line + "\n")
        out.flush()

    result = asyncio.run(consume(sub, handle, duration, args.count, err))
    err.write(f"livetok: {summary(result)}\n")
    return 0


def summary(result: RunResult) -> str:
    t = result.stats.total
    return (f"{result.messages} messages in {result.seconds:.1f} s; gaps {t.gaps} ({t.missing} missing), "
            f"duplicates {t.duplicates}, restarts {t.restarts}, reconnects {result.stats.reconnects}, "
            f"dropped {result.stats.dropped}")


# -- record ----------------------------------------------------------------------------------------


def run_record(args: argparse.Namespace, err: TextIO = sys.stderr) -> int:
    duration = _seconds(args.duration, "--duration")
    sub = make_subscriber(args)
    out = Path(args.output)
    counts = {"packets": 0, "steps": 0}
    # Checked and opened before connecting: a file that must not be written is refused at once, and
    # one that is never written (nothing received) is left as it was, or not made (livetok/commands/recordfile.py).
    with RecordFile(out) as recording:

        def handle(msg: Message) -> None:
            if msg.packet is None and msg.step is None:
                return  # meta, availability, stats: not token data
            note = continuity_note(msg)
            if note:
                err.write(f"livetok: {note}\n")
            recording.write(msg.payload)  # the bytes as published, not re-encoded
            counts["steps" if msg.step is not None else "packets"] += 1

        result = asyncio.run(consume(sub, handle, duration, args.count, err))
    total = counts["packets"] + counts["steps"]
    where = (f"to {out}" if total else
             f"nothing appended to {out}" if recording.appending else f"no file made at {out}")
    err.write(f"livetok: recorded {total} messages ({counts['packets']} packets, {counts['steps']} steps) "
              f"{where}; {summary(result)}\n")
    return 0
