"""Steps as flat id sequences and back: what :class:`~livetok.vocab.vocabulary.Vocabulary` does with
its table (the layout: the package's docstring, docs/vocab.md).

:class:`Flattening` is the vocabulary's flatten/unflatten half; it reads the tables the vocabulary
builds (declared below) and is never used alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from livetok.errors import CodebookError, DecodeError
from livetok.vocab.layout import (
    FLAG_OF_SPECIAL,
    LAYOUT_V2,
    PACKET_FLAGS,
    SPECIAL_NAMES,
    STEP_FLAG_OF_SPECIAL,
    STEP_FLAGS,
    Special,
    StreamIds,
)
from livetok.wire import AlignedStep, Flag, Modality, Scale, StepFlag, TokenPacket

# what an id is, in Flattening._level_of (>= 0: a code id of that level)
IS_POSITION = -1
IS_SPECIAL = -2  # one of the 32 special ids (reserved ones included)
IS_MARKER = -3  # a named stream's marker (the first id of its block)
IS_TEXT = -4  # below the base: the text tokenizer's


@dataclass(frozen=True)
class FlatPacket:
    """A packet as the ids describe it: ``codes`` [P, L] uint16, ``positions`` [P] uint16 or None
    (None: the whole grid in order). A named stream's packet has ``scale`` None and its ``stream``
    name, as :class:`~livetok.wire.TokenPacket`."""

    modality: Modality
    scale: Scale | None
    flags: Flag
    codes: np.ndarray
    positions: np.ndarray | None
    stream: str = ""

    @property
    def stream_name(self) -> str:
        """"fine", "coarse" or the named stream's name."""
        return self.stream if self.scale is None else self.scale.name.lower()


@dataclass(frozen=True)
class FlatStep:
    """A step as the ids describe it."""

    flags: StepFlag
    packets: tuple[FlatPacket, ...]


