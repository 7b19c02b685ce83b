"""``torchscript``: a user's TorchScript model (``torch.jit.save``), audio or video (:mod:`.model`)."""

from __future__ import annotations

from typing import Any

from livetok.config.tokenizers import PluginTokenizer
from livetok.tokenizers.kinds import model
from livetok.tokenizers.kinds.base import Kind, Plugin


def load(entry: PluginTokenizer, opts: Any, index: int) -> Plugin:
    return model.load(entry, opts, index, "torchscript")


KIND = Kind("torchscript", frozenset({"audio", "video"}), model.ModelOptions, load)
