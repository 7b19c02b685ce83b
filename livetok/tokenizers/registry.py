"""The tokenizer kinds by name, and the configuration's plug-in tokenizers checked and loaded.

Adding a kind: one module under ``livetok/tokenizers/kinds/`` defining its :class:`Kind`, and its
entry in :data:`KINDS`. Everything downstream (the engine, the wire, the bus's meta, metrics) works
from the loaded :class:`Plugin`'s :class:`~livetok.tokenizers.spec.StreamSpec`.

Errors name the tokenizer's key and its line in the file: ``FILE:LINE: tokenizers.N.KEY: ...``,
ConfigError (exit 78) for what the configuration shows, ModelError / CodebookError (exit 65) for
what the model or codebook files show. :func:`check_plugins` (``check-config``, and the start) only
validates options; :func:`load_plugins` (``check-config``, and the start) opens every file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from livetok.config import LivetokConfig
from livetok.config.tokenizers import PluginTokenizer
from livetok.errors import CodebookError, ConfigError, LivetokError
from livetok.tokenizers.kinds import logmel_rvq, onnx, patch_rvq, spectrogram_patches, torchscript
from livetok.tokenizers.kinds.base import Kind, Plugin
from livetok.tokenizers.models.runner import Format
from livetok.tokenizers.spec import StreamSpec

KINDS: dict[str, Kind] = {k.name: k for k in (logmel_rvq.KIND, patch_rvq.KIND, spectrogram_patches.KIND,
                                               torchscript.KIND, onnx.KIND)}


@dataclass(frozen=True)
class Checked:
    """A plug-in tokenizer whose options validated: its entry, index, kind and options."""

    entry: PluginTokenizer
    index: int
    kind: Kind
    options: BaseModel


def _loc_line(cfg: LivetokConfig, index: int, loc: tuple[Any, ...]) -> str:
    return cfg.where("tokenizers", index, *loc)


def validation_loc(err: ValidationError) -> tuple[tuple[str | int, ...], str]:
    """The first problem's key path (union tags dropped) and message."""
    first = err.errors()[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and (p in ("audio", "video") or
                                                                     p.startswith("function-")))]
    msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
    return tuple(loc), msg


def check_plugins(cfg: LivetokConfig) -> list[Checked]:
    """Every plug-in tokenizer's kind known, its modality one the kind has, its options valid
    (ConfigError naming ``tokenizers.N.KEY`` and its line). No torch, no files."""
    out = []
    for i, entry in cfg.plugin_entries():
        kind = KINDS.get(entry.kind)
        if kind is None or kind.options is None:
            known = ", ".join(k for k, v in KINDS.items() if v.options is not None)
            raise ConfigError(f"{_loc_line(cfg, i, ('kind',))}: unknown tokenizer kind {entry.kind!r} (the "
                              f"plug-in kinds: {known}; built in: logmel-rvq, patch-rvq)")
        if entry.modality not in kind.modalities:
            raise ConfigError(f"{_loc_line(cfg, i, ('modality',))}: a {kind.name} tokenizer is "
                              f"{' or '.join(sorted(kind.modalities))}, not {entry.modality}")
        try:
            opts = kind.options.model_validate(entry.options)
        except ValidationError as err:
            loc, msg = validation_loc(err)
            raise ConfigError(f"{_loc_line(cfg, i, loc)}: {msg}") from None
        out.append(Checked(entry, i, kind, opts))
    return out


# The groundwork's lines: "tokenizer 'NAME': KEY: what" (KEY like model.io.state[0])
_KEYED = re.compile(r"tokenizer '[^']*': ([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*|\[\d+\])*): (.*)", re.S)


