"""What a command writes: outputs that appear whole or not at all, and signals that clean them up.

``atomic`` (:func:`atomic_output`: a temporary file beside the target, renamed into place only when
it is complete; :func:`check_output` before the slow part) and ``interrupts`` (SIGINT, SIGTERM and
SIGHUP stop a command with one line and 128 + the signal, its temporary outputs removed).
"""

from livetok.outputs.atomic import (
    atomic_output,
    check_output,
    check_writable_dir,
    describe_oserror,
    open_temp,
    prepare,
)

__all__ = ["atomic_output", "check_output", "check_writable_dir", "describe_oserror", "open_temp", "prepare"]
