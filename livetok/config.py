"""The daemon's configuration file: pydantic models mirroring config.yaml, loaded with line numbers.

A bad key or value is reported as ``FILE:LINE: key.path: problem`` (ConfigError, exit 78) before
anything starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from livetok.errors import ConfigError
from livetok.tokenizers.config import TokenizerConfig


class LivetokConfig(BaseModel):
    """Top level of config.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokenizer: TokenizerConfig = Field(TokenizerConfig(), description="audio and video tokenizers")


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key, by path."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[tuple[str | int, ...], int] = {}

    def construct_document(self, node: yaml.Node) -> Any:
        self._walk(node, ())
        return super().construct_document(node)

    def _walk(self, node: yaml.Node, path: tuple[str | int, ...]) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                self._walk(value, sub)
                self.lines[sub] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))


def load_config(path: str | Path | None) -> LivetokConfig:
    """Read and validate a config file; ``None`` gives the embedded defaults."""
    if path is None:
        return LivetokConfig()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: cannot read config ({getattr(err, 'strerror', None) or err})") from err
    loader = _LineLoader(text)
    try:
        data = loader.get_single_data() or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from err
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{p}:1: the config must be a mapping of sections, got {type(data).__name__}")
    try:
        return LivetokConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(str(x) if not isinstance(x, int) else x for x in first["loc"])
        line = _line_of(loader.lines, loc)
        key = ".".join(str(x) for x in loc) or "(top level)"
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = "unknown key"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ConfigError(f"{p}:{line}: {key}: {msg}{more}") from err


def _line_of(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int:
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)
