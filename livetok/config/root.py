"""The top of config.yaml: one model per section, the checks that span sections, and the rules
every part of livetok reads the same way (the effective groups, the sinks' names, the bus).

The sections: ``tokenizer`` (:mod:`~livetok.config.tokenizer`), ``sources``
(:mod:`~livetok.config.sources`), ``groups`` and ``alignment`` (:mod:`~livetok.config.groups`),
``sinks`` (:mod:`~livetok.config.sinks`), ``queues`` and ``metrics`` (:mod:`~livetok.config.runtime`),
``mqtt`` (:mod:`~livetok.config.mqtt`). Reading a file: :mod:`livetok.config.load`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from livetok.config.groups import Alignment, Group
from livetok.config.mqtt import Mqtt
from livetok.config.runtime import MetricsEndpoint, Queues
from livetok.config.sinks import BUS_NAME, FileSink, MqttSink, Sink, sink_name
from livetok.config.sources import AUDIO_TRACK_KINDS, VIDEO_KINDS, Source
from livetok.config.tokenizer import TokenizerConfig
from livetok.config.tokenizers import (
    AnyTokenizer,
    PluginTokenizer,
    TokenizerEntry,
    check_entries,
    entries_of_section,
    section_of_entries,
)


class LivetokConfig(BaseModel):
    """Top level of config.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    tokenizer: TokenizerConfig = Field(
        TokenizerConfig(), description="the built-in audio and video tokenizers (or the tokenizers: list)")
    tokenizers: list[TokenizerEntry] | None = Field(
        None, max_length=64, description="every tokenizer by name, modality and kind; null = the tokenizer: section")
    sources: list[Source] = Field(default_factory=list, description="cameras, streams, files, microphones")
    groups: list[Group] = Field(
        default_factory=list,
        description="video + audio aligned together; empty = each camera with the next microphone, else its own track")
    alignment: Alignment = Field(Alignment(), description="aligned steps")
    sinks: list[Sink] = Field(
        default_factory=list, description="token files, and the MQTT bus as kind mqtt (or as the mqtt: section)")
    queues: Queues = Field(Queues(), description="capture-to-tokenizer hand-over")
    mqtt: Mqtt = Field(Mqtt(), description="the MQTT bus (off until a host is set); or a sink of kind mqtt")
    metrics: MetricsEndpoint = Field(MetricsEndpoint(), description="the Prometheus endpoint (off by default)")
    # Where the configuration came from, to name a key's line in errors found after validation
    # (a codebook file that does not load, a sink directory that is missing); not configuration.
    _path: str = PrivateAttr("")
    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)
    # What a file source's media holds, (video, audio), as its header says (the start's
    # checks read it: :meth:`note_tracks`); the default groups use it. Not configuration.
    _tracks: dict[str, tuple[bool, bool]] = PrivateAttr(default_factory=dict)

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
        return f"{self._path}:{line_of(self._lines, tuple(key))}: {dotted}"

    # Uniqueness and references are checked per list, so an error names the list's key and line.
    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, sources: list[Source], info: ValidationInfo) -> list[Source]:
        _unique("source", [s.name for s in sources])
        if "tokenizer" in info.data and "tokenizers" in info.data:  # else those errors are the ones to read
            entries = info.data["tokenizers"]
            check_source_tokenizers(sources, entries if entries is not None else entries_of_section(
                info.data["tokenizer"]))
        return sources

    @field_validator("tokenizers")
    @classmethod
    def _tokenizer_names(cls, entries: list[AnyTokenizer] | None) -> list[AnyTokenizer] | None:
        if entries is not None:
            check_entries(entries)
        return entries

    @model_validator(mode="after")
    def _tokenizer_section(self) -> LivetokConfig:
        """With a ``tokenizers:`` list, ``tokenizer`` is what its built-in kinds say (so every reader
        of the built-in settings reads them one way); given besides, it must say the same."""
        if self.tokenizers is None:
            return self
        derived = section_of_entries(self.tokenizers)
        if "tokenizer" in self.model_fields_set and self.tokenizer not in (derived, TokenizerConfig()):
            raise ValueError("give the tokenizer: section or the tokenizers: list, not both")
        self.__dict__["tokenizer"] = derived  # frozen: set once, while validating
        return self

    def tokenizer_entries(self) -> list[AnyTokenizer]:
        """Every configured tokenizer: the ``tokenizers:`` list, or today's section as the two
        built-in entries it means (``audio``: logmel-rvq, ``video``: patch-rvq)."""
        return list(self.tokenizers) if self.tokenizers is not None else entries_of_section(self.tokenizer)

    def plugin_entries(self) -> list[tuple[int, PluginTokenizer]]:
        """The plug-in tokenizers with their index in ``tokenizers:`` (for errors' keys)."""
        return [(i, e) for i, e in enumerate(self.tokenizer_entries()) if isinstance(e, PluginTokenizer)]

    def tokenizers_of(self, source: str, modality: str) -> list[AnyTokenizer]:
        """The tokenizers ``source``'s ``modality`` feeds: its ``tokenizers:`` names, or every
        configured tokenizer of that modality."""
        src = next((s for s in self.sources if s.name == source), None)
        return _fed(src.tokenizers if src is not None else None, self.tokenizer_entries(), modality)

    @field_validator("sinks")
    @classmethod
    def _unique_sinks(cls, sinks: list[Sink]) -> list[Sink]:
        buses = [i for i, s in enumerate(sinks) if isinstance(s, MqttSink)]
        if len(buses) > 1:
            raise ValueError(f"sinks {buses[0]} and {buses[1]} are both kind mqtt: one MQTT broker per daemon (a "
                             "clustered broker scales further; docs/bus.md)")
        _unique("sink", [sink_name(i, s) for i, s in enumerate(sinks)])
        return sinks

    @field_validator("mqtt")
    @classmethod
    def _one_bus(cls, mqtt: Mqtt, info: ValidationInfo) -> Mqtt:
        # Two spellings of one bus: given both, which one holds would be a guess.
        bus = next((i for i, s in enumerate(info.data.get("sinks", [])) if isinstance(s, MqttSink)), None)
        if bus is not None and mqtt != Mqtt():
            raise ValueError(f"the MQTT bus is given twice, as sinks.{bus} (kind: mqtt) and as this mqtt: section; "
                             "give it once")
        return mqtt

    @field_validator("groups")
    @classmethod
    def _group_references(cls, groups: list[Group], info: ValidationInfo) -> list[Group]:
        _unique("group", [g.name for g in groups])
        if "sources" not in info.data:  # the sources are invalid themselves: that error is the one to read
            return groups
        kinds = {s.name: s.kind for s in info.data["sources"]}
        for g in groups:
            if g.video is not None and kinds.get(g.video) not in VIDEO_KINDS:
                raise ValueError(f"group {g.name}: video source {g.video!r} is not a defined camera/stream source")
            if g.audio is not None and kinds.get(g.audio) not in AUDIO_TRACK_KINDS | {"mic"}:
                raise ValueError(f"group {g.name}: audio source {g.audio!r} is not a defined source with audio")
        return groups

    def effective_groups(self) -> list[Group]:
        """The configured groups, or by default each camera/stream paired with the next unused
        microphone, else with its own audio track; microphones left over form audio-only groups,
        and so does a file source whose media has no video (:meth:`note_tracks`)."""
        if self.groups:
            return list(self.groups)
        mics = [s.name for s in self.sources if s.kind == "mic"]
        groups, audio_only = [], []
        for s in self.sources:
            if s.kind not in VIDEO_KINDS:
                continue
            video, track = self._tracks.get(s.name, (True, True))
            track = track and s.kind in AUDIO_TRACK_KINDS and getattr(s, "audio", True)
            if not video:  # an audio-only file: a group of its own audio, as a microphone left over
                audio_only += [Group(name=s.name, audio=s.name)] if track else []
                continue
            if mics:
                audio: str | None = mics.pop(0)
            else:
                audio = s.name if track else None
            groups.append(Group(name=s.name, video=s.name, audio=audio))
        groups += [Group(name=m, audio=m) for m in mics]
        return groups + audio_only

    def note_tracks(self, tracks: dict[str, tuple[bool, bool]]) -> None:
        """Record what file sources' media hold, ``{source: (has video, has audio)}``, as
        their headers say (read before capture starts): a default group then takes only what a
        source has (an audio-only file makes an audio-only group, not one waiting for video)."""
        self._tracks = dict(tracks)

    def named_sinks(self) -> list[tuple[str, FileSink | MqttSink]]:
        """Every sink with its name (:func:`~livetok.config.sinks.sink_name`), in fan-out order: the
        ``sinks:`` list, then the bus of the ``mqtt:`` section (when it has a host)."""
        out: list[tuple[str, FileSink | MqttSink]] = [(sink_name(i, s), s) for i, s in enumerate(self.sinks)]
        if self.mqtt.host is not None:
            out.append((BUS_NAME, MqttSink.model_validate(self.mqtt.model_dump())))
        return out

    def file_sinks(self) -> dict[str, FileSink]:
        """The token-file sinks by name."""
        return {name: s for name, s in self.named_sinks() if isinstance(s, FileSink)}

    def bus_settings(self) -> Mqtt:
        """The MQTT bus's settings however they are spelled (a sink of kind mqtt, or the ``mqtt:``
        section), as an ``mqtt:`` section: the same settings compare equal in either spelling."""
        sink = next((s for s in self.sinks if isinstance(s, MqttSink)), None)
        if sink is None:
            return self.mqtt
        return Mqtt.model_validate(sink.model_dump(exclude={"kind"}))

    @property
    def bus(self) -> Mqtt | None:
        """The MQTT bus's settings; None when there is no bus (no host)."""
        settings = self.bus_settings()
        return settings if settings.host is not None else None

    def bus_key(self, *key: str) -> tuple[str | int, ...]:
        """Where a bus setting is in the file (``mqtt.KEY``, or ``sinks.N.KEY``), for :meth:`where`."""
        at = next((i for i, s in enumerate(self.sinks) if isinstance(s, MqttSink)), None)
        return ("mqtt", *key) if at is None else ("sinks", at, *key)


