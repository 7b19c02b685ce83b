"""The ``tokenizers:`` list: every tokenizer by name, modality and kind (docs/tokenizers.md).

Two built-in kinds are validated here, field by field, because they are today's ``tokenizer:``
section split in two: ``logmel-rvq`` (audio: the fields of ``tokenizer.audio``) and ``patch-rvq``
(video: the fields of ``tokenizer.video``). Every other kind (``spectrogram-patches``,
``torchscript``, ``onnx``) is a :class:`PluginTokenizer`: its own options travel as extra keys and
are validated by that kind's entry in the tokenizer registry (``livetok.tokenizers.registry``,
a layer above: the configuration imports no tokenizer code), which names ``tokenizers.N.KEY`` and
its line the same way.

Stream names: a built-in kind emits ``fine`` and ``coarse``; a plug-in kind one named stream, the
tokenizer's ``stream`` or else its ``name``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator

from livetok.config.base import NAME, Strict
from livetok.config.tokenizer import AudioConfig, TokenizerConfig, VideoConfig

BUILTIN_KINDS = {"logmel-rvq": "audio", "patch-rvq": "video"}
SCALE_STREAMS = ("fine", "coarse")  # the built-in kinds' streams; reserved for them
# Stream names are the last topic level: these would read as another kind of topic (docs/bus.md).
TOPIC_WORDS = ("steps", "meta", "available", "stats")
Device = Literal["auto", "cpu", "cuda"]


class _Common(Strict):
    name: str = Field(pattern=NAME, description="unique tokenizer name; sources refer to it")
    device: Device = Field("auto", description="auto: cuda when torch sees a GPU")
    codebooks: Path | None = Field(None, description="fitted codebook file (safetensors)")


class LogMelRvqTokenizer(AudioConfig):
    """``kind: logmel-rvq``: the built-in audio codec (``fine`` 20 ms, ``coarse`` 80 ms)."""

    kind: Literal["logmel-rvq"] = "logmel-rvq"
    name: str = Field(pattern=NAME, description="unique tokenizer name; sources refer to it")
    modality: Literal["audio"] = "audio"
    device: Device = Field("auto", description="unused by the audio path (CPU); kept for symmetry")
    codebooks: Path | None = Field(None, description="codebook file; null = the packaged default codebooks")

    def audio_config(self) -> AudioConfig:
        return AudioConfig(**self.model_dump(include=set(AudioConfig.model_fields)))

    @property
    def streams(self) -> tuple[str, ...]:
        return SCALE_STREAMS


class PatchRvqTokenizer(VideoConfig):
    """``kind: patch-rvq``: the built-in video codec (``fine`` 14 x 14, ``coarse`` 7 x 7)."""

    kind: Literal["patch-rvq"] = "patch-rvq"
    name: str = Field(pattern=NAME, description="unique tokenizer name; sources refer to it")
    modality: Literal["video"] = "video"
    device: Device = Field("auto", description="auto: cuda when torch sees a GPU")
    codebooks: Path | None = Field(None, description="codebook file; null = the packaged default codebooks")

    def video_config(self) -> VideoConfig:
        return VideoConfig(**self.model_dump(include=set(VideoConfig.model_fields)))

    @property
    def streams(self) -> tuple[str, ...]:
        return SCALE_STREAMS


class PluginTokenizer(_Common):
    """Any other kind: the common keys here, the kind's own options as extra keys (validated by
    the kind's registry entry, with the same ``tokenizers.N.KEY`` and line in errors)."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    kind: str = Field(pattern=r"^[a-z][a-z0-9-]{0,63}$", description="the tokenizer kind (docs/tokenizers.md)")
    modality: Literal["audio", "video"] = Field(description="what it tokenizes")
    stream: str | None = Field(None, pattern=NAME, description="its stream's name; null = the tokenizer's name")

    @field_validator("kind")
    @classmethod
    def _not_builtin(cls, kind: str) -> str:
        if kind in BUILTIN_KINDS:  # cannot happen through the union; a direct construction
            raise ValueError(f"{kind} is a built-in kind")
        return kind

    @field_validator("stream")
    @classmethod
    def _stream_name(cls, stream: str | None) -> str | None:
        if stream is not None:
            _check_stream_name(stream, "stream")
        return stream

    @property
    def options(self) -> dict[str, Any]:
        """The kind's own keys, as written."""
        return dict(self.model_extra or {})

    @property
    def stream_name(self) -> str:
        return self.stream if self.stream is not None else self.name

    @property
    def streams(self) -> tuple[str, ...]:
        return (self.stream_name,)


