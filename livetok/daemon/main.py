"""Running the daemon: open the sinks, load the tokenizers, run on uvloop, report.

Order matters for a daemon users can trust: everything that can be checked is checked before the
slow start-up (sources, sinks, the bus's files, the metrics port), and this module imports nothing
heavy until then, so a second daemon on the same file, a path that is not a token file or a port in
use is refused at once, before torch loads; the sinks are opened (and locked) next; the tokenizers
load in a thread while the event loop answers signals (and, under systemd, extends the start-up
timeout); capture starts last, and READY=1 goes out once it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from livetok.config import LivetokConfig
from livetok.daemon import log
from livetok.daemon.notify import Notifier
from livetok.daemon.preflight import check_bus, check_metrics, check_sinks, check_sources
from livetok.daemon.sinks import open_sinks
from livetok.daemon.stopping import StopControl
from livetok.errors import ConfigError

if TYPE_CHECKING:  # the runner pulls torch: imported once the checks have passed
    from livetok.daemon.runner import RunReport

EXTEND_S = 20.0  # under systemd: start-up goes on, wait this much more (sent every EXTEND_S / 2)


async def _keep_extending(notifier: Notifier) -> None:
    while True:
        notifier.extend_timeout(EXTEND_S)
        await asyncio.sleep(EXTEND_S / 2)


async def run_async(cfg: LivetokConfig, duration_s: float | None, stop: StopControl,
                    reconfigure: Callable[[], LivetokConfig] | None = None,
                    notifier: Notifier | None = None) -> RunReport:
    """The whole run inside an already running event loop (the demo runs a subscriber beside it)."""
    from livetok.bus.meta import new_run_id

    log.ensure_configured()
    stop.bind()
    notifier = notifier if notifier is not None else Notifier()
    run_id = new_run_id()  # new at every start: a consumer tells a restart's seq 0 from a duplicate
    sinks = open_sinks(cfg, run_id)
    extender = asyncio.create_task(_keep_extending(notifier), name="extend-timeout") if notifier.enabled else None
    try:
        async with contextlib.AsyncExitStack() as stack:
            for sink in sinks:
                await stack.enter_async_context(sink)
            from livetok.daemon.preflight import check_codebooks
            from livetok.daemon.runner import RunReport, run
            from livetok.tokenizers import Tokenizers

            await asyncio.to_thread(check_codebooks, cfg)  # the key's line in the error, before the slow part
            toks = await asyncio.to_thread(Tokenizers.from_config, cfg.tokenizer)
            if stop.requested:
                return RunReport(stopped_by=f"{stop.reason} during start-up")
            if extender is not None:  # the daemon's own start (warm-up, sources) is short: READY follows
                extender.cancel()
            return await run(cfg, toks, sinks, stop, duration_s, run_id, notifier, reconfigure)
    finally:
        if extender is not None:
            extender.cancel()


def run_blocking(cfg: LivetokConfig, duration_s: float | None, stop: StopControl | None = None,
                 reconfigure: Callable[[], LivetokConfig] | None = None) -> RunReport:
    """The daemon on uvloop until stopped (``stop``: signal handling, installed by the caller)."""
    import uvloop

    check_sources(cfg)
    check_sinks(cfg)
    check_bus(cfg)
    check_metrics(cfg)
    return uvloop.run(run_async(cfg, duration_s, stop if stop is not None else StopControl(), reconfigure))


def run_and_report(cfg: LivetokConfig, duration_s: float | None, stop: StopControl, out: TextIO,
                   reconfigure: Callable[[], LivetokConfig] | None = None) -> int:
    """``livetok run``: the run, then a one-line summary (and, outside journald, the books and the
    metrics as JSON) on ``out``."""
    if not cfg.sinks and cfg.mqtt.host is None:
        raise ConfigError("no sink: the tokens would go nowhere; add one with --sink mqtt://HOST (the bus) or "
                          "--sink file:PATH.ltk (or a sinks: or mqtt: section in the configuration)")
    report = run_blocking(cfg, duration_s, stop, reconfigure)
    books = report.accounting
    logger = log.get("daemon")
    logger.log(log.NOTICE, "run: stopped by %s; %d aligned steps; books %s", report.stopped_by or "end", report.steps,
               "balanced" if report.balanced or not books else "NOT balanced")
    for name, s in report.sinks.items():
        if s["dropped"] or s["failed"]:
            logger.warning("run: sink %s: %d written, %d dropped, %d failed (%s)", name, s["written"], s["dropped"],
                           s["failed"], s["last_error"] or "queue full")
    if not log.stderr_is_journal(out):
        out.write(json.dumps({"accounting": books, **report.metrics}, indent=1) + "\n")
    return 0

