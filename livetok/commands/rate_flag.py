"""``--token-fps``: the token rate on the command line (``tokenize``, and ``run`` for its ``--source``s)."""

from __future__ import annotations

import math

from livetok.errors import ConfigError


def token_fps_flag(value: str | None) -> float | None:
    """``--token-fps`` (``tokenize``, ``run``): frames per second in the configuration key's bounds
    (``token_fps``: 0.01 to 1000; above a file's or camera's own rate keeps every frame); anything
    else is a ConfigError (exit 78). None: not given."""
    from livetok.config.sources import TOKEN_FPS_MAX, TOKEN_FPS_MIN

    if value is None:
        return None
    try:
        fps = float(value)
    except ValueError:
        fps = math.nan
    if not TOKEN_FPS_MIN <= fps <= TOKEN_FPS_MAX:  # nan and inf fail too
        raise ConfigError(f"--token-fps {value}: expected frames per second from {TOKEN_FPS_MIN:g} to "
                          f"{TOKEN_FPS_MAX:g}")
    return fps