class Flattening:
    """Flatten and unflatten over a vocabulary's tables (the vocabulary sets them)."""

    codebook_id: str
    size: int
    base: int
    _index_of: dict[tuple[Modality, str], int]  # (modality, stream name) -> index in _stream_list
    _level_offsets: list[np.ndarray]  # per stream index: its code offsets [L] int64
    _stream_of: np.ndarray  # per id: the index of its stream in _stream_list (-1: none)
    _level_of: np.ndarray  # per id: its level, or IS_POSITION, IS_SPECIAL, IS_MARKER, IS_TEXT
    _stream_list: list[StreamIds]
    _builtin_marker: dict[int, int]  # special id of a built-in marker -> its stream index

    def describe(self, token: int) -> str:
        raise NotImplementedError

    def flatten(self, step: AlignedStep, dtype: npt.DTypeLike = np.int32) -> np.ndarray:
        """One aligned step as a flat id sequence.

        Args:
            step: the step; its packets are flattened in its order.
            dtype: of the result (int32 by default).

        Returns:
            ids [N].

        Raises:
            CodebookError: a packet is from other codebooks, of a stream this vocabulary lacks, or
                its grid, levels or codes do not fit the codebooks.
        """
        head = [self.base + int(Special.STEP)] + [self.base + int(s) for f, s in STEP_FLAGS if step.flags & f]
        parts: list[np.ndarray] = [np.asarray(head, dtype=np.int64)]
        for p in step.packets:
            self._flatten_packet(p, parts)
        return np.concatenate(parts).astype(dtype, copy=False)

    def flatten_packet(self, packet: TokenPacket,
                       dtype: npt.DTypeLike = np.int32) -> np.ndarray:
        """One token packet (its marker, flags and codes) as ids [N], as inside a flattened step.

        Raises:
            CodebookError: as :meth:`flatten`.
        """
        parts: list[np.ndarray] = []
        self._flatten_packet(packet, parts)
        return np.concatenate(parts).astype(dtype, copy=False)

    def flatten_steps(self, steps: Iterable[AlignedStep],
                      dtype: npt.DTypeLike = np.int32) -> np.ndarray:
        """Several steps back to back.

        Args:
            steps: the steps, in order.
            dtype: the ids' integer type (int32 by default).

        Returns:
            ``[N]`` ids, each step as :meth:`flatten` makes it (``[0]`` for no steps).

        Raises:
            CodebookError: as :meth:`flatten`.
        """
        parts = [self.flatten(s, np.int64) for s in steps]
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)

    def _packet_stream(self, p: TokenPacket) -> int:
        """The index of ``p``'s stream, or CodebookError naming what does not fit."""
        index = self._index_of.get((p.modality, p.stream_name))
        if index is None:
            what = f"{p.modality.name.lower()}/{p.stream_name}"
            if p.scale is None and not any(s.shape.scale is None for s in self._stream_list):
                raise CodebookError(
                    f"packet of {p.source!r} is of the named stream {p.stream!r}: "
                    f"this vocabulary has only the fine and coarse streams (a named stream needs {LAYOUT_V2})")
            raise CodebookError(f"vocabulary of codebooks {self.codebook_id} has no {what} stream")
        shape = self._stream_list[index].shape
        if p.codebook_id != shape.codebook_id:
            raise CodebookError(
                f"packet of {p.source!r} {shape.key} is from codebooks {p.codebook_id}, "
                f"this vocabulary's {shape.key} is for {shape.codebook_id}")
        if p.grid != shape.grid:
            raise CodebookError(f"packet of {p.source!r} {shape.key} has grid {p.grid}, the codebooks {shape.grid}")
        levels = p.codes.shape[1]
        if levels > shape.levels:
            raise CodebookError(
                f"packet of {p.source!r} {shape.key} has {levels} levels, the codebooks {shape.levels}")
        if p.codes.size and int(p.codes.max()) >= shape.codebook_size:
            raise CodebookError(
                f"packet of {p.source!r} {shape.key} has code {int(p.codes.max())}, "
                f"the codebooks {shape.codebook_size} codes per level")
        return index

    def _flatten_packet(self, p: TokenPacket, parts: list[np.ndarray]) -> None:
        index = self._packet_stream(p)
        sid = self._stream_list[index]
        head = [sid.marker] + [self.base + int(s) for f, s in PACKET_FLAGS if p.flags & f]
        if p.positions is not None:
            head.append(self.base + int(Special.POSITIONS))
        parts.append(np.asarray(head, dtype=np.int64))
        # [P, L] code ids: one broadcast add of the per-level offsets
        ids = p.codes.astype(np.int64) + self._level_offsets[index][:p.codes.shape[1]]
        if p.positions is not None:
            pos = p.positions.astype(np.int64) + sid.position_offset
            ids = np.concatenate([pos[:, None], ids], axis=1)
        parts.append(ids.reshape(-1))

    # -- unflatten ---------------------------------------------------------------------------------

    def unflatten(self, ids: Sequence[int] | np.ndarray) -> FlatStep:
        """The one step ``ids`` hold, as :meth:`flatten` made it.

        Args:
            ids: ``[N]`` token ids; ``<pad>`` anywhere is ignored.

        Returns:
            The step's flags and packets (codes ``[P, L]`` uint16, positions ``[P]`` or None).

        Raises:
            DecodeError: the ids are not exactly one well-formed step.
        """
        steps = self.unflatten_steps(ids)
        if len(steps) != 1:
            raise DecodeError(f"token ids hold {len(steps)} steps, expected exactly 1")
        return steps[0]

    def unflatten_steps(self, ids: Sequence[int] | np.ndarray) -> list[FlatStep]:
        """Every step in ``ids``.

        Args:
            ids: ``[N]`` token ids, steps back to back; ``<pad>`` anywhere is ignored.

        Returns:
            The steps in order, each as :meth:`unflatten` gives it.

        Raises:
            DecodeError: an id outside the vocabulary (a text id included: see ``Vocabulary.split``),
                ids that do not start with ``<step>``, or a malformed packet.
        """
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        arr = arr[arr != self.base + Special.PAD]
        if arr.size and (int(arr.min()) < self.base or int(arr.max()) >= self.size):
            bad = int(arr[(arr < self.base) | (arr >= self.size)][0])
            where = "a text id, below the base" if 0 <= bad < self.base else "outside the vocabulary"
            raise DecodeError(f"token id {bad} is {where} (size {self.size}, base {self.base})")
        if arr.size and arr[0] != self.base + Special.STEP:
            raise DecodeError(f"token ids must start with <step>, not {self.describe(int(arr[0]))}")
        return _Reader(self, arr).steps()

    def _packet_start(self, token: int) -> int | None:
        """The stream index whose packet ``token`` starts, or None when it is no marker."""
        if self._level_of[token] == IS_MARKER:
            return int(self._stream_of[token])
        return self._builtin_marker.get(token - self.base)

    def _close(self, current: list[Any] | None, body: np.ndarray, packets: list[FlatPacket]) -> None:
        """Finish the open packet with ``body`` (its code and position ids) and append it."""
        if current is None:
            return
        index, flags, has_pos = current
        sid = self._stream_list[index]
        shape = sid.shape
        if body.size and np.any(self._stream_of[body] != index):
            raise DecodeError(f"a {shape.key} packet holds ids of another stream")
        levels_of = self._level_of[body]
        if has_pos:
            n_pos = int(np.count_nonzero(levels_of == IS_POSITION))
            if n_pos == 0:
                if body.size:
                    raise DecodeError(f"a {shape.key} packet with <positions> has codes but no position")
                packets.append(_flat(shape, flags, np.zeros((0, 0), np.uint16), np.zeros(0, np.uint16)))
                return
            if body.size % n_pos:
                raise DecodeError(f"a {shape.key} packet's {body.size} ids do not split into {n_pos} positions")
            width = body.size // n_pos
            rows = body.reshape(n_pos, width)
            expect = np.arange(-1, width - 1, dtype=np.int8)
            if not np.array_equal(levels_of.reshape(n_pos, width), np.broadcast_to(expect, rows.shape)):
                raise DecodeError(f"a {shape.key} packet's ids are not position, level 0, level 1, ... repeated")
            positions: np.ndarray | None = (rows[:, 0] - sid.position_offset).astype(np.uint16)
            codes = rows[:, 1:]
        else:
            cells = shape.cells
            if body.size % cells:
                raise DecodeError(f"a {shape.key} full-grid packet has {body.size} ids, not a multiple of {cells}")
            width = body.size // cells
            codes = body.reshape(cells, width)
            expect = np.arange(width, dtype=np.int8)
            if not np.array_equal(levels_of.reshape(cells, width), np.broadcast_to(expect, codes.shape)):
                raise DecodeError(f"a {shape.key} packet's ids are not level 0, level 1, ... per position")
            positions = None
        out = (codes - self._level_offsets[index][:codes.shape[1]]).astype(np.uint16)
        packets.append(_flat(shape, flags, out, positions))


