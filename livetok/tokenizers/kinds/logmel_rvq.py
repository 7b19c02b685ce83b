"""``logmel-rvq``: the built-in audio codec (log-mel frames, PCA, RVQ): streams ``fine`` and ``coarse``."""

from __future__ import annotations

from livetok.config.tokenizers import AnyTokenizer, LogMelRvqTokenizer
from livetok.tokenizers.kinds.base import Kind
from livetok.tokenizers.spec import StreamSpec, step_ns_of


def specs(entry: AnyTokenizer) -> list[StreamSpec]:
    assert isinstance(entry, LogMelRvqTokenizer)
    a = entry.audio_config()
    return [StreamSpec("audio", scale, step_ns_of(frames * a.hop_length, a.sample_rate), (1, 1), rvq.levels,
                       rvq.codebook_size)
            for scale, frames, rvq in (("fine", a.fine_frames, a.fine), ("coarse", a.coarse_frames, a.coarse))]


KIND = Kind("logmel-rvq", frozenset({"audio"}), None, None, specs)
