"""``livetok demo``: the whole product on this machine, no camera, microphone or broker needed.

A private Mosquitto starts on a free loopback port (``livetok.bus.private_broker``; no system
service is touched) — or ``--broker URL`` names an existing one. The synthetic source (a moving
pattern and a tone, a white flash and a 1 kHz beep every 2 s, the beep made ``OFFSET_MS`` late)
runs live through the daemon into the broker, and a token file beside it. A subscriber made with
``livetok.client``, as a downstream model would, takes every message; the demo then prints what it
received: messages per topic, capture-to-receive latency per modality and scale, the A/V skew the
daemon measured from the markers, gaps and duplicates — and the token file's summary and
inspection picture. Outputs go to ``--out-dir`` (default ``livetok-demo/`` in the current
directory, ignored by git), each written atomically.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livetok.config import LivetokConfig
from livetok.errors import OutputError
from livetok.outputs import atomic_output, check_writable_dir, describe_oserror

OFFSET_MS = 40.0
INSTANCE = "demo"
QUIET_S = 1.5  # after the run: the subscriber is done once nothing arrived for this long
MS = 1_000_000


def demo_config(tokens: Path, broker: Any) -> LivetokConfig:
    """The synthetic source into ``broker`` (a parsed BrokerUrl) and a token file."""
    return LivetokConfig.model_validate({
        "sources": [{"kind": "synthetic", "name": "synthetic", "audio_offset_ms": OFFSET_MS}],
        "sinks": [{"kind": "file", "path": str(tokens)}],
        "mqtt": {"host": broker.host, "port": broker.port, "username": broker.username,
                 "tls": {"enabled": broker.tls}, "instance": INSTANCE, "stats_interval_s": 1.0},
    })


@dataclass
class Received:
    """What the demo's subscriber took off the bus."""

    topics: Counter[str] = field(default_factory=Counter)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    skews_ms: list[float] = field(default_factory=list)
    stats: Any = None
    last_ns: int = 0

    def add(self, msg: Any) -> None:
        from livetok.wire import Modality

        self.topics[msg.topic] += 1
        self.last_ns = time.monotonic_ns()
        p = msg.packet
        if p is not None:  # a frame is captured at its start; an audio token is complete at its window's end
            captured = p.start_ns if p.modality == Modality.VIDEO else p.end_ns
            key = f"{p.modality.name.lower()}/{p.stream_name}"
            self.latency_ms.setdefault(key, []).append((msg.received_unix_ns - captured) / MS)
        elif msg.step is not None and msg.step.skew_ns is not None:
            self.skews_ms.append(msg.step.skew_ns / MS)


async def _demo(cfg: LivetokConfig, url: str, seconds: float) -> tuple[Any, Received]:
    from livetok.bus.topics import steps_filter, tokens_filter
    from livetok.client import Subscriber
    from livetok.daemon.main import run_async
    from livetok.runtime.stopping import StopControl

    got = Received()
    prefix = cfg.bus_settings().prefix
    filters = [tokens_filter(prefix, INSTANCE), steps_filter(prefix, INSTANCE)]
    async with Subscriber(url, filters, qos=1, buffer_messages=50_000) as sub:

        async def take() -> None:
            async for msg in sub:
                got.add(msg)

        taker = asyncio.create_task(take(), name="demo-subscriber")
        try:
            report = await run_async(cfg, seconds, StopControl())
            end = time.monotonic() + 10 * QUIET_S
            while time.monotonic() < end and time.monotonic_ns() - got.last_ns < QUIET_S * 1e9:
                await asyncio.sleep(0.1)
        finally:
            taker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await taker
        got.stats = sub.stats
    return report, got


def live_run(cfg: LivetokConfig, url: str, seconds: float) -> tuple[Any, Received]:
    """The daemon and the subscriber, on one uvloop."""
    import uvloop

    return uvloop.run(_demo(cfg, url, seconds))


