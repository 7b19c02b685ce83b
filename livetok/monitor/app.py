"""``livetok monitor [URL]``: subscribe to ``{prefix}/+/stats`` and ``{prefix}/+/available`` and
redraw the board (livetok.monitor.render) every ``--refresh`` seconds and on every document.

Ends on SIGINT/SIGTERM (exit 0). A bad URL or flag is one line and exit 78; a broker that cannot be
reached after ``--connect-attempts`` tries, or refuses the login or certificate, one line and exit
69. Once connected, a lost connection is retried forever and shown in the status line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from pathlib import Path

from livetok.bus.tls import TlsOptions
from livetok.bus.topics import TopicKind
from livetok.client import Message, Subscriber
from livetok.errors import ConfigError, LivetokError
from livetok.monitor.model import Board, Thresholds

QUIET_S = 0.5  # --once: print this long after the last message, once some stats have come


def _positive(value: str, flag: str, integer: bool = False) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0) or (integer and number != int(number)):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{flag} {value}: expected {kind} above 0")
    return number


def thresholds(args: argparse.Namespace) -> Thresholds:
    return Thresholds(late_video_ms=_positive(args.late_video, "--late-video"),
                      late_audio_ms=_positive(args.late_audio, "--late-audio"),
                      skew_ms=_positive(args.skew, "--skew"),
                      stale_intervals=_positive(args.stale, "--stale"),
                      history=int(_positive(args.history, "--history", integer=True)))


def make_subscriber(args: argparse.Namespace) -> Subscriber:
    tls = None
    if args.ca_file or args.cert_file or args.key_file:
        tls = TlsOptions(ca_file=_path(args.ca_file), cert_file=_path(args.cert_file), key_file=_path(args.key_file))
    attempts = int(_positive(args.connect_attempts, "--connect-attempts", integer=True))
    prefix = args.prefix.rstrip("/")
    # QoS 0: stats are a gauge, the next document replaces a lost one. No meta: not shown here.
    return Subscriber(args.url, [f"{prefix}/+/stats", f"{prefix}/+/available"], qos=0, prefix=prefix, meta=False,
                      password_file=args.password_file, tls=tls, connect_attempts=attempts, keepalive_s=10,
                      backoff_initial_s=0.5, backoff_max_s=5.0, buffer_messages=1000)


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def feed(board: Board, msg: Message) -> None:
    """One message into the board: a stats document or an availability state."""
    now = time.monotonic()
    if msg.kind is TopicKind.STATS:
        received_s = msg.received_mono_ns / 1e9 if msg.received_mono_ns else now
        board.stats(msg.instance, msg.data, received_s, msg.received_unix_ns / 1e9, retained=msg.retain,
                    raw=msg.text)
    elif msg.kind is TopicKind.AVAILABLE:
        board.available(msg.instance, msg.text or "", msg.received_mono_ns / 1e9 if msg.received_mono_ns else now)


def run_monitor(args: argparse.Namespace) -> int:
    try:
        import rich  # noqa: F401  -- in livetok[daemon]; a model server's light install may not have it
    except ImportError:
        raise LivetokError("livetok monitor needs the rich package: pip install rich") from None
    th = thresholds(args)
    refresh = _positive(args.refresh, "--refresh")
    wait = _positive(args.wait, "--wait")
    if args.json and not args.once:
        raise ConfigError("--json needs --once (the live board is for people)")
    sub = make_subscriber(args)
    board = Board(th)
    if args.once:
        return asyncio.run(_once(sub, board, th, wait, args.json))
    return asyncio.run(_live(sub, board, th, refresh))


async def _once(sub: Subscriber, board: Board, th: Thresholds, wait_s: float, as_json: bool) -> int:
    from rich.console import Console

    from livetok.monitor.render import board as draw
    from livetok.monitor.render import snapshot_json

    deadline = time.monotonic() + wait_s
    async with sub:
        got_stats = False
        while (left := deadline - time.monotonic()) > 0:
            msg = await sub.get(timeout_s=min(left, QUIET_S) if got_stats else left)
            if msg is None:
                if got_stats:
                    break  # the retained documents have come, and nothing more for a while
                continue
            feed(board, msg)
            got_stats |= msg.kind is TopicKind.STATS
        url = sub.url
    views = board.view(time.monotonic())
    if as_json:
        print(json.dumps(snapshot_json(views, th), indent=2))
        return 0
    width = _width()
    console = Console(file=sys.stdout, color_system=None, force_terminal=False, width=width, highlight=False,
                      emoji=False)
    with console.capture() as captured:
        console.print(draw(views, th, url, width))
    print("\n".join(line.rstrip() for line in captured.get().splitlines()))  # no padding: easier to grep
    return 0


def _width() -> int:
    """A terminal's own width; piped (scripts), wide enough that no row wraps."""
    import shutil

    return shutil.get_terminal_size().columns if sys.stdout.isatty() else 1000


async def _live(sub: Subscriber, board: Board, th: Thresholds, refresh_s: float) -> int:
    from rich.console import Console
    from rich.live import Live

    from livetok.monitor.render import board as draw

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    console = Console(highlight=False, emoji=False)
    try:
        async with sub:
            def status() -> str:
                if sub.connected:
                    return f"{sub.url} connected"
                return f"{sub.url} reconnecting ({sub.stats.last_error or 'connection lost'})"

            with Live(draw(board.view(time.monotonic()), th, status(), console.width), console=console, screen=True,
                      auto_refresh=False, redirect_stderr=False) as live:
                getter: asyncio.Task[Message | None] | None = None
                stopper = asyncio.create_task(stop.wait())
                next_draw = time.monotonic()
                try:
                    while not stop.is_set():
                        if getter is None:
                            getter = asyncio.create_task(sub.get())
                        timeout = max(0.0, next_draw - time.monotonic())
                        done, _ = await asyncio.wait({getter, stopper}, timeout=timeout,
                                                     return_when=asyncio.FIRST_COMPLETED)
                        if getter in done:
                            msg = getter.result()  # a fatal bus error is raised here
                            getter = None
                            if msg is None:  # the subscriber closed
                                break
                            feed(board, msg)
                            # soon, not at once: the retained documents of many daemons come in a burst
                            next_draw = min(next_draw, time.monotonic() + 0.1)
                        if time.monotonic() >= next_draw:
                            live.update(draw(board.view(time.monotonic()), th, status(), console.width),
                                        refresh=True)
                            next_draw = time.monotonic() + refresh_s
                finally:
                    stopper.cancel()
                    if getter is not None:
                        getter.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await getter
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0
