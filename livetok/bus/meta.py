"""The retained meta document of one source: ``{prefix}/{instance}/{source}/meta``.

It tells a consumer what the source's token streams are (rates, grids, levels, codebook sizes),
which daemon run produced them (``run_id``, new at every daemon start: a seq that restarts at 0
under a new run id is a restart, not a duplicate), and the joint vocabulary (``vocab``, enough to
rebuild the exact id table with :meth:`livetok.vocab.Vocabulary.from_dict`). JSON, UTF-8::

    {
      "wire_version": 1, "codebook_id": "c0ff5bee45950755", "clock": "unix",
      "run_id": "5f0c3a9e12d4b7a8", "instance": "host1", "source": "cam0",
      "started_unix_ns": 1700000000000000000,
      "streams": {
        "video/fine": {"rate_hz": null, "nominal_fps": 30.0, "token_fps": 5.0, "grid": [14, 14], "levels": 4,
                       "codebook_size": 1024, "code_offsets": [6178, 7202, 8226, 9250],
                       "position_offset": 10274},
        ...
      },
      "vocab": {"layout": "livetok-vocab/1", "codebook_id": "...", "size": 12567,
                "streams": {...}, "special": {...}, "ranges": [...]}
    }

``rate_hz`` is tokens per second, null when the stream follows the camera's frame rate (then
``nominal_fps`` is the camera's nominal rate when known, else null, and ``token_fps`` the source's token
rate: at most that many frames per second are tokenized, one per ``1 / token_fps`` s of capture
time; null: every frame; absent from audio streams). ``levels`` is how many RVQ
levels the packets carry; ``code_offsets[l]`` is the joint id of code 0 at level ``l``.
Readers ignore keys they do not know (kept in :attr:`SourceMeta.extra`), so fields can be added.

``specs`` (issue 15) lists every stream the source sends, built-in scales first, then the plug-in
tokenizers' named streams in the order of ``tokenizers:``, each as its tokenizer declares it::

    "specs": [{"tokenizer": "units", "kind": "onnx", "name": "units", "modality": "audio",
               "step_ns": "20000000/1", "grid": [1, 1], "levels": 1, "codebook_size": 64,
               "vector_size": null, "codebook_id": "1f2e3d4c5b6a7980"}, ...]

``step_ns`` is the exact rational "p/q" (ns per step), null for one step per frame (video).
``wire_version`` is 2 when a named stream exists (its packets are v2), else 1.

With named streams, ``vocab`` is layout ``livetok-vocab/2``: the codebooks' vocabulary with one
block per named stream appended in the order of ``specs`` (docs/vocab.md). :meth:`SourceMeta.build`
makes it so (a vocabulary that has named streams already, e.g. every tokenizer's of the daemon, is
kept); :meth:`SourceMeta.from_dict` takes a layout-1 ``vocab`` beside named ``specs`` (it derives
layout 2 from them) and refuses a layout-2 one that lacks a named stream of the specs or
describes it otherwise.
A v1 meta (no ``specs``) reads as before. A named stream may also be listed in ``streams`` (key
``audio/units``); readers take it.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from livetok.bus.topics import check_name
from livetok.errors import ConfigError, DecodeError, LivetokError
from livetok.vocab import StreamShape, VocabSpec, Vocabulary, parse_stream_ref, stream_key
from livetok.wire import READ_VERSIONS, WIRE_VERSION, WIRE_VERSION_NAMED, Modality, Scale

RUN_ID = re.compile(r"[0-9a-f]{16}\Z")
CLOCKS = ("unix", "media")
_KNOWN = {"wire_version", "codebook_id", "clock", "run_id", "instance", "source", "started_unix_ns", "streams",
          "vocab", "specs"}
SCALE_NAMES = ("fine", "coarse")
_STEP_NS = re.compile(r"[1-9][0-9]*/[1-9][0-9]*\Z")


@dataclass(frozen=True)
class StreamSpecMeta:
    """One stream of a source as its tokenizer declares it (module doc, ``specs``)."""

    tokenizer: str
    kind: str
    name: str
    modality: str
    step_ns: str | None  # "p/q" exactly; None: one step per frame
    grid: tuple[int, int]
    levels: int
    codebook_size: int
    vector_size: int | None
    codebook_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "kind": self.kind, "name": self.name, "modality": self.modality,
                "step_ns": self.step_ns, "grid": list(self.grid), "levels": self.levels,
                "codebook_size": self.codebook_size, "vector_size": self.vector_size, "codebook_id": self.codebook_id}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StreamSpecMeta:
        """One entry of ``specs``; KeyError, TypeError or ValueError (a ``step_ns`` that is not "p/q"
        of positive whole numbers, a modality that is not audio or video) when malformed."""
        rows, cols = d["grid"]
        step = d.get("step_ns")
        vs = d.get("vector_size")
        if step is not None and not (isinstance(step, str) and _STEP_NS.match(step)):
            raise ValueError(f"step_ns {step!r} is not an exact rational \"p/q\"")
        if d["modality"] not in ("audio", "video"):
            raise ValueError(f"modality {d['modality']!r} is not audio or video")
        return cls(str(d["tokenizer"]), str(d["kind"]), str(d["name"]), str(d["modality"]),
                   None if step is None else str(step), (int(rows), int(cols)), int(d["levels"]),
                   int(d["codebook_size"]), None if vs is None else int(vs), str(d["codebook_id"]))

    @property
    def is_named(self) -> bool:
        """A plug-in tokenizer's named stream (not a built-in scale)."""
        return self.name not in SCALE_NAMES

    @property
    def step(self) -> Fraction | None:
        """``step_ns`` as an exact Fraction (None: one step per frame)."""
        return None if self.step_ns is None else Fraction(self.step_ns)

    def shape(self) -> StreamShape:
        """The vocabulary's block of this named stream."""
        return StreamShape(Modality[self.modality.upper()], None, self.levels, self.codebook_size, self.grid,
                           name=self.name, codebook_id=self.codebook_id)


