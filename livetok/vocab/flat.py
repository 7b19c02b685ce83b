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
    LAYOUT,
    MARKER,
    N_SPECIAL,
    PACKET_FLAGS,
    SPECIAL_NAMES,
    STEP_FLAG_OF_SPECIAL,
    STEP_FLAGS,
    STREAM_OF_MARKER,
    Special,
    StreamIds,
)
from livetok.wire import AlignedStep, Flag, Modality, Scale, StepFlag, TokenPacket


@dataclass(frozen=True)
class FlatPacket:
    """A packet as the ids describe it: ``codes`` [P, L] uint16, ``positions`` [P] uint16 or None
    (None: the whole grid in order)."""

    modality: Modality
    scale: Scale
    flags: Flag
    codes: np.ndarray
    positions: np.ndarray | None


@dataclass(frozen=True)
class FlatStep:
    """A step as the ids describe it."""

    flags: StepFlag
    packets: tuple[FlatPacket, ...]


class Flattening:
    """Flatten and unflatten over a vocabulary's tables (the vocabulary sets them)."""

    codebook_id: str
    size: int
    _level_offsets: dict[tuple[Modality, Scale], np.ndarray]
    _stream_of: np.ndarray  # per id: the index of its stream in _stream_list (-1: a special token)
    _level_of: np.ndarray  # per id: its level (-1: a position id)
    _stream_list: list[StreamIds]

    def stream(self, modality: Modality, scale: Scale) -> StreamIds:
        raise NotImplementedError

    def describe(self, token: int) -> str:
        raise NotImplementedError

    def flatten(self, step: AlignedStep, dtype: npt.DTypeLike = np.int32) -> np.ndarray:
        """One aligned step as a flat id sequence (docs/vocab.md, "A flattened step").

        Args:
            step: the step; its packets' codes are ``[P, L]`` uint16.
            dtype: the ids' integer type (int32 by default).

        Returns:
            ``[N]`` ids: ``<step>``, the step's flags, then each packet's marker, flags,
            ``<positions>`` when it lists positions, and its (position and) code ids.

        Raises:
            CodebookError: a packet from other codebooks, of a named stream, or whose grid,
                levels or codes do not fit these codebooks.
        """
        head = [int(Special.STEP)] + [int(s) for f, s in STEP_FLAGS if step.flags & f]
        parts: list[np.ndarray] = [np.asarray(head, dtype=np.int64)]
        for p in step.packets:
            self._flatten_packet(p, parts)
        return np.concatenate(parts).astype(dtype, copy=False)

    def flatten_packet(self, packet: TokenPacket,
                       dtype: npt.DTypeLike = np.int32) -> np.ndarray:
        """One token packet (its marker, flags and codes) as ids [N], as inside a flattened step."""
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

    def _flatten_packet(self, p: TokenPacket, parts: list[np.ndarray]) -> None:
        if p.scale is None:
            raise CodebookError(
                f"packet of {p.source!r} is of the named stream {p.stream!r}: "
                f"this vocabulary has only the fine and coarse streams")
        key = (p.modality, p.scale)
        sid = self.stream(p.modality, p.scale)
        shape = sid.shape
        if p.codebook_id != self.codebook_id:
            raise CodebookError(
                f"packet of {p.source!r} {shape.key} is from codebooks {p.codebook_id}, "
                f"this vocabulary is for {self.codebook_id}")
        if p.grid != shape.grid:
            raise CodebookError(f"packet of {p.source!r} {shape.key} has grid {p.grid}, the codebooks {shape.grid}")
        codes = p.codes
        levels = codes.shape[1]
        if levels > shape.levels:
            raise CodebookError(
                f"packet of {p.source!r} {shape.key} has {levels} levels, the codebooks {shape.levels}")
        if codes.size and int(codes.max()) >= shape.codebook_size:
            raise CodebookError(
                f"packet of {p.source!r} {shape.key} has code {int(codes.max())}, "
                f"the codebooks {shape.codebook_size} codes per level")
        head = [int(MARKER[key])] + [int(s) for f, s in PACKET_FLAGS if p.flags & f]
        if p.positions is not None:
            head.append(int(Special.POSITIONS))
        parts.append(np.asarray(head, dtype=np.int64))
        # [P, L] code ids: one broadcast add of the per-level offsets
        ids = codes.astype(np.int64) + self._level_offsets[key][:levels]
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
            DecodeError: an id outside the vocabulary, ids that do not start with ``<step>``, or a
                malformed packet.
        """
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        arr = arr[arr != Special.PAD]
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= self.size):
            bad = int(arr[(arr < 0) | (arr >= self.size)][0])
            raise DecodeError(f"token id {bad} is outside the vocabulary (size {self.size})")
        if arr.size and arr[0] != Special.STEP:
            raise DecodeError(f"token ids must start with <step>, not {self.describe(int(arr[0]))}")
        specials = np.flatnonzero(arr < N_SPECIAL)
        steps: list[FlatStep] = []
        step_flags = StepFlag.NONE
        packets: list[FlatPacket] = []
        current: list[Any] | None = None  # [modality, scale, flags, has_positions] of the open packet
        n = len(specials)
        for k in range(n):
            i = int(specials[k])
            tok = int(arr[i])
            body_end = int(specials[k + 1]) if k + 1 < n else arr.size
            body = arr[i + 1:body_end]
            if tok == Special.STEP:
                if k:
                    self._close(current, np.zeros(0, np.int64), packets)
                    steps.append(FlatStep(step_flags, tuple(packets)))
                step_flags, packets, current = StepFlag.NONE, [], None
            elif tok in STEP_FLAG_OF_SPECIAL:
                if current is not None:
                    raise DecodeError(f"step flag {SPECIAL_NAMES[Special(tok)]} after a packet started")
                step_flags |= STEP_FLAG_OF_SPECIAL[tok]
            elif tok in STREAM_OF_MARKER:
                self._close(current, np.zeros(0, np.int64), packets)
                mod, sc = STREAM_OF_MARKER[tok]
                current = [mod, sc, Flag.NONE, False]
            elif tok in FLAG_OF_SPECIAL or tok == Special.POSITIONS:
                if current is None:
                    raise DecodeError(f"{self.describe(tok)} outside a packet")
                if tok == Special.POSITIONS:
                    current[3] = True
                else:
                    current[2] |= FLAG_OF_SPECIAL[tok]
            else:
                raise DecodeError(f"{self.describe(tok)} is not used by layout {LAYOUT}")
            if body.size:
                if current is None:
                    raise DecodeError(f"{body.size} code ids outside any packet")
                self._close(current, body, packets)
                current = None
        if arr.size:
            self._close(current, np.zeros(0, np.int64), packets)
            steps.append(FlatStep(step_flags, tuple(packets)))
        return steps

    def _close(self, current: list[Any] | None, body: np.ndarray, packets: list[FlatPacket]) -> None:
        """Finish the open packet with ``body`` (its code and position ids) and append it."""
        if current is None:
            return
        mod, sc, flags, has_pos = current
        sid = self.stream(mod, sc)
        shape = sid.shape
        stream_index = self._stream_list.index(sid)
        if body.size and np.any(self._stream_of[body] != stream_index):
            raise DecodeError(f"a {shape.key} packet holds ids of another stream")
        levels_of = self._level_of[body]
        if has_pos:
            n_pos = int(np.count_nonzero(levels_of == -1))
            if n_pos == 0:
                if body.size:
                    raise DecodeError(f"a {shape.key} packet with <positions> has codes but no position")
                packets.append(FlatPacket(mod, sc, flags, np.zeros((0, 0), np.uint16), np.zeros(0, np.uint16)))
                return
            if body.size % n_pos:
                raise DecodeError(f"a {shape.key} packet's {body.size} ids do not split into {n_pos} positions")
            width = body.size // n_pos
            rows = body.reshape(n_pos, width)
            expect = np.arange(-1, width - 1, dtype=np.int8)
            if not np.array_equal(levels_of.reshape(n_pos, width), np.broadcast_to(expect, rows.shape)):
                raise DecodeError(f"a {shape.key} packet's ids are not position, level 0, level 1, ... repeated")
            positions = (rows[:, 0] - sid.position_offset).astype(np.uint16)
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
        levels = codes.shape[1]
        out = (codes - self._level_offsets[(mod, sc)][:levels]).astype(np.uint16)
        packets.append(FlatPacket(mod, sc, flags, out, positions))
