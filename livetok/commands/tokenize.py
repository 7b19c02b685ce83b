"""``livetok tokenize``: media files -> a .ltk token file, through the streaming tokenizer.

Decoding and frame scaling run in a reader thread that hands frames to the tokenizer through a
bounded queue; a full queue blocks the reader (files are never dropped from), so decode and
tokenization overlap and memory stays bounded. On a CPU of 2 or more cores, ``livetok tokenize``
encodes full video batches in two more threads (at most two batches in flight) while audio and
packets go on in the calling one. The output is written atomically (livetok/outputs/atomic.py): to
a temporary file beside it, renamed into place only when every input was tokenized.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import queue
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from livetok.commands.rate_flag import token_fps_flag
from livetok.errors import OutputError
from livetok.media.decode import DecodeNotes, MediaFrame, decode
from livetok.outputs import atomic_output, describe_oserror
from livetok.outputs.interrupts import checkpoint
from livetok.streams.rate_decode import FileRate
from livetok.tokenizers.session import MediaTokenizer, PreparedVideo, Tokenizers
from livetok.wire import LtkWriter, TokenPacket

QUEUE_FRAMES = 32
BUILTIN = frozenset({"audio", "video"})  # the modalities the built-in kinds tokenize, by default both
_END = object()


@dataclass
class TokenizeReport:
    """What was written: packets per (source, modality, scale), and frames read per kind."""

    packets: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    frames: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)  # one line each, e.g. an input that ended early
    # With a token rate: video frames decoded or skipped, and how many of them were not tokenized
    # (``skipped``: by the rate; ``undecoded``: those of them the decoder skipped, a part of ``skipped``).
    rate: Counter[str] = field(default_factory=Counter)


def source_name(path: Path, taken: set[str]) -> str:
    """A file's stem, made unique among the inputs of one run."""
    name, n = path.stem or "input", 1
    while name in taken:
        n += 1
        name = f"{path.stem}-{n}"
    taken.add(name)
    return name


def prepared_frames(
    path: Path, tok: MediaTokenizer, notes: DecodeNotes | None = None, rate: FileRate | None = None
) -> Iterator[MediaFrame | PreparedVideo]:
    """Decode and scale in a background thread; yield in order on the caller's thread. ``rate``: the
    token rate, applied in that thread before a frame is scaled."""
    q: queue.Queue[object] = queue.Queue(maxsize=QUEUE_FRAMES)
    stop = threading.Event()

    def reader() -> None:
        try:
            for mf in decode(path, notes=notes, rate=rate):
                item = tok.prepare(mf)
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as err:  # handed to the consumer, which re-raises it
            q.put(err)

    thread = threading.Thread(target=reader, name=f"decode:{path.name}", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=5)


def encode_workers(toks: Tokenizers) -> int:
    """Threads that encode video batches in ``livetok tokenize``: 2 on a CPU of 2 or more cores, so
    that a core the decoder leaves idle encodes the next batch; else 0 (on the calling thread)."""
    return 2 if toks.video.device.type == "cpu" and (os.cpu_count() or 1) >= 2 else 0


def tokenize_file(
    path: Path, toks: Tokenizers, source: str, sink: LtkWriter | None, report: TokenizeReport, encoders: int = 0,
    token_fps: float | None = None, builtin: frozenset[str] = BUILTIN,
) -> list[TokenPacket]:
    """Tokenize one file; packets go to ``sink`` when given, else are returned. ``encoders``: threads
    that encode video batches (0: the calling thread does); the packets are the same either way.
    ``token_fps``: at most that many video frames per second of media time are tokenized, chosen as a
    live source with ``token_fps`` chooses them (docs/sources.md); None: every frame. ``builtin``: the
    modalities the built-in kinds tokenize (``toks.plugins`` all run)."""
    rate = FileRate(token_fps) if token_fps is not None else None
    if not encoders:
        return _tokenize_file(path, MediaTokenizer(toks, source, builtin=builtin), sink, report, rate)
    with ThreadPoolExecutor(encoders, thread_name_prefix=f"encode:{path.name}") as pool:
        return _tokenize_file(path, MediaTokenizer(toks, source, encoder=pool, in_flight=encoders, builtin=builtin),
                              sink, report, rate)


