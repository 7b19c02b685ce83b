"""Running the daemon from the command line: uvloop, the run, a short report."""

from __future__ import annotations

import json
from typing import TextIO

from livetok.config import LivetokConfig
from livetok.daemon.runner import RunReport, run
from livetok.tokenizers import Tokenizers


def run_blocking(cfg: LivetokConfig, duration_s: float | None) -> RunReport:
    """Load the tokenizers, then run the daemon on uvloop until stopped."""
    import uvloop

    toks = Tokenizers.from_config(cfg.tokenizer)
    return uvloop.run(run(cfg, toks, duration_s))


def run_and_report(cfg: LivetokConfig, duration_s: float | None, out: TextIO) -> int:
    report = run_blocking(cfg, duration_s)
    out.write(f"livetok run: stopped by {report.stopped_by or 'end'}; {report.steps} aligned steps\n")
    out.write(json.dumps(report.metrics, indent=1) + "\n")
    return 0