def _check_stream_name(name: str, what: str) -> None:
    if name in SCALE_STREAMS:
        raise ValueError(f"{what} {name!r}: fine and coarse are the built-in kinds' streams; choose another name")
    if name in TOPIC_WORDS:
        raise ValueError(f"{what} {name!r} would read as a {name} topic on the bus; choose another name")


def _entry_tag(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return str(kind) if kind in BUILTIN_KINDS else "plugin"


TokenizerEntry = Annotated[
    Annotated[LogMelRvqTokenizer, Tag("logmel-rvq")] | Annotated[PatchRvqTokenizer, Tag("patch-rvq")]
    | Annotated[PluginTokenizer, Tag("plugin")],
    Discriminator(_entry_tag),
]
AnyTokenizer = LogMelRvqTokenizer | PatchRvqTokenizer | PluginTokenizer


def entries_of_section(tok: TokenizerConfig) -> list[AnyTokenizer]:
    """Today's ``tokenizer:`` section as the list it means: ``audio`` (logmel-rvq) and ``video``
    (patch-rvq), each with the section's ``codebooks`` and ``device``."""
    common = {"device": tok.device, "codebooks": tok.codebooks}
    return [LogMelRvqTokenizer(name="audio", **common, **tok.audio.model_dump()),
            PatchRvqTokenizer(name="video", **common, **tok.video.model_dump())]


def check_entries(entries: list[AnyTokenizer]) -> None:
    """Names unique, plug-in names usable as stream names, one tokenizer per built-in kind (they
    share the one codebook file of today's section)."""
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"tokenizer names must be unique: {', '.join(dupes)}")
    for i, e in enumerate(entries):
        if isinstance(e, PluginTokenizer) and e.stream is None:
            _check_stream_name(e.name, f"tokenizers.{i}.name: the stream name")
    _unique_streams(entries)
    builtin = [e for e in entries if not isinstance(e, PluginTokenizer)]
    for kind in BUILTIN_KINDS:
        same = [e.name for e in builtin if e.kind == kind]
        if len(same) > 1:
            raise ValueError(f"tokenizers {same[0]!r} and {same[1]!r} are both {kind}: one {kind} tokenizer per "
                             "daemon (give a source the other settings through a plug-in kind)")
    books = {str(e.codebooks) for e in builtin}
    if len(books) > 1:
        raise ValueError("the logmel-rvq and patch-rvq tokenizers share one codebook file: give both the same "
                         "codebooks (or leave both null)")


def _unique_streams(entries: list[AnyTokenizer]) -> None:
    """No two plug-in tokenizers give one modality the same stream name, whichever sources they
    feed: the daemon publishes one vocabulary (one block per stream name) that every source's meta
    carries, so that a group's steps flatten with any one of them."""
    seen: dict[tuple[str, str], str] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, PluginTokenizer):
            continue
        key = (e.modality, e.stream_name)
        if key in seen:
            where = f"tokenizers.{i}.{'stream' if e.stream is not None else 'name'}"
            article = "an" if e.modality == "audio" else "a"
            raise ValueError(f"{where}: tokenizers {seen[key]!r} and {e.name!r} both give {article} {e.modality} "
                             f"stream named {e.stream_name!r}: the daemon has one vocabulary for all its sources, "
                             "one block per stream name; rename one (stream:)")
        seen[key] = e.name


def section_of_entries(entries: list[AnyTokenizer]) -> TokenizerConfig:
    """The built-in kinds of ``entries`` as today's ``tokenizer:`` section (what the built-in
    tokenizers are made from); a built-in kind left out keeps its defaults (no source uses it)."""
    audio = next((e for e in entries if isinstance(e, LogMelRvqTokenizer)), None)
    video = next((e for e in entries if isinstance(e, PatchRvqTokenizer)), None)
    first = audio or video
    return TokenizerConfig(
        device=video.device if video is not None else "auto",
        codebooks=first.codebooks if first is not None else None,
        audio=audio.audio_config() if audio is not None else AudioConfig(),
        video=video.video_config() if video is not None else VideoConfig())