def new_run_id() -> str:
    """A fresh run id: 16 lower-case hex digits (64 random bits)."""
    return secrets.token_hex(8)


def is_run_id(value: object) -> bool:
    return isinstance(value, str) and RUN_ID.match(value) is not None


@dataclass(frozen=True)
class StreamDescription:
    """What a publisher says of one stream it will send; the rest comes from the vocabulary.

    ``levels``: RVQ levels in the packets (None: all the codebooks have); ``rate_hz``: tokens per
    second (None for video, which follows the frames); ``nominal_fps``: the camera's nominal rate;
    ``token_fps``: the source's token rate (video; None: every frame).
    A named stream: ``scale`` None and its ``stream`` name (the vocabulary must have its block).
    """

    modality: Modality
    scale: Scale | None
    levels: int | None = None
    rate_hz: float | None = None
    nominal_fps: float | None = None
    stream: str = ""
    token_fps: float | None = None


@dataclass(frozen=True)
class StreamMeta:
    """One stream of a source as meta describes it (see the module doc for the fields); a named
    stream has ``scale`` None and its ``stream`` name."""

    modality: Modality
    scale: Scale | None
    rate_hz: float | None
    nominal_fps: float | None
    grid: tuple[int, int]
    levels: int
    codebook_size: int
    code_offsets: tuple[int, ...]
    position_offset: int
    stream: str = ""
    token_fps: float | None = None

    @property
    def name(self) -> str:
        """"fine", "coarse" or the named stream's name."""
        return self.stream if self.scale is None else self.scale.name.lower()

    @property
    def key(self) -> str:
        return stream_key(self.modality, self.name)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rate_hz": self.rate_hz, "nominal_fps": self.nominal_fps}
        if self.modality == Modality.VIDEO:
            out["token_fps"] = self.token_fps
        return {**out, "grid": list(self.grid), "levels": self.levels, "codebook_size": self.codebook_size,
                "code_offsets": list(self.code_offsets), "position_offset": self.position_offset}