def _fed(names: list[str] | None, entries: list[AnyTokenizer], modality: str) -> list[AnyTokenizer]:
    return [e for e in entries if e.modality == modality and (names is None or e.name in names)]


def check_source_tokenizers(sources: list[Source], entries: list[AnyTokenizer]) -> None:
    """Each source's ``tokenizers:`` names a configured tokenizer of a modality it has; no two of
    the tokenizers a source feeds give one modality the same stream name. The message starts with
    the key (``sources.N.tokenizers``), which the loader turns into its line."""
    known = {e.name: e for e in entries}
    for i, s in enumerate(sources):
        key = f"sources.{i}.tokenizers"
        for name in s.tokenizers or []:
            e = known.get(name)
            if e is None:
                raise ValueError(f"{key}: {name!r} is not a configured tokenizer ({', '.join(known) or 'none'})")
            if e.modality not in _modalities(s):
                raise ValueError(f"{key}: {name!r} is a {e.modality} tokenizer, and {s.kind} source {s.name!r} "
                                 f"has no {e.modality}")
        for modality in ("audio", "video"):
            streams: dict[str, str] = {}
            for e in _fed(s.tokenizers, entries, modality):
                for stream in e.streams:
                    if stream in streams:
                        raise ValueError(f"{key}: tokenizers {streams[stream]!r} and {e.name!r} both give source "
                                         f"{s.name!r} a {modality} stream named {stream!r}; rename one (stream:)")
                    streams[stream] = e.name


def _modalities(source: Any) -> set[str]:
    out = set()
    if source.kind in VIDEO_KINDS:
        out.add("video")
    if source.kind == "mic" or (source.kind in AUDIO_TRACK_KINDS and getattr(source, "audio", True)):
        out.add("audio")
    return out


def _unique(what: str, names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique: {', '.join(dupes)}")


def line_of(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int:
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)