def _tokenize_file(path: Path, mt: MediaTokenizer, sink: LtkWriter | None, report: TokenizeReport,
                   rate: FileRate | None) -> list[TokenPacket]:
    kept: list[TokenPacket] = []

    def emit(packets: list[TokenPacket]) -> None:
        for p in packets:
            report.packets[(p.source, p.modality.name.lower(), p.stream_name)] += 1
            if sink is not None:
                sink.write(p)
            else:
                kept.append(p)

    notes = DecodeNotes()
    checkpoint()  # start-up (imports, codebooks) is done: an interrupt it swallowed stops us here
    for item in prepared_frames(path, mt, notes, rate):
        report.frames["video" if isinstance(item, PreparedVideo) else "audio"] += 1
        emit(mt.feed(item))
    emit(mt.flush())
    report.warnings += notes.warnings
    if rate is not None:
        st = rate.stats
        report.rate.update(captured=st.frames + st.skipped_by_rate, skipped=st.skipped_by_rate,
                           undecoded=st.undecoded)
    return kept


def tokenize_files(paths: list[Path], toks: Tokenizers, out: Path, token_fps: float | None = None,
                   builtin: frozenset[str] = BUILTIN) -> TokenizeReport:
    """Tokenize ``paths`` into one .ltk file. ``out`` is written atomically: on any error it is left
    as it was (an existing file keeps its bytes), and it may not be one of the inputs. ``token_fps``:
    each file's video at that token rate (:func:`tokenize_file`)."""
    for path in paths:
        if _same_file(path, out):
            raise OutputError(f"{out}: is also an input: refusing to overwrite it with tokens")
    encoders = encode_workers(toks)
    if toks.video.device.type == "cpu":
        # The reader thread decodes on its own core: torch on all cores would fight it for them; and
        # the encode threads make their torch calls at the same time, each with its share.
        torch.set_num_threads(max(1, ((os.cpu_count() or 1) - 1) // max(1, encoders)))
    report = TokenizeReport()
    taken: set[str] = set()
    with atomic_output(out) as tmp:
        try:
            with LtkWriter(tmp) as sink:
                for path in paths:
                    tokenize_file(path, toks, source_name(path, taken), sink, report, encoders, token_fps, builtin)
        except OSError as err:
            raise OutputError(f"{out}: cannot write it: {describe_oserror(err)}") from err
    return report


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def command(args: argparse.Namespace) -> int:
    """``livetok tokenize INPUT... -o OUT.ltk``: the packets written, per stream, on stderr."""
    from livetok.config import load_config
    from livetok.tokenizers.registry import load_plugins

    token_fps = token_fps_flag(args.token_fps)
    cfg = load_config(args.config)
    # Each input is a source fed by every configured tokenizer of its modalities, as a daemon's source
    # without a `tokenizers:` key of its own: the plug-ins' streams too, the built-in ones if listed.
    builtin = frozenset(m for m in ("audio", "video")
                        if any(e.kind in ("logmel-rvq", "patch-rvq") for e in cfg.tokenizers_of("", m)))
    toks = dataclasses.replace(Tokenizers.from_config(cfg.tokenizer), plugins=load_plugins(cfg))
    report = tokenize_files([Path(p) for p in args.inputs], toks, Path(args.output), token_fps, builtin)
    total = sum(report.packets.values())
    print(f"wrote {total} packets to {args.output}", file=sys.stderr)
    for (source, modality, scale), n in sorted(report.packets.items()):
        print(f"  {source} {modality} {scale}: {n}", file=sys.stderr)
    if token_fps is not None:
        r = report.rate
        print(f"  token rate {token_fps:g} fps: {r['captured'] - r['skipped']} of {r['captured']} video frames "
              f"tokenized ({r['skipped']} skipped by the rate, {r['undecoded']} of them never decoded)",
              file=sys.stderr)
    for w in report.warnings:  # an input that ended early: the tokens stand, exit 0 (docs/cli.md)
        print(f"livetok: warning: {w}", file=sys.stderr)
    return 0