def located(cfg: LivetokConfig, index: int, name: str, err: LivetokError) -> LivetokError:
    """``err`` (one line from loading tokenizer ``name``) with the file, line and key in front."""
    text = str(err)
    m = _KEYED.match(text)
    key: tuple[str | int, ...] = ()
    if m is not None:
        key = tuple(int(p) if p.isdigit() else p for p in re.split(r"\.|\[|\]\.?", m.group(1)) if p != "")
        text = m.group(2)
    elif type(err) is CodebookError:  # the codebook file itself (missing, corrupt, fitted for another model)
        key = ("codebooks",)
        text = text.removeprefix(f"tokenizer {name!r}: ")  # named once, below
    line = f"{_loc_line(cfg, index, key)}: tokenizer {name!r}: {text}"
    return type(err)(line) if _plain(err) else err


def _plain(err: LivetokError) -> bool:
    """An error type made from its message alone (ModelRunError and BusError need more)."""
    try:
        type(err)("x")
    except TypeError:
        return False
    return True


def load_plugins(cfg: LivetokConfig) -> dict[str, Plugin]:
    """Every plug-in tokenizer opened, checked, probed, with its codebooks: by name. Never
    mid-stream: the daemon does this before capture starts, ``check-config`` does it too."""
    out = {}
    for c in check_plugins(cfg):
        assert c.kind.load is not None
        try:
            out[c.entry.name] = c.kind.load(c.entry, c.options, c.index)
        except LivetokError as err:
            raise located(cfg, c.index, c.entry.name, err) from err
    return out


def unfitted(cfg: LivetokConfig, c: Checked) -> tuple[Any, Any]:
    """What ``fit --tokenizer`` fits: the kind object without codebooks, and its quantizer's settings
    (None: a model that gives codes, nothing to fit). Errors as :func:`load_plugins`'."""
    from livetok.tokenizers.kinds.model import ModelOptions
    from livetok.tokenizers.plugin_config import SpectroPatchConfig
    from livetok.tokenizers.spectro_patches import SpectroPatchTokenizer

    opts, name = c.options, c.entry.name
    if isinstance(opts, SpectroPatchConfig):
        return SpectroPatchTokenizer(name, opts), opts.quantizer
    assert isinstance(opts, ModelOptions)
    from livetok.tokenizers.models.audio import AudioModelEncoder
    from livetok.tokenizers.models.video import VideoModelEncoder

    mcfg = opts.model if "device" in opts.model.model_fields_set else opts.model.model_copy(
        update={"device": c.entry.device})
    fmt: Format = "torchscript" if c.kind.name == "torchscript" else "onnx"
    try:
        enc: AudioModelEncoder | VideoModelEncoder = (
            AudioModelEncoder.load(name, mcfg, fmt, step_ms=opts.step_ms) if c.entry.modality == "audio"
            else VideoModelEncoder.load(name, mcfg, fmt))
    except LivetokError as err:
        raise located(cfg, c.index, name, err) from err
    return enc, (None if enc.io.output == "codes" else opts.quantizer)


def stream_specs(cfg: LivetokConfig, plugins: dict[str, Plugin]) -> dict[str, list[tuple[str, str, StreamSpec]]]:
    """Per source, every stream it sends: ``(tokenizer, kind, spec)``, built-in streams first, in
    the order of ``tokenizers:``; only the modalities a group uses."""
    groups = cfg.effective_groups()
    used = {("video", g.video) for g in groups if g.video} | {("audio", g.audio) for g in groups if g.audio}
    out: dict[str, list[tuple[str, str, StreamSpec]]] = {}
    for s in cfg.sources:
        streams: list[tuple[str, str, StreamSpec]] = []
        for modality in ("video", "audio"):
            if (modality, s.name) not in used:
                continue
            for e in cfg.tokenizers_of(s.name, modality):
                kind = KINDS[e.kind]
                if kind.specs is not None:
                    streams += [(e.name, e.kind, spec) for spec in kind.specs(e)]
                elif e.name in plugins:
                    streams.append((e.name, e.kind, plugins[e.name].spec))
        if streams:
            out[s.name] = streams
    return out
