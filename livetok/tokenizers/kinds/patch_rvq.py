"""``patch-rvq``: the built-in video codec (patches, PCA, RVQ): streams ``fine`` and ``coarse``."""

from __future__ import annotations

from livetok.config.tokenizers import AnyTokenizer, PatchRvqTokenizer
from livetok.tokenizers.kinds.base import Kind
from livetok.tokenizers.spec import StreamSpec


def specs(entry: AnyTokenizer) -> list[StreamSpec]:
    assert isinstance(entry, PatchRvqTokenizer)
    v = entry.video_config()
    out = []
    for scale, patch, rvq in (("fine", v.fine_patch, v.fine), ("coarse", v.coarse_patch, v.coarse)):
        side = v.size // patch
        out.append(StreamSpec("video", scale, None, (side, side), rvq.levels, rvq.codebook_size,
                              rvq.dim if v.vectors else None))
    return out


KIND = Kind("patch-rvq", frozenset({"video"}), None, None, specs)
