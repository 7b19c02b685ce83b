"""The joint vocabulary: one integer id space for every token livetok produces, so that an
aligned step becomes one flat sequence of ids for a language model, and back.

Layout (docs/vocab.md has the table for the packaged codebooks):

* ids 0..31 are special tokens (:class:`Special`): padding, step start, one marker per
  (modality, scale) stream, one per packet flag, ``<positions>``, one per step flag; 14..31 are
  reserved and never emitted by this version;
* then one block per stream, in the fixed order audio/fine, audio/coarse, video/fine,
  video/coarse (streams a codebook set lacks take no ids): ``levels x codebook_size`` code ids,
  level-major (level ``l``, code ``c`` -> ``codes_start + l * codebook_size + c``), followed by
  ``rows x cols`` position ids (grid cell ``p`` -> ``positions_start + p``).

The layout depends only on the codebooks' fitted levels, sizes and grids (a :class:`VocabSpec`),
never on run-time settings, so it is the same for every run with a given ``codebook_id``; a
daemon that sends fewer levels than were fitted uses the first ones. The spec travels in every
source's retained meta (``livetok.bus.meta``), so a consumer rebuilds the exact table.

A flattened step::

    <step> [<missing_audio>] [<missing_video>] [<late>]
      then per packet, in the step's order:
      <audio/fine|...> [<keyframe>] [<delta>] [<gap>] [<discontinuity>] [<positions>]
        full grid:        codes of cell 0 (levels 0..L-1), codes of cell 1, ...
        with positions:   position id, its L code ids, next position id, its codes, ...

``<positions>`` marks a packet that lists its grid cells (delta packets, and empty gap packets);
without it the packet covers the whole grid in order. Timestamps, sequence numbers, names and
vectors are not tokens; :meth:`Vocabulary.unflatten` gives back modality, scale, flags, positions
and codes of every packet (a packet with no positions comes back with codes of shape [0, 0]).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from livetok.errors import CodebookError, DecodeError
from livetok.vocab.flat import Flattening
from livetok.vocab.layout import (
    LAYOUT,
    N_SPECIAL,
    SPECIAL_NAMES,
    STREAM_ORDER,
    Special,
    StreamIds,
    StreamShape,
    VocabRange,
    VocabSpec,
    grid_of,
    parse_stream_key,
    stream_key,
)
from livetok.wire import Modality, Scale


class _CodebookLike(Protocol):
    """What :meth:`Vocabulary.from_codebooks` reads of a ``livetok.tokenizers.CodebookSet``."""

    @property
    def frontend(self) -> Mapping[str, Mapping[str, Any]]: ...
    @property
    def scales(self) -> Mapping[str, Any]: ...
    @property
    def codebook_id(self) -> str: ...


class Vocabulary(Flattening):
    """The joint id space of one codebook set; build it with :meth:`from_codebook_file`,
    :meth:`from_codebooks`, :meth:`from_dict` (meta) or from a :class:`VocabSpec`."""

    def __init__(self, spec: VocabSpec) -> None:
        self.spec = spec
        self.codebook_id = spec.codebook_id
        self._streams: dict[tuple[Modality, Scale], StreamIds] = {}
        self._level_offsets: dict[tuple[Modality, Scale], np.ndarray] = {}
        start = N_SPECIAL
        for shape in spec.streams:
            offsets = tuple(start + level * shape.codebook_size for level in range(shape.levels))
            start += shape.levels * shape.codebook_size
            ids = StreamIds(shape, offsets, start)
            start += shape.cells
            self._streams[(shape.modality, shape.scale)] = ids
            self._level_offsets[(shape.modality, shape.scale)] = np.asarray(offsets, dtype=np.int64)
        self.size = start
        # per-id lookup tables for unflatten: which stream a code/position id is, and its level
        # (-1: a position id). Small: one int8 + one int8 per id.
        self._stream_of = np.full(self.size, -1, dtype=np.int8)
        self._level_of = np.full(self.size, -2, dtype=np.int8)
        self._stream_list = list(self._streams.values())
        for i, sid in enumerate(self._stream_list):
            k = sid.shape.codebook_size
            for level, off in enumerate(sid.code_offsets):
                self._stream_of[off:off + k] = i
                self._level_of[off:off + k] = level
            self._stream_of[sid.position_offset:sid.position_offset + sid.shape.cells] = i
            self._level_of[sid.position_offset:sid.position_offset + sid.shape.cells] = -1

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_codebooks(cls, cbs: _CodebookLike) -> Vocabulary:
        """From a loaded ``CodebookSet`` (its fitted levels and sizes, its front end's grids)."""
        shapes = []
        for key, arrays in cbs.scales.items():
            mod, _, sc = key.partition(".")
            levels, size = (int(n) for n in arrays.codebooks.shape[:2])
            shapes.append(StreamShape(Modality[mod.upper()], Scale[sc.upper()], levels, size,
                                      grid_of(cbs.frontend, mod, sc)))
        return cls(VocabSpec(cbs.codebook_id, tuple(shapes)))

    @classmethod
    def from_codebook_file(cls, path: str | Path | None = None) -> Vocabulary:
        """From a codebook file's header alone (no torch, no safetensors): its recorded
        ``codebook_id``, front end and tensor shapes.

        Args:
            path: a ``.safetensors`` codebook file; None: the codebooks packaged with livetok
                (the default). A bare codebook id is not resolved here: an earlier packaged set
                is ``livetok/codebooks/ID.safetensors``.

        Returns:
            The vocabulary of those codebooks.

        Raises:
            CodebookError: the file cannot be read or is not a livetok codebook file.
        """
        p = Path(str(resources.files("livetok") / "codebooks" / "default.safetensors")) if path is None else Path(path)
        try:
            with open(p, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                if n > 100_000_000:
                    raise ValueError("header length is implausible")
                header = json.loads(f.read(n))
            meta = header["__metadata__"]
            frontend = json.loads(meta["frontend"])
            codebook_id = meta["codebook_id"]
            shapes = []
            for mod, sc in ((m.name.lower(), s.name.lower()) for m, s in STREAM_ORDER):
                entry = header.get(f"{mod}.{sc}.codebooks")
                if entry is None:
                    continue
                levels, size = (int(n) for n in entry["shape"][:2])
                shapes.append(StreamShape(Modality[mod.upper()], Scale[sc.upper()], levels, size,
                                          grid_of(frontend, mod, sc)))
        except (OSError, ValueError, KeyError, TypeError, struct.error) as err:
            raise CodebookError(f"{p}: not a readable livetok codebook file ({err})") from err
        return cls(VocabSpec(codebook_id, tuple(shapes)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form published in meta: the layout name, the spec, and the table it gives."""
        return {
            "layout": LAYOUT,
            "codebook_id": self.codebook_id,
            "size": self.size,
            "streams": {s.key: {"levels": s.levels, "codebook_size": s.codebook_size, "grid": list(s.grid)}
                        for s in self.spec.streams},
            "special": {SPECIAL_NAMES[s]: int(s) for s in Special},
            "ranges": [{"name": r.name, "start": r.start, "size": r.size} for r in self.table()],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Vocabulary:
        """Rebuild from :meth:`to_dict`'s form (meta's ``vocab``).

        Args:
            doc: the parsed JSON object.

        Returns:
            The vocabulary, equal to the publisher's.

        Raises:
            DecodeError: an unknown layout, a malformed document, or a published table that
                disagrees with the one this version derives from the spec.
        """
        try:
            if doc["layout"] != LAYOUT:
                raise DecodeError(f"vocabulary layout {doc['layout']!r} is not {LAYOUT!r} (upgrade livetok)")
            shapes = []
            for key, s in doc["streams"].items():
                mod, sc = parse_stream_key(key)
                rows, cols = s["grid"]
                shapes.append(StreamShape(mod, sc, int(s["levels"]), int(s["codebook_size"]), (int(rows), int(cols))))
            vocab = cls(VocabSpec(str(doc["codebook_id"]), tuple(shapes)))
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DecodeError(f"vocabulary description is malformed: {err!r}") from err
        if "size" in doc and doc["size"] != vocab.size:
            raise DecodeError(f"vocabulary size {doc['size']} disagrees with its spec ({vocab.size})")
        if "ranges" in doc and doc["ranges"] != vocab.to_dict()["ranges"]:
            raise DecodeError("vocabulary table disagrees with its spec (another layout version?)")
        return vocab

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Vocabulary:
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise DecodeError(f"vocabulary JSON is not valid: {err}") from err
        if not isinstance(doc, dict):
            raise DecodeError("vocabulary JSON is not an object")
        return cls.from_dict(doc)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"Vocabulary(codebook_id={self.codebook_id!r}, size={self.size})"

    # -- the table ---------------------------------------------------------------------------------

    def stream(self, modality: Modality, scale: Scale) -> StreamIds:
        """Offsets of one stream; CodebookError when these codebooks have no such stream."""
        try:
            return self._streams[(modality, scale)]
        except KeyError:
            raise CodebookError(
                f"codebooks {self.codebook_id} have no {stream_key(modality, scale)} stream") from None

    @property
    def streams(self) -> tuple[StreamIds, ...]:
        return tuple(self._stream_list)

    def code_id(self, modality: Modality, scale: Scale, level: int, code: int) -> int:
        sid = self.stream(modality, scale)
        if not (0 <= level < len(sid.code_offsets) and 0 <= code < sid.shape.codebook_size):
            raise ValueError(f"level {level}, code {code} outside {sid.shape.key}")
        return sid.code_offsets[level] + code

    def position_id(self, modality: Modality, scale: Scale, cell: int) -> int:
        sid = self.stream(modality, scale)
        if not 0 <= cell < sid.shape.cells:
            raise ValueError(f"cell {cell} outside the {sid.shape.grid} grid of {sid.shape.key}")
        return sid.position_offset + cell

    def table(self) -> list[VocabRange]:
        """Every range of ids with its name, in id order (special tokens one by one)."""
        rows = [VocabRange(SPECIAL_NAMES[s], int(s), 1) for s in Special]
        rows.append(VocabRange("<reserved>", len(Special), N_SPECIAL - len(Special)))
        for sid in self._stream_list:
            key, k = sid.shape.key, sid.shape.codebook_size
            rows += [VocabRange(f"{key}/level{level}", off, k) for level, off in enumerate(sid.code_offsets)]
            rows.append(VocabRange(f"{key}/position", sid.position_offset, sid.shape.cells))
        return rows

    def describe(self, token: int) -> str:
        """A readable name for one id: ``<step>``, ``video/fine/level2:517``, ``video/fine/position:13``.

        Args:
            token: an id of this vocabulary.

        Raises:
            ValueError: the id is outside the vocabulary.
        """
        t = int(token)
        if 0 <= t < len(Special):
            return SPECIAL_NAMES[Special(t)]
        if 0 <= t < N_SPECIAL:
            return f"<reserved{t}>"
        if not 0 <= t < self.size:
            raise ValueError(f"id {t} is outside the vocabulary (size {self.size})")
        sid = self._stream_list[int(self._stream_of[t])]
        level = int(self._level_of[t])
        if level < 0:
            return f"{sid.shape.key}/position:{t - sid.position_offset}"
        return f"{sid.shape.key}/level{level}:{t - sid.code_offsets[level]}"
