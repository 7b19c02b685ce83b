"""The engine's plug-in tokenizers: per source its tracks, and one batched call per tokenizer.

Within one engine call, every source's jobs for a tokenizer go into one call (:class:`Batch`). A
source that brings several audio blocks to one call is taken in rounds (its r-th block in round r):
a stream's jobs are run and emitted before its next block is taken, which a stateful model needs
(it takes nothing while its jobs are out) and an interrupted stream's flush relies on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from livetok.streams.types import AudioCapture
from livetok.tokenizers.kinds.base import Plugin
from livetok.tokenizers.plugin_track import PluginAudioTrack, PluginVideoTrack, Track, run_tokenizer
from livetok.wire import Clock, TokenPacket


class Batch:
    """Jobs of any tokenizers and sources, each with an owner key (a block's or a frame's index)."""

    def __init__(self, plugins: dict[str, Plugin]) -> None:
        self.plugins = plugins
        self.work: dict[str, list[tuple[Track, Any, int]]] = {}

    def add(self, track: Track, jobs: Iterable[Any], owner: int) -> None:
        for job in jobs:
            self.work.setdefault(track.plugin.name, []).append((track, job, owner))

    def run(self, errors: list[tuple[str, str]]) -> dict[int, list[TokenPacket]]:
        """Each tokenizer's jobs in one call; packets by owner. A failed call: ``(tokenizer, line)``
        in ``errors`` (its jobs abandoned), the other tokenizers unaffected."""
        out: dict[int, list[TokenPacket]] = {}
        for name, items in self.work.items():
            packets, err = run_tokenizer(self.plugins[name], [(t, j) for t, j, _ in items])
            if err is not None:  # the model's failure is counted, never the daemon's end
                errors.append((name, f"{type(err).__name__}: {err}"))
            for (_, _, owner), ps in zip(items, packets, strict=True):
                out.setdefault(owner, []).extend(ps)
        self.work = {}
        return out


def audio_tracks(plugins: dict[str, Plugin], names: list[str], source: str) -> list[PluginAudioTrack]:
    return [PluginAudioTrack(plugins[n], source, Clock.MEDIA) for n in names if n in plugins]


def video_tracks(plugins: dict[str, Plugin], names: list[str], source: str) -> list[PluginVideoTrack]:
    return [PluginVideoTrack(plugins[n], source, Clock.MEDIA) for n in names if n in plugins]


def rounds(sources: list[str | None]) -> list[list[int]]:
    """Indices of ``sources`` (None: skipped) in rounds: round r holds each source's r-th item."""
    seen: dict[str, int] = {}
    out: list[list[int]] = []
    for i, s in enumerate(sources):
        if s is None:
            continue
        r = seen.get(s, 0)
        seen[s] = r + 1
        if r == len(out):
            out.append([])
        out[r].append(i)
    return out


def end_audio(plugins: dict[str, Plugin], tracks: list[PluginAudioTrack],
              errors: list[tuple[str, str]]) -> list[TokenPacket]:
    """The tracks' streams ended (every received sample into a step): their last packets."""
    batch = Batch(plugins)
    for t in tracks:
        batch.add(t, t.end(), 0)
    return batch.run(errors).get(0, [])


def plugin_audio(plugins: dict[str, Plugin], caps: list[AudioCapture],
                 tracks: Callable[[str], list[PluginAudioTrack]], errors: list[tuple[str, str]]
                 ) -> dict[int, list[TokenPacket]]:
    """The plug-in tokenizers' packets of every block (by its index in ``caps``), one batched call
    per tokenizer and round; key ``-1 - i`` present: block i restarted a plug-in stream (input lost)."""
    keys = [cap.source if tracks(cap.source) else None for cap in caps]
    result: dict[int, list[TokenPacket]] = {}
    for idx in rounds(keys):
        batch = Batch(plugins)
        for i in idx:
            cap = caps[i]
            for t in tracks(cap.source):
                restarts = t.restarts
                batch.add(t, t.take(cap.samples, cap.rate, cap.media_ns, discontinuity=cap.discontinuity,
                                    overflow=cap.overflow), i)
                if t.restarts != restarts:
                    result[-1 - i] = []
        result.update(batch.run(errors))
    return result
