"""The joint vocabulary: one integer id space for every token livetok produces, so that an
aligned step becomes one flat sequence of ids for a language model, and back.

Layout (docs/vocab.md has the table for the packaged codebooks):

* ids 0..31 are special tokens (:class:`Special`): padding, step start, one marker per
  (modality, scale) stream, one per packet flag, ``<positions>``, one per step flag; 14..31 are
  reserved and never emitted by this version;
* then one block per stream, in the fixed order audio/fine, audio/coarse, video/fine,
  video/coarse (streams a codebook set lacks take no ids): ``levels x codebook_size`` code ids,
  level-major (level ``l``, code ``c`` -> ``codes_start + l * codebook_size + c``), followed by
  ``rows x cols`` position ids (grid cell ``p`` -> ``positions_start + p``);
* layout 2 (``livetok-vocab/2``) only: then one block per named stream (a plug-in tokenizer's), in
  the meta's order: its marker id, then its code ids and position ids as above. With a ``base``
  (a text tokenizer's size), every id above is shifted by it and ids ``0 .. base - 1`` are text.

The layout depends only on the codebooks' fitted levels, sizes and grids (a :class:`VocabSpec`),
never on run-time settings, so it is the same for every run with a given ``codebook_id``; a
daemon that sends fewer levels than were fitted uses the first ones. The spec travels in every
source's retained meta (``livetok.bus.meta``), so a consumer rebuilds the exact table.

A flattened step::

    <step> [<missing_audio>] [<missing_video>] [<late>]
      then per packet, in the step's order:
      <audio/fine|...|audio/units> [<keyframe>] [<delta>] [<gap>] [<discontinuity>] [<positions>]
        full grid:        codes of cell 0 (levels 0..L-1), codes of cell 1, ...
        with positions:   position id, its L code ids, next position id, its codes, ...

``<positions>`` marks a packet that lists its grid cells (delta packets, and empty gap packets);
without it the packet covers the whole grid in order. Timestamps, sequence numbers, names and
vectors are not tokens; :meth:`Vocabulary.unflatten` gives back modality, scale (or stream name),
flags (all but the wire's GREEDY, which has no token), positions and codes of every packet (a
packet with no positions comes back with codes of shape [0, 0]). :meth:`Vocabulary.split` takes
text and steps apart again.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from livetok.errors import CodebookError, DecodeError
from livetok.vocab.flat import IS_MARKER, IS_POSITION, IS_SPECIAL, IS_TEXT, FlatStep, Flattening
from livetok.vocab.layout import (
    ADDED_TOKENS,
    LAYOUT,
    LAYOUT_V2,
    LAYOUTS,
    MARKER,
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
    """The joint id space of one codebook set (and of the named streams of plug-in tokenizers);
    build it with :meth:`from_codebook_file`, :meth:`from_codebooks`, :meth:`from_dict` (meta) or
    from a :class:`VocabSpec`; :meth:`with_base` places it after a text tokenizer's ids."""

    def __init__(self, spec: VocabSpec) -> None:
        self.spec = spec
        self.codebook_id = spec.codebook_id
        self.base = spec.base
        self._stream_list = []
        self._level_offsets = []
        start = spec.base + N_SPECIAL
        for shape in spec.streams:
            if shape.scale is None:
                marker, start = start, start + 1
            else:
                marker = spec.base + int(MARKER[(shape.modality, shape.scale)])
            offsets = tuple(start + level * shape.codebook_size for level in range(shape.levels))
            start += shape.levels * shape.codebook_size
            self._stream_list.append(StreamIds(shape, offsets, start, marker))
            self._level_offsets.append(np.asarray(offsets, dtype=np.int64))
            start += shape.cells
        self.size = start
        self._index_of = {(s.shape.modality, s.shape.stream_name): i for i, s in enumerate(self._stream_list)}
        self._builtin_marker = {int(MARKER[(s.shape.modality, s.shape.scale)]): i
                                for i, s in enumerate(self._stream_list) if s.shape.scale is not None}
        self._build_lookup()

    def _build_lookup(self) -> None:
        """Per-id tables for unflatten: which stream an id is of, and what it is (its level, or
        IS_POSITION, IS_SPECIAL, IS_MARKER, IS_TEXT). Small: an int16 and an int8 per id."""
        self._stream_of = np.full(self.size, -1, dtype=np.int16)
        self._level_of = np.full(self.size, IS_SPECIAL, dtype=np.int8)
        self._level_of[:self.base] = IS_TEXT
        for i, sid in enumerate(self._stream_list):
            k = sid.shape.codebook_size
            if sid.shape.scale is None:
                self._stream_of[sid.marker] = i
                self._level_of[sid.marker] = IS_MARKER
            for level, off in enumerate(sid.code_offsets):
                self._stream_of[off:off + k] = i
                self._level_of[off:off + k] = level
            self._stream_of[sid.position_offset:sid.position_offset + sid.shape.cells] = i
            self._level_of[sid.position_offset:sid.position_offset + sid.shape.cells] = IS_POSITION

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
        """The JSON form published in meta: the layout name, the spec, and the table it gives.

        Layout 1 when it describes the vocabulary (the built-in streams alone, no base), so that a
        reader of layout 1 keeps reading what the default configuration publishes; else layout 2,
        which adds ``base``, ``named_streams`` (in id order) and ``added_tokens``.
        """
        v1 = self.spec.is_v1
        doc: dict[str, Any] = {"layout": LAYOUT if v1 else LAYOUT_V2, "codebook_id": self.codebook_id}
        if not v1:
            doc["base"] = self.base
        doc["size"] = self.size
        doc["streams"] = {s.key: {"levels": s.levels, "codebook_size": s.codebook_size, "grid": list(s.grid)}
                          for s in self.spec.streams if s.scale is not None}
        if not v1:
            doc["named_streams"] = [
                {"modality": s.modality.name.lower(), "name": s.name, "levels": s.levels,
                 "codebook_size": s.codebook_size, "grid": list(s.grid), "codebook_id": s.codebook_id}
                for s in self.spec.streams if s.scale is None]
        special = {SPECIAL_NAMES[s]: self.base + int(s) for s in Special}
        special.update({f"<{sid.shape.key}>": sid.marker for sid in self._stream_list if sid.shape.scale is None})
        doc["special"] = special
        if not v1:
            doc["added_tokens"] = list(ADDED_TOKENS)
        doc["ranges"] = [{"name": r.name, "start": r.start, "size": r.size} for r in self.table()]
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Vocabulary:
        """Rebuild from :meth:`to_dict`'s form (meta's ``vocab``), layout 1 or 2.

        Args:
            doc: the ``vocab`` object of a meta document (or :meth:`to_dict`'s result).

        Returns:
            The vocabulary, equal to the publisher's.

        Raises:
            DecodeError: the layout is unknown, the description is malformed, or the published size
                or table disagrees with the one this version derives from the spec.
        """
        try:
            layout = doc["layout"]
            if layout not in LAYOUTS:
                raise DecodeError(f"vocabulary layout {layout!r} is not one of {', '.join(LAYOUTS)} (upgrade livetok)")
            shapes = []
            for key, s in doc["streams"].items():
                mod, sc = parse_stream_key(key)
                rows, cols = s["grid"]
                shapes.append(StreamShape(mod, sc, int(s["levels"]), int(s["codebook_size"]), (int(rows), int(cols))))
            base = 0
            if layout == LAYOUT_V2:
                shapes += [_named_shape(s) for s in doc.get("named_streams", [])]
                base = _whole(doc.get("base", 0), "base")
            vocab = cls(VocabSpec(str(doc["codebook_id"]), tuple(shapes), base))
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

    # -- text -------------------------------------------------------------------------------------

    def with_base(self, base: int) -> Vocabulary:
        """The same vocabulary placed after a text tokenizer's ``base`` ids (every id shifted by it).

        Args:
            base: the text tokenizer's size (``tokenizers.Tokenizer.get_vocab_size()``); 0: no text.

        Raises:
            ValueError: ``base`` is negative.
        """
        return Vocabulary(replace(self.spec, base=int(base)))

    def added_tokens(self) -> list[str]:
        """The names of the 32 special ids, in id order (``<|livetok:pad|>``, ``<|livetok:step|>``, ...):
        added to a text tokenizer of ``base`` ids (``tok.add_special_tokens(vocab.added_tokens())``),
        they take ids ``base .. base + 31``, the ones this vocabulary gives them."""
        return list(ADDED_TOKENS)

    def check_text_tokenizer(self, tokenizer: _TextTokenizerLike) -> None:
        """Check that ``tokenizer`` (a Hugging Face ``tokenizers.Tokenizer``, or anything with
        ``token_to_id``) gives each of :meth:`added_tokens` the id this vocabulary does.

        Raises:
            CodebookError: naming the first token whose id differs (the tokenizer's size was not
                the base, or it had one of the names already).
        """
        for i, name in enumerate(ADDED_TOKENS):
            got = tokenizer.token_to_id(name)
            if got != self.base + i:
                raise CodebookError(
                    f"the text tokenizer gives {name} the id {got}, this vocabulary {self.base + i} "
                    f"(base {self.base}: add vocab.added_tokens() to a tokenizer of exactly that size)")

    def split(self, ids: Sequence[int] | np.ndarray) -> list[np.ndarray | FlatStep]:
        """Text and steps interleaved in one sequence, taken apart again.

        Args:
            ids: [N] ids: runs of text ids (below :attr:`base`) and of flattened steps.

        Returns:
            In order: each run of text ids as an int64 array [n] (for the text tokenizer's
            ``decode``), and each step as a :class:`FlatStep`.

        Raises:
            DecodeError: an id outside the vocabulary, or a run of media ids that is not well-formed steps.
        """
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= self.size):
            bad = int(arr[(arr < 0) | (arr >= self.size)][0])
            raise DecodeError(f"token id {bad} is outside the vocabulary (size {self.size})")
        is_text = arr < self.base
        out: list[np.ndarray | FlatStep] = []
        for run in np.split(arr, np.flatnonzero(np.diff(is_text.astype(np.int8))) + 1):
            if not run.size:
                continue
            if run[0] < self.base:
                out.append(run)
            else:
                out.extend(self.unflatten_steps(run))
        return out

    # -- the table ---------------------------------------------------------------------------------

    def stream(self, modality: Modality, scale: Scale | str) -> StreamIds:
        """Where one stream's ids are.

        Args:
            modality: the stream's modality.
            scale: FINE or COARSE, or a stream's name ("fine", "coarse" or a named stream's).

        Raises:
            CodebookError: this vocabulary has no such stream.
        """
        name = scale.name.lower() if isinstance(scale, Scale) else scale
        index = self._index_of.get((modality, name))
        if index is None:
            raise CodebookError(f"codebooks {self.codebook_id} have no {stream_key(modality, name)} stream")
        return self._stream_list[index]

    @property
    def streams(self) -> tuple[StreamIds, ...]:
        """Every stream's ids, in id order (the built-in ones, then the named ones)."""
        return tuple(self._stream_list)

    def code_id(self, modality: Modality, scale: Scale | str, level: int, code: int) -> int:
        """The id of ``code`` at ``level`` of a stream (``scale`` as in :meth:`stream`).

        Raises:
            CodebookError: no such stream. ValueError: level or code outside it.
        """
        sid = self.stream(modality, scale)
        if not (0 <= level < len(sid.code_offsets) and 0 <= code < sid.shape.codebook_size):
            raise ValueError(f"level {level}, code {code} outside {sid.shape.key}")
        return sid.code_offsets[level] + code

    def position_id(self, modality: Modality, scale: Scale | str, cell: int) -> int:
        """The id of grid cell ``cell`` of a stream (``scale`` as in :meth:`stream`).

        Raises:
            CodebookError: no such stream. ValueError: the cell is outside its grid.
        """
        sid = self.stream(modality, scale)
        if not 0 <= cell < sid.shape.cells:
            raise ValueError(f"cell {cell} outside the {sid.shape.grid} grid of {sid.shape.key}")
        return sid.position_offset + cell

    def table(self) -> list[VocabRange]:
        """Every range of ids with its name, in id order (special tokens and markers one by one;
        ``<text>`` first when there is a base)."""
        rows = [VocabRange("<text>", 0, self.base)] if self.base else []
        rows += [VocabRange(SPECIAL_NAMES[s], self.base + int(s), 1) for s in Special]
        rows.append(VocabRange("<reserved>", self.base + len(Special), N_SPECIAL - len(Special)))
        for sid in self._stream_list:
            key, k = sid.shape.key, sid.shape.codebook_size
            if sid.shape.scale is None:
                rows.append(VocabRange(f"<{key}>", sid.marker, 1))
            rows += [VocabRange(f"{key}/level{level}", off, k) for level, off in enumerate(sid.code_offsets)]
            rows.append(VocabRange(f"{key}/position", sid.position_offset, sid.shape.cells))
        return rows

    def describe(self, token: int) -> str:
        """A readable name for one id: ``<step>``, ``<audio/units>``, ``video/fine/level2:517``,
        ``video/fine/position:13``, ``text:42`` (below the base).

        Args:
            token: an id of this vocabulary (or a text id below its base).

        Raises:
            ValueError: the id is outside the vocabulary.
        """
        t = int(token)
        if not 0 <= t < self.size:
            raise ValueError(f"id {t} is outside the vocabulary (size {self.size})")
        kind = int(self._level_of[t])
        if kind == IS_TEXT:
            return f"text:{t}"
        if kind == IS_SPECIAL:
            rel = t - self.base
            return SPECIAL_NAMES[Special(rel)] if rel < len(Special) else f"<reserved{rel}>"
        sid = self._stream_list[int(self._stream_of[t])]
        if kind == IS_MARKER:
            return f"<{sid.shape.key}>"
        if kind == IS_POSITION:
            return f"{sid.shape.key}/position:{t - sid.position_offset}"
        return f"{sid.shape.key}/level{kind}:{t - sid.code_offsets[kind]}"


class _TextTokenizerLike(Protocol):
    """What :meth:`Vocabulary.check_text_tokenizer` reads of a ``tokenizers.Tokenizer``."""

    def token_to_id(self, token: str) -> int | None: ...


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} {value!r} is not a whole number")
    return value


def _named_shape(s: Mapping[str, Any]) -> StreamShape:
    """A named stream of a layout-2 ``named_streams`` entry."""
    rows, cols = s["grid"]
    modality = Modality[str(s["modality"]).upper()]
    return StreamShape(modality, None, int(s["levels"]), int(s["codebook_size"]), (int(rows), int(cols)),
                       name=str(s["name"]), codebook_id=str(s["codebook_id"]))
