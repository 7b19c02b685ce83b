"""``livetok run``: the daemon, from the configuration file and the ad-hoc flags, until stopped."""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

from livetok.runtime.stopping import StopControl

if TYPE_CHECKING:
    from livetok.config import LivetokConfig


def command(args: argparse.Namespace) -> int:
    # First, before anything slow: SIGINT/SIGTERM from now on mean "stop cleanly" (exit 0), never a
    # traceback or exit 130/143, even during the seconds the tokenizers take to load.
    stop = StopControl().install()
    from livetok.commands.rate_flag import token_fps_flag
    from livetok.commands.run_flags import compose
    from livetok.config import load_config
    from livetok.daemon.main import run_and_report
    from livetok.daemon.preflight import preflight
    from livetok.runtime import log

    log.configure(verbose=args.verbose)

    def configuration() -> LivetokConfig:
        """The file and the flags, as at start; SIGHUP re-reads them (checked like check-config)."""
        cfg = compose(load_config(args.config), args.source or [], args.mic or [], args.sink or [],
                      args.password_file, token_fps)
        preflight(cfg)
        return cfg

    try:
        duration = _duration(args.duration)
        token_fps = token_fps_flag(args.token_fps)
        cfg = compose(load_config(args.config), args.source or [], args.mic or [], args.sink or [],
                      args.password_file, token_fps)
        return run_and_report(cfg, duration, stop, sys.stderr, reconfigure=configuration)
    finally:
        sys.stderr.flush()
        stop.done()


def _duration(value: str | None) -> float | None:
    """``--duration``: a finite number of seconds above 0 (ConfigError, exit 78, otherwise)."""
    from livetok.errors import ConfigError

    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"--duration {value}: expected a number of seconds above 0")
    return seconds