@dataclass(frozen=True)
class SourceMeta:
    """The meta document of one source (module doc). Build it with :meth:`build`; parse with
    :meth:`from_json` (DecodeError on anything malformed)."""

    run_id: str
    instance: str
    source: str
    codebook_id: str
    streams: Mapping[str, StreamMeta]
    vocab: Vocabulary
    clock: str = "unix"
    wire_version: int = WIRE_VERSION
    started_unix_ns: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    specs: tuple[StreamSpecMeta, ...] = ()

    @classmethod
    def build(cls, *, run_id: str, instance: str, source: str, vocab: Vocabulary,
              streams: Sequence[StreamDescription], clock: str = "unix",
              started_unix_ns: int | None = None, specs: Sequence[StreamSpecMeta] = ()) -> SourceMeta:
        """The meta of ``source`` sending ``streams``, with grids, sizes and offsets from ``vocab``.

        Args:
            vocab: the codebooks' vocabulary; the named streams of ``specs`` are appended to it
                (layout 2) unless it has named streams already (:func:`with_named_streams`).
            streams: what the source sends (a named stream among them needs its block in the vocabulary).
            specs: every stream as its tokenizer declares it, built-in scales first.

        Raises:
            ConfigError: a bad value, a stream the vocabulary lacks, or a named stream of the specs
                it lacks or describes otherwise.
        """
        try:
            vocab = with_named_streams(vocab, specs)
        except (DecodeError, ValueError) as err:
            raise ConfigError(f"source {source!r}: {err}") from None
        if not is_run_id(run_id):
            raise ConfigError(f"run id {run_id!r} is not 16 lower-case hex digits")
        check_name(instance, "instance")
        check_name(source, "source")
        if clock not in CLOCKS:
            raise ConfigError(f"clock {clock!r} is not one of {CLOCKS}")
        out: dict[str, StreamMeta] = {}
        for d in streams:
            try:
                sid = vocab.stream(d.modality, d.scale if d.scale is not None else d.stream)
            except LivetokError as err:
                raise ConfigError(str(err)) from None
            levels = sid.shape.levels if d.levels is None else d.levels
            if not 0 <= levels <= sid.shape.levels:
                raise ConfigError(f"{sid.shape.key}: {levels} levels, the codebooks have {sid.shape.levels}")
            for what, value in (("rate_hz", d.rate_hz), ("nominal_fps", d.nominal_fps), ("token_fps", d.token_fps)):
                if value is not None and not (math.isfinite(value) and value > 0):
                    raise ConfigError(f"{sid.shape.key}: {what} {value} is not a positive number")
            out[sid.shape.key] = StreamMeta(d.modality, d.scale, d.rate_hz, d.nominal_fps, sid.shape.grid, levels,
                                            sid.shape.codebook_size, sid.code_offsets[:levels], sid.position_offset,
                                            sid.shape.name, d.token_fps)
        named = any(s.name not in SCALE_NAMES for s in specs) or any(m.scale is None for m in out.values())
        return cls(run_id, instance, source, vocab.codebook_id, out, vocab, clock,
                   WIRE_VERSION_NAMED if named else WIRE_VERSION, started_unix_ns, specs=tuple(specs))

    def stream(self, modality: Modality, scale: Scale | str) -> StreamMeta | None:
        """The stream of ``modality`` named by ``scale`` (FINE, COARSE or a stream's name), if listed."""
        return self.streams.get(stream_key(modality, scale))

    def spec(self, modality: Modality | str, name: str) -> StreamSpecMeta | None:
        """The ``specs`` entry of a stream (its tokenizer, kind, step), if the meta has one."""
        mod = modality.name.lower() if isinstance(modality, Modality) else modality
        return next((s for s in self.specs if (s.modality, s.name) == (mod, name)), None)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "wire_version": self.wire_version, "codebook_id": self.codebook_id, "clock": self.clock,
            "run_id": self.run_id, "instance": self.instance, "source": self.source,
            "started_unix_ns": self.started_unix_ns,
            "streams": {k: s.to_dict() for k, s in self.streams.items()},
            "vocab": self.vocab.to_dict(),
        }
        if self.specs:
            doc["specs"] = [s.to_dict() for s in self.specs]
        doc.update({k: v for k, v in self.extra.items() if k not in doc})
        return doc

    def to_json(self) -> str:
        """Compact JSON (the retained payload, UTF-8 encoded by the publisher)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> SourceMeta:
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise DecodeError(f"meta is not valid JSON: {err}") from err
        if not isinstance(doc, dict):
            raise DecodeError("meta JSON is not an object")
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SourceMeta:
        """Parse a meta document: wire version 1 or 2, with or without ``specs``.

        Raises:
            DecodeError: anything malformed, or a layout-2 vocabulary that lacks a named stream
                of the specs or describes it otherwise (module doc).
        """
        try:
            if doc["wire_version"] not in READ_VERSIONS:
                raise DecodeError(f"meta is for wire version {doc['wire_version']!r}; this reader knows "
                                  f"{', '.join(map(str, READ_VERSIONS))}")
            run_id = doc["run_id"]
            if not is_run_id(run_id):
                raise DecodeError(f"meta run_id {run_id!r} is not 16 lower-case hex digits")
            specs = tuple(StreamSpecMeta.from_dict(d) for d in doc.get("specs", ()))
            vocab = with_named_streams(Vocabulary.from_dict(doc["vocab"]), specs)
            streams: dict[str, StreamMeta] = {}
            for key, s in doc["streams"].items():
                mod, ref = parse_stream_ref(key)
                rows, cols = s["grid"]
                streams[key] = StreamMeta(mod, ref if isinstance(ref, Scale) else None, _opt_float(s.get("rate_hz")),
                                          _opt_float(s.get("nominal_fps")), (int(rows), int(cols)), int(s["levels"]),
                                          int(s["codebook_size"]), tuple(int(o) for o in s.get("code_offsets", ())),
                                          int(s.get("position_offset", 0)), "" if isinstance(ref, Scale) else ref,
                                          _opt_float(s.get("token_fps")))
            started = doc.get("started_unix_ns")
            return cls(run_id, str(doc["instance"]), str(doc["source"]), str(doc["codebook_id"]), streams, vocab,
                       str(doc["clock"]), int(doc["wire_version"]), None if started is None else int(started),
                       {k: v for k, v in doc.items() if k not in _KNOWN}, specs)
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DecodeError(f"meta is malformed: {err!r}") from err


def with_named_streams(vocab: Vocabulary, specs: Sequence[StreamSpecMeta]) -> Vocabulary:
    """The vocabulary a meta with ``specs`` publishes: ``vocab`` itself when it has named streams
    (layout 2: per source, or every tokenizer of the daemon's), else ``vocab`` with a block for each
    named stream of ``specs`` appended in their order.

    Raises:
        DecodeError: ``vocab`` has named streams but lacks one of the specs', or describes it otherwise
            (levels, codebook size, grid, codebook id).
    """
    want = [s.shape() for s in specs if s.is_named]
    have = {sid.shape.key: sid.shape for sid in vocab.streams if sid.shape.scale is None}
    if not have:
        if not want:
            return vocab
        spec = vocab.spec
        return Vocabulary(VocabSpec(spec.codebook_id, spec.streams + tuple(want), spec.base))
    for shape in want:
        if have.get(shape.key) != shape:
            how = "lacks" if shape.key not in have else "describes otherwise"
            raise DecodeError(f"the vocabulary {how} the named stream {shape.key} of the specs")
    return vocab


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
