"""Running the daemon: open the sinks, load the tokenizers, run on uvloop, report.

Order matters for a daemon users can trust: everything that can be checked is checked before the
slow start-up (sources, sinks, the bus's files, the metrics port), and this module imports nothing
heavy until then, so a second daemon on the same file, a path that is not a token file or a port in
use is refused at once, before torch loads; the codebooks are loaded and checked, and the sinks opened
(and locked) next; the tokenizers
load in a thread while the event loop answers signals (and, under systemd, extends the start-up
timeout); capture starts last, and READY=1 goes out once it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from livetok.config import LivetokConfig
from livetok.daemon.notify import Notifier
from livetok.daemon.preflight import check_bus, check_metrics, check_sinks, check_sources, checked_codebooks
from livetok.errors import BusError, ConfigError
from livetok.runtime import log
from livetok.runtime.stopping import StopControl
from livetok.sinks import open_sinks
from livetok.vocab import Vocabulary

if TYPE_CHECKING:  # the runner pulls torch: imported once the checks have passed
    from livetok.daemon.runner import RunReport

EXTEND_S = 20.0  # under systemd: start-up goes on, wait this much more (sent every EXTEND_S / 2)


async def _keep_extending(notifier: Notifier) -> None:
    while True:
        notifier.extend_timeout(EXTEND_S)
        await asyncio.sleep(EXTEND_S / 2)


def _loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """An error in a loop callback that nobody awaits: one event line (its traceback only with
    ``-v``), never asyncio's multi-line report on stderr."""
    err = context.get("exception")
    what = f"{type(err).__name__}: {err}" if isinstance(err, BaseException) else str(context.get("message"))
    if isinstance(err, RuntimeError) and "handler is closed" in str(err):
        # aiomqtt 2.5 schedules add_writer for paho's socket from paho's side; when the connection was
        # lost meanwhile (said already, in the bus's own line) uvloop refuses the closed socket: harmless.
        log.get("bus").debug("a write callback for a closed broker socket: %s", what)
        return
    log.get("daemon").error("unexpected error in the event loop: %s (the daemon goes on)", what,
                            exc_info=err if isinstance(err, BaseException) else None)


async def run_async(cfg: LivetokConfig, duration_s: float | None, stop: StopControl,
                    reconfigure: Callable[[], LivetokConfig] | None = None,
                    notifier: Notifier | None = None) -> RunReport:
    """The whole run inside an already running event loop (the demo runs a subscriber beside it)."""
    from livetok.bus.meta import new_run_id

    log.ensure_configured()
    asyncio.get_running_loop().set_exception_handler(_loop_error)
    stop.bind()
    notifier = notifier if notifier is not None else Notifier()
    run_id = new_run_id()  # new at every start: a consumer tells a restart's seq 0 from a duplicate
    extender = asyncio.create_task(_keep_extending(notifier), name="extend-timeout") if notifier.enabled else None
    try:
        # The codebooks first (the key's line in the error, before any sink opens); the bus's meta
        # describes their vocabulary.
        vocab = Vocabulary.from_codebooks(await asyncio.to_thread(checked_codebooks, cfg))
        # The plug-in tokenizers next: their models checked and probed before anything streams (one
        # line naming the key, never mid-stream); the bus's meta describes their streams.
        from livetok.tokenizers.registry import load_plugins

        plugins = await asyncio.to_thread(load_plugins, cfg)
        sinks = open_sinks(cfg, run_id, vocab, plugins)
        async with contextlib.AsyncExitStack() as stack:
            for sink in sinks:
                await stack.enter_async_context(sink)
            from livetok.daemon.runner import RunReport, run
            from livetok.tokenizers import Tokenizers

            toks = await asyncio.to_thread(Tokenizers.from_config, cfg.tokenizer)
            toks = dataclasses.replace(toks, plugins=plugins)
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
    metrics as JSON) on ``out``; 0, or BusError (69) when a run that ended by itself (its duration,
    its input) never reached its broker: a script cannot otherwise tell a run whose every bus message
    was dropped from one that delivered. A service (stopped by a signal) keeps retrying and exits 0."""
    if not cfg.sinks and cfg.bus is None:
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
    bus = report.sinks.get("mqtt")
    ended_by_itself = report.stopped_by == "duration" or report.stopped_by.startswith("end of input")
    if bus is not None and ended_by_itself and not bus.get("connects"):
        raise BusError(f"run: the MQTT bus never connected ({bus['last_error'] or 'no answer'}); its {bus['dropped']} "
                       "messages were dropped (counted in the books)", retryable=True)
    return 0

