"""Audio and video tokenizers: streaming front ends, projections, RVQ codebooks.

The names below are imported on first use (PEP 562): importing the package (or the configuration's
``TokenizerConfig``, which lives in ``livetok.config.tokenizer``) must not pull torch, torchaudio and
numba into ``check-config`` or a client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from livetok.config.tokenizer import AudioConfig, TokenizerConfig, VideoConfig
    from livetok.tokenizers.audio import AudioStream, AudioTokenizer
    from livetok.tokenizers.codebooks import CodebookSet, load_codebooks
    from livetok.tokenizers.session import MediaTokenizer, Tokenizers
    from livetok.tokenizers.video import VideoStream, VideoTokenizer

_WHERE = {
    "AudioStream": "audio", "AudioTokenizer": "audio", "CodebookSet": "codebooks", "load_codebooks": "codebooks",
    "AudioConfig": "livetok.config.tokenizer", "TokenizerConfig": "livetok.config.tokenizer",
    "VideoConfig": "livetok.config.tokenizer", "MediaTokenizer": "session",
    "Tokenizers": "session", "VideoStream": "video", "VideoTokenizer": "video",
}

__all__ = [
    "AudioConfig", "AudioStream", "AudioTokenizer", "CodebookSet", "MediaTokenizer", "TokenizerConfig",
    "Tokenizers", "VideoConfig", "VideoStream", "VideoTokenizer", "load_codebooks",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'livetok.tokenizers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module if "." in module else f"livetok.tokenizers.{module}"), name)
    globals()[name] = value
    return value