def _flat(shape: Any, flags: Flag, codes: np.ndarray, positions: np.ndarray | None) -> FlatPacket:
    return FlatPacket(shape.modality, shape.scale, flags, codes, positions, shape.name)


class _Reader:
    """One pass over well-bounded ids (base..size-1, PAD removed, starting with <step>): the
    special and marker ids split them; the code and position ids between belong to the open packet."""

    def __init__(self, flat: Flattening, arr: np.ndarray) -> None:
        self.flat = flat
        self.arr = arr
        self.out: list[FlatStep] = []
        self.step_flags = StepFlag.NONE
        self.packets: list[FlatPacket] = []
        self.current: list[Any] | None = None  # [stream index, flags, has_positions] of the open packet

    def steps(self) -> list[FlatStep]:
        flat, arr = self.flat, self.arr
        heads = np.flatnonzero(flat._level_of[arr] <= IS_SPECIAL)
        n = len(heads)
        for k in range(n):
            i = int(heads[k])
            body = arr[i + 1:int(heads[k + 1]) if k + 1 < n else arr.size]
            self._token(int(arr[i]), k)
            if body.size:
                if self.current is None:
                    raise DecodeError(f"{body.size} code ids outside any packet")
                flat._close(self.current, body, self.packets)
                self.current = None
        if arr.size:
            self._end_step()
        return self.out

    def _end_step(self) -> None:
        self.flat._close(self.current, np.zeros(0, np.int64), self.packets)
        self.out.append(FlatStep(self.step_flags, tuple(self.packets)))

    def _token(self, tok: int, k: int) -> None:
        flat = self.flat
        rel = tok - flat.base
        stream = flat._packet_start(tok)
        if rel == Special.STEP:
            if k:
                self._end_step()
            self.step_flags, self.packets, self.current = StepFlag.NONE, [], None
        elif rel in STEP_FLAG_OF_SPECIAL:
            if self.current is not None:
                raise DecodeError(f"step flag {SPECIAL_NAMES[Special(rel)]} after a packet started")
            self.step_flags |= STEP_FLAG_OF_SPECIAL[rel]
        elif stream is not None:
            flat._close(self.current, np.zeros(0, np.int64), self.packets)
            self.current = [stream, Flag.NONE, False]
        elif rel in FLAG_OF_SPECIAL or rel == Special.POSITIONS:
            if self.current is None:
                raise DecodeError(f"{flat.describe(tok)} outside a packet")
            if rel == Special.POSITIONS:
                self.current[2] = True
            else:
                self.current[1] |= FLAG_OF_SPECIAL[rel]
        else:
            raise DecodeError(f"{flat.describe(tok)} is not used by this vocabulary")
