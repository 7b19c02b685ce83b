"""The daemon's configuration file: pydantic models mirroring config.yaml, loaded with line numbers.

A bad key or value is reported as ``FILE:LINE: key.path: problem`` (ConfigError, exit 78) before
anything starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from livetok.daemon.config import Alignment, Group, MetricsEndpoint, Mqtt, Queues, Sink, Source
from livetok.errors import ConfigError
from livetok.tokenizers.config import TokenizerConfig

VIDEO_KINDS = {"stream", "v4l2", "file", "lavfi", "synthetic"}
AUDIO_TRACK_KINDS = {"stream", "file", "synthetic"}


class LivetokConfig(BaseModel):
    """Top level of config.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokenizer: TokenizerConfig = Field(TokenizerConfig(), description="audio and video tokenizers")
    sources: list[Source] = Field(default_factory=list, description="cameras, streams, files, microphones")
    groups: list[Group] = Field(
        default_factory=list,
        description="video + audio aligned together; empty = each camera with the next microphone, else its own track")
    alignment: Alignment = Field(Alignment(), description="aligned steps")
    sinks: list[Sink] = Field(default_factory=list, description="token files; the MQTT bus is the mqtt: section")
    queues: Queues = Field(Queues(), description="capture-to-tokenizer hand-over")
    mqtt: Mqtt = Field(Mqtt(), description="the MQTT bus (off until a host is set)")
    metrics: MetricsEndpoint = Field(MetricsEndpoint(), description="the Prometheus endpoint (off by default)")
    # Where the configuration came from, to name a key's line in errors found after validation
    # (a codebook file that does not load, a sink directory that is missing); not configuration.
    _path: str = PrivateAttr("")
    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        """Equal settings, wherever they were read from (the location is not configuration)."""
        if not isinstance(other, LivetokConfig):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(self.model_dump_json())

    def where(self, *key: str | int) -> str:
        """``FILE:LINE: dotted.key`` for error messages (the line of the deepest key the file has);
        ``dotted.key`` alone for the embedded defaults and command-line flags."""
        dotted = ".".join(str(k) for k in key)
        if not self._path:
            return dotted
        return f"{self._path}:{_line_of(self._lines, tuple(key))}: {dotted}"

    @model_validator(mode="after")
    def _references(self) -> LivetokConfig:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique: {', '.join(dupes)}")
        sink_names = [s.name or f"{s.kind}{i}" for i, s in enumerate(self.sinks)]
        dupes = sorted({n for n in sink_names if sink_names.count(n) > 1})
        if dupes:
            raise ValueError(f"sink names must be unique: {', '.join(dupes)}")
        kinds = {s.name: s.kind for s in self.sources}
        for g in self.groups:
            if g.video is not None and kinds.get(g.video) not in VIDEO_KINDS:
                raise ValueError(f"group {g.name}: video source {g.video!r} is not a defined camera/stream source")
            if g.audio is not None and kinds.get(g.audio) not in AUDIO_TRACK_KINDS | {"mic"}:
                raise ValueError(f"group {g.name}: audio source {g.audio!r} is not a defined source with audio")
        return self

    def effective_groups(self) -> list[Group]:
        """The configured groups, or by default each camera/stream paired with the next unused
        microphone, else with its own audio track; microphones left over form audio-only groups."""
        if self.groups:
            return list(self.groups)
        mics = [s.name for s in self.sources if s.kind == "mic"]
        groups = []
        for s in self.sources:
            if s.kind not in VIDEO_KINDS:
                continue
            if mics:
                audio: str | None = mics.pop(0)
            else:
                audio = s.name if s.kind in AUDIO_TRACK_KINDS and getattr(s, "audio", True) else None
            groups.append(Group(name=s.name, video=s.name, audio=audio))
        groups += [Group(name=m, audio=m) for m in mics]
        return groups


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
        cfg = LivetokConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = _yaml_path(loader.lines, tuple(first["loc"]))
        line = _line_of(loader.lines, loc)
        key = ".".join(str(x) for x in loc) or "(top level)"
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = "unknown key"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ConfigError(f"{p}:{line}: {key}: {msg}{more}") from err
    cfg._path, cfg._lines = str(p), dict(loader.lines)
    return cfg


def _yaml_path(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Pydantic's error location as a path in the YAML: the discriminator tags it inserts for
    ``kind`` unions (``sources.1.stream.url``) are not keys of the document, so they are dropped
    while the rest of the path still matches."""
    path: tuple[str | int, ...] = ()
    for i, el in enumerate(loc):
        if (*path, el) in lines or i == len(loc) - 1 or (*path, el, loc[i + 1]) in lines:
            path = (*path, el)
    return path


def _line_of(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int:
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)