def run_demo(out_dir: Path, seconds: float, broker: str | None = None) -> int:
    from livetok.bus.private_broker import PrivateBroker
    from livetok.bus.url import parse_broker_url
    from livetok.commands import probe
    from livetok.commands.inspect import inspect
    from livetok.tokenizers import Tokenizers

    out_dir = prepare_out_dir(out_dir)
    tokens, picture = out_dir / "demo.ltk", out_dir / "demo-inspect.png"
    with contextlib.ExitStack() as stack:
        if broker is None:
            url = stack.enter_context(PrivateBroker()).url
            where = f"a private Mosquitto on {url.removeprefix('mqtt://')} (stopped at the end)"
        else:
            url, where = broker, f"the broker {broker}"
        parsed = parse_broker_url(url)
        print(f"livetok demo: the synthetic source live for {seconds:g} s (flash + beep every 2 s, beep "
              f"{OFFSET_MS:g} ms late) into {where}, topics {'livetok'}/{INSTANCE}/..., and {tokens}")
        with atomic_output(tokens) as tmp:  # a failed run leaves the last demo's tokens as they were
            cfg = demo_config(tmp, parsed)
            report, got = live_run(cfg, url, seconds)
    print_received(report, got)
    print(f"\ntoken file {tokens} ({report.steps} aligned steps):")
    probe.print_table(probe.probe_file(tokens), sys.stdout)
    inspect(tokens, picture, Tokenizers.from_config(cfg.tokenizer), None)
    print(f"\ninspection picture: {picture}")
    print(f"outputs (tokens, picture) are in {out_dir}; `--out-dir DIR` puts them elsewhere")
    return 0


def print_received(report: Any, got: Received) -> None:
    bus = report.sinks.get("mqtt", {})
    total = sum(got.topics.values())
    print(f"\nthe subscriber (livetok.client, QoS 1) received {total} messages:")
    width = max((len(t) for t in got.topics), default=10)
    for topic, n in sorted(got.topics.items()):
        print(f"  {topic:<{width}}  {n:6d}")
    print("\ncapture-to-receive latency at the subscriber (ms; video: from the frame's capture, audio: from "
          "the end of the token's window):")
    for key in ("video/fine", "video/coarse", "audio/fine", "audio/coarse"):
        values = sorted(got.latency_ms.get(key, []))
        if values:
            p = [values[min(len(values) - 1, int(q * len(values)))] for q in (0.5, 0.95, 0.99)]
            print(f"  {key:<13} p50 {p[0]:7.1f}  p95 {p[1]:7.1f}  p99 {p[2]:7.1f}   ({len(values)} tokens)")
    if got.skews_ms:
        print(f"A/V skew measured from the markers: {statistics.median(got.skews_ms[-5:]):+.1f} ms "
              f"(the beep was made {OFFSET_MS:g} ms late)")
    s = got.stats.total if got.stats is not None else None
    if s is not None:
        print(f"continuity: {s.gaps} gaps, {s.duplicates} duplicates, {s.missing} missing")
    print(f"the daemon's books: {bus.get('written', 0)} published and acknowledged, {bus.get('dropped', 0)} "
          f"dropped, {bus.get('failed', 0)} refused; {'balanced' if report.balanced else 'NOT balanced'}")


def prepare_out_dir(out_dir: Path) -> Path:
    """``out_dir`` made (with its parents) and checked writable, as an absolute path; OutputError
    (exit 73) in one line when it cannot be: a file in the way, a read-only or missing parent."""
    out_dir = Path(os.path.abspath(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out-dir {out_dir}: exists and is not a directory")
    blocker = next((p for p in out_dir.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"--out-dir {out_dir}: cannot create it: {blocker} is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"--out-dir {out_dir}: cannot create it: {describe_oserror(err)}") from None
    check_writable_dir(out_dir)
    return out_dir


def command(args: argparse.Namespace) -> int:
    return run_demo(Path(args.out_dir), args.seconds, args.broker)
