"""Where numba keeps the compiled kernels: somewhere writable, whoever runs livetok.

numba caches ``cache=True`` kernels beside their source (``__pycache__``) or in the user's cache
directory; when neither is writable — a service user (systemd ``DynamicUser=``) running a root-owned
installation with no home — importing the kernel raises ``RuntimeError: cannot cache function``.
Before any kernel is imported, :func:`ensure_cache_dir` picks ``$NUMBA_CACHE_DIR`` if set, else the
package directory when writable, else ``$CACHE_DIRECTORY/numba`` (systemd's ``CacheDirectory=``),
``$XDG_CACHE_HOME``/``~/.cache``, or a per-user folder under the temporary directory.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

_done = False


def _writable(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(d, os.W_OK | os.X_OK)


def ensure_cache_dir() -> None:
    global _done
    if _done or os.environ.get("NUMBA_CACHE_DIR"):
        _done = True
        return
    _done = True
    here = Path(__file__).resolve().parent
    if os.access(here, os.W_OK) and (not (here / "__pycache__").exists() or os.access(here / "__pycache__", os.W_OK)):
        return  # numba's own choice (beside the source) works
    candidates = []
    if os.environ.get("CACHE_DIRECTORY"):
        candidates.append(Path(os.environ["CACHE_DIRECTORY"].split(":")[0]) / "numba")
    home_cache = os.environ.get("XDG_CACHE_HOME") or (os.path.expanduser("~/.cache") if "HOME" in os.environ else "")
    if home_cache:
        candidates.append(Path(home_cache) / "livetok" / "numba")
    candidates.append(Path(tempfile.gettempdir()) / f"livetok-numba-{os.getuid()}")
    for d in candidates:
        if _writable(d):
            os.environ["NUMBA_CACHE_DIR"] = str(d)
            config = sys.modules.get("numba.core.config")
            if config is not None:  # numba read its settings at import: read them again
                config.reload_config()
            return
