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
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from livetok.bus.topics import check_name
from livetok.errors import ConfigError, DecodeError, LivetokError
from livetok.vocab import Vocabulary, parse_stream_key, stream_key
from livetok.wire import WIRE_VERSION, Modality, Scale

RUN_ID = re.compile(r"[0-9a-f]{16}\Z")
CLOCKS = ("unix", "media")
_KNOWN = {"wire_version", "codebook_id", "clock", "run_id", "instance", "source", "started_unix_ns", "streams",
          "vocab"}


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
    """

    modality: Modality
    scale: Scale
    levels: int | None = None
    rate_hz: float | None = None
    nominal_fps: float | None = None
    token_fps: float | None = None


@dataclass(frozen=True)
class StreamMeta:
    """One stream of a source as meta describes it (see the module doc for the fields)."""

    modality: Modality
    scale: Scale
    rate_hz: float | None
    nominal_fps: float | None
    grid: tuple[int, int]
    levels: int
    codebook_size: int
    code_offsets: tuple[int, ...]
    position_offset: int
    token_fps: float | None = None

    @property
    def key(self) -> str:
        return stream_key(self.modality, self.scale)

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

    @classmethod
    def build(cls, *, run_id: str, instance: str, source: str, vocab: Vocabulary,
              streams: Sequence[StreamDescription], clock: str = "unix",
              started_unix_ns: int | None = None) -> SourceMeta:
        """The meta of ``source`` sending ``streams``, with grids, sizes and offsets from ``vocab``.
        Bad values are a ConfigError."""
        if not is_run_id(run_id):
            raise ConfigError(f"run id {run_id!r} is not 16 lower-case hex digits")
        check_name(instance, "instance")
        check_name(source, "source")
        if clock not in CLOCKS:
            raise ConfigError(f"clock {clock!r} is not one of {CLOCKS}")
        out: dict[str, StreamMeta] = {}
        for d in streams:
            try:
                sid = vocab.stream(d.modality, d.scale)
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
                                            d.token_fps)
        return cls(run_id, instance, source, vocab.codebook_id, out, vocab, clock, WIRE_VERSION, started_unix_ns)

    def stream(self, modality: Modality, scale: Scale) -> StreamMeta | None:
        return self.streams.get(stream_key(modality, scale))

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "wire_version": self.wire_version, "codebook_id": self.codebook_id, "clock": self.clock,
            "run_id": self.run_id, "instance": self.instance, "source": self.source,
            "started_unix_ns": self.started_unix_ns,
            "streams": {k: s.to_dict() for k, s in self.streams.items()},
            "vocab": self.vocab.to_dict(),
        }
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
        try:
            if doc["wire_version"] != WIRE_VERSION:
                raise DecodeError(f"meta is for wire version {doc['wire_version']!r}; this reader knows {WIRE_VERSION}")
            run_id = doc["run_id"]
            if not is_run_id(run_id):
                raise DecodeError(f"meta run_id {run_id!r} is not 16 lower-case hex digits")
            vocab = Vocabulary.from_dict(doc["vocab"])
            streams: dict[str, StreamMeta] = {}
            for key, s in doc["streams"].items():
                mod, sc = parse_stream_key(key)
                rows, cols = s["grid"]
                streams[key] = StreamMeta(mod, sc, _opt_float(s.get("rate_hz")), _opt_float(s.get("nominal_fps")),
                                          (int(rows), int(cols)), int(s["levels"]), int(s["codebook_size"]),
                                          tuple(int(o) for o in s.get("code_offsets", ())),
                                          int(s.get("position_offset", 0)), _opt_float(s.get("token_fps")))
            started = doc.get("started_unix_ns")
            return cls(run_id, str(doc["instance"]), str(doc["source"]), str(doc["codebook_id"]), streams, vocab,
                       str(doc["clock"]), int(doc["wire_version"]), None if started is None else int(started),
                       {k: v for k, v in doc.items() if k not in _KNOWN})
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DecodeError(f"meta is malformed: {err!r}") from err


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
