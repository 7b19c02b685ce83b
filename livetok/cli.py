"""The ``livetok`` command line: parse, run the command, turn what went wrong into one line and an exit code.

The commands themselves are in :mod:`livetok.commands` (the parser's shape in
:mod:`livetok.commands.parser`). Every expected failure prints one line on stderr and exits non-zero
(docs/cli.md): a :class:`~livetok.errors.LivetokError` its own code, a bug 1, a signal 128 + its number.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from livetok import __version__
from livetok.commands import parser
from livetok.commands.flagparser import FlagError
from livetok.errors import LivetokError
from livetok.outputs import interrupts


def _parser() -> argparse.ArgumentParser:
    return parser.build(__version__)


def main(argv: Sequence[str] | None = None) -> int:
    # SIGINT, SIGTERM and SIGHUP stop a command with one line and 128 + the signal, its outputs
    # cleaned up, from the first moment (livetok/outputs/interrupts.py); `run` handles them itself.
    with interrupts.catching():
        try:
            args = _parser().parse_args(argv)
        except FlagError as err:  # 78 like any bad flag value, one line (argparse alone: usage and 2)
            print(f"livetok: error: {err}", file=sys.stderr)
            return err.exit_code
        except KeyboardInterrupt as err:
            return _interrupted(err)
        if args.command != "run":
            return _dispatch(args)
    return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(parser.handler(args.handler)(args))
    except KeyboardInterrupt as err:
        return _interrupted(err)
    except BrokenPipeError:
        return 141
    except Exception as err:
        if interrupts.received() is not None:
            # The signal landed where it was turned into another error (an import cut short leaves
            # its module half-made, and the next import of it fails): it is still an interruption.
            return _interrupted(err)
        if isinstance(err, LivetokError):
            print(f"livetok: error: {err}", file=sys.stderr)
            return err.exit_code
        if args.verbose:  # a bug: one line (and exit 1), the traceback only when asked for
            raise
        print(f"livetok: internal error: {type(err).__name__}: {err} (run with -v for the traceback)",
              file=sys.stderr)
        return 1


def _interrupted(err: BaseException) -> int:
    signum = err.signum if isinstance(err, interrupts.Interrupted) else interrupts.received()
    signum = signum or signal.SIGINT
    print(f"livetok: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
    # The outputs are cleaned up; what a third-party object cut short by the signal says as it is
    # finalized on the way out (aiomqtt's pending task, paho's socket on a closed loop: seen once in
    # CI as a "Task was destroyed" line and a traceback after this one) is not for the user.
    sys.unraisablehook = lambda _unraisable: None
    logging.getLogger("asyncio").disabled = True
    return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
