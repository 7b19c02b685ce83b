"""Running the daemon: open the sinks, load the tokenizers, run on uvloop, report.

Order matters for a daemon users can trust: the sinks are opened (and locked) before the slow
start-up, so a second daemon on the same file, or a path that is not a token file, is refused at
once; the tokenizers load in a thread while the event loop answers signals; capture starts last.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import TextIO

from livetok.config import LivetokConfig
from livetok.daemon.preflight import check_bus, check_sinks, check_sources
from livetok.daemon.runner import RunReport, run
from livetok.daemon.sinks import open_sinks
from livetok.daemon.stopping import StopControl
from livetok.errors import ConfigError


async def run_async(cfg: LivetokConfig, duration_s: float | None, stop: StopControl, log: TextIO) -> RunReport:
    """The whole run inside an already running event loop (the demo runs a subscriber beside it)."""
    from livetok.bus.meta import new_run_id

    stop.bind()
    run_id = new_run_id()  # new at every start: a consumer tells a restart's seq 0 from a duplicate
    sinks = open_sinks(cfg, run_id, log)
    async with contextlib.AsyncExitStack() as stack:
        for sink in sinks:
            await stack.enter_async_context(sink)
        from livetok.daemon.preflight import check_codebooks
        from livetok.tokenizers import Tokenizers

        await asyncio.to_thread(check_codebooks, cfg)  # the key's line in the error, before the slow part
        toks = await asyncio.to_thread(Tokenizers.from_config, cfg.tokenizer)
        if stop.requested:
            return RunReport(stopped_by=f"{stop.reason} during start-up")
        return await run(cfg, toks, sinks, stop, duration_s, log, run_id)


def run_blocking(cfg: LivetokConfig, duration_s: float | None, stop: StopControl | None = None,
                 log: TextIO | None = None) -> RunReport:
    """The daemon on uvloop until stopped (``stop``: signal handling, installed by the caller)."""
    import uvloop

    check_sources(cfg)
    check_sinks(cfg)
    check_bus(cfg)
    return uvloop.run(run_async(cfg, duration_s, stop if stop is not None else StopControl(),
                            log if log is not None else sys.stderr))


def run_and_report(cfg: LivetokConfig, duration_s: float | None, stop: StopControl, out: TextIO) -> int:
    """``livetok run``: the run, then a one-line summary, the books and the metrics on ``out``."""
    if not cfg.sinks and cfg.mqtt.host is None:
        raise ConfigError("no sink: the tokens would go nowhere; add one with --sink mqtt://HOST (the bus) or "
                          "--sink file:PATH.ltk (or a sinks: or mqtt: section in the configuration)")
    report = run_blocking(cfg, duration_s, stop, out)
    books = report.accounting
    out.write(f"livetok run: stopped by {report.stopped_by or 'end'}; {report.steps} aligned steps; "
              f"books {'balanced' if report.balanced or not books else 'NOT balanced'}\n")
    for name, s in report.sinks.items():
        if s["dropped"] or s["failed"]:
            out.write(f"livetok run: sink {name}: {s['written']} written, {s['dropped']} dropped, "
                      f"{s['failed']} failed ({s['last_error'] or 'queue full'})\n")
    out.write(json.dumps({"accounting": books, **report.metrics}, indent=1) + "\n")
    return 0
