"""The command line's argument parser: a flag error is one line and exit 78, like any other bad
configuration (docs/cli.md), not argparse's usage block and exit 2.

Light on purpose (the standard library and :mod:`livetok.errors` only): every command, the light
client's included, builds its parser from this.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from livetok.errors import ConfigError


class FlagError(ConfigError):
    """A command line argparse could not take: a missing, unknown or malformed flag (exit 78)."""


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise :class:`FlagError` naming the command, instead of printing
    the usage and exiting 2. Its subparsers are of the same class (argparse makes them so)."""

    def error(self, message: str) -> NoReturn:
        raise _error(self.prog, message)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """As argparse's, but unknown arguments are blamed on the command they were given to."""
        known, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(known, "command", None)
            prog = f"{self.prog} {command}" if command else self.prog
            raise _error(prog, f"unrecognized arguments: {' '.join(extras)}")
        return known


def _error(prog: str, message: str) -> FlagError:
    command = prog.split(" ", 1)[1] if " " in prog else ""
    where = f"{command}: " if command else ""
    return FlagError(f"{where}{message} (see {prog} --help)")
