"""What a kind is to the registry, and what a loaded plug-in tokenizer is to the daemon.

A :class:`Kind` validates its options (pure pydantic: ``check-config`` imports no torch for it) and
loads a tokenizer from them (the model opened, checked and probed, its codebooks attached), giving a
:class:`Plugin`: the three-phase kind object (``stream(source)``, ``run(jobs)``; docs/tokenizers.md)
with the one stream it emits. The built-in kinds (``logmel-rvq``, ``patch-rvq``) only describe
their streams here: they run through :class:`~livetok.tokenizers.session.Tokenizers`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from livetok.config.tokenizers import AnyTokenizer, PluginTokenizer
from livetok.tokenizers.spec import StreamSpec


@dataclass
class Plugin:
    """A loaded plug-in tokenizer: ``impl`` runs the three phases; ``spec`` is its stream.

    ``sample_rate``: audio, the model's rate (the input is resampled to it); ``image``: video,
    ``(height, width)`` of the model image (frames are centre-cropped to it)."""

    name: str
    kind: str
    index: int  # in tokenizers: (for errors' keys)
    impl: Any
    spec: StreamSpec
    codebook_id: str
    sample_rate: int | None = None
    image: tuple[int, int] | None = None

    @property
    def modality(self) -> str:
        return self.spec.modality


@dataclass(frozen=True)
class Kind:
    """One registry entry: ``options`` validates the kind's own keys; ``load`` makes the tokenizer
    (None for the built-in kinds); ``specs`` says its streams from the configuration alone when it
    can (None: only once loaded)."""

    name: str
    modalities: frozenset[str]
    options: type[BaseModel] | None
    load: Callable[[PluginTokenizer, Any, int], Plugin] | None
    specs: Callable[[AnyTokenizer], list[StreamSpec]] | None = None
    fits: bool = True  # `livetok fit --tokenizer` has something to fit (models: when they give embeddings)
