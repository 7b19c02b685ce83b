"""Codebook files of the plug-in kinds: one safetensors file per tokenizer, saying what it was fitted for.

Tensors ``{stream}.mean [D]``, ``{stream}.proj [D, d]``, ``{stream}.codebooks [L, K, d]`` per stream
(float32). Metadata: ``format`` (:data:`FORMAT`), ``kind`` (the tokenizer kind), ``fitted_for`` (JSON:
what the codebooks depend on, e.g. ``model_sha256`` and ``embedding_dim`` for a user's model, the
log-mel and patch parameters for spectrogram patches), ``codebook_id`` (the first 16 hex digits of a
SHA-256 over the kind, ``fitted_for`` and the tensors) and ``shapes``.

A file fitted for something else — another model (its SHA-256), another embedding size, another
front end — is refused by :func:`check_fitted_for` in one CodebookError line naming the key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import save_file

from livetok.errors import CodebookError, OutputError
from livetok.outputs import atomic_output, describe_oserror
from livetok.tokenizers.codebooks import MAX_CODES, ScaleArrays, read_safetensors

FORMAT = "livetok-tokenizer-codebooks/1"
PARTS = ("mean", "proj", "codebooks")


@dataclass(frozen=True)
class QuantizerSet:
    kind: str
    fitted_for: dict[str, Any]
    streams: dict[str, ScaleArrays]
    codebook_id: str
    source: str = "<memory>"


def compute_id(kind: str, fitted_for: dict[str, Any], streams: dict[str, ScaleArrays]) -> str:
    h = hashlib.sha256(json.dumps({"kind": kind, "fitted_for": fitted_for}, sort_keys=True).encode())
    for name in sorted(streams):
        for part in PARTS:
            h.update(np.ascontiguousarray(getattr(streams[name], part), dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def make_quantizer_set(kind: str, fitted_for: dict[str, Any], streams: dict[str, ScaleArrays]) -> QuantizerSet:
    streams = {n: ScaleArrays(*(np.ascontiguousarray(getattr(a, p), dtype=np.float32) for p in PARTS))
               for n, a in streams.items()}
    fitted_for = json.loads(json.dumps(fitted_for, sort_keys=True))  # as it will read back
    return QuantizerSet(kind, fitted_for, streams, compute_id(kind, fitted_for, streams))


def save_quantizers(qs: QuantizerSet, path: Path) -> None:
    """Write atomically: a failed save leaves an existing file as it was (OutputError, one line)."""
    tensors = {f"{n}.{p}": getattr(a, p) for n, a in qs.streams.items() for p in PARTS}
    meta = {"format": FORMAT, "kind": qs.kind, "codebook_id": qs.codebook_id,
            "fitted_for": json.dumps(qs.fitted_for, sort_keys=True),
            "shapes": json.dumps({k: list(v.shape) for k, v in tensors.items()}, sort_keys=True)}
    with atomic_output(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=meta)
        except (OSError, SafetensorError) as err:
            reason = describe_oserror(err) if isinstance(err, OSError) else str(err)
            raise OutputError(f"{path}: cannot write it: {reason}") from err


def load_quantizers(path: Path) -> QuantizerSet:
    """Read and verify; every failure is one CodebookError line naming the file."""
    path = Path(path)
    meta, tensors = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise CodebookError(f"{path}: not a plug-in tokenizer codebook file (format {meta.get('format')!r}, "
                            f"want {FORMAT!r})")
    try:
        fitted_for = json.loads(meta["fitted_for"])
        kind = meta["kind"]
    except (KeyError, json.JSONDecodeError) as err:
        raise CodebookError(f"{path}: metadata is missing or unreadable: {err}") from err
    names = sorted({k.rsplit(".", 1)[0] for k in tensors})
    missing = [f"{n}.{p}" for n in names for p in PARTS if f"{n}.{p}" not in tensors]
    if missing or not names:
        raise CodebookError(f"{path}: tensor {missing[0] if missing else 'STREAM.mean'} is missing")
    streams = {n: ScaleArrays(*(tensors[f"{n}.{p}"] for p in PARTS)) for n in names}
    for n, arr in streams.items():
        problem = arrays_problem(n, arr)
        if problem:
            raise CodebookError(f"{path}: {problem}")
    qs = QuantizerSet(kind, fitted_for, streams, compute_id(kind, fitted_for, streams), str(path))
    if qs.codebook_id != meta.get("codebook_id"):
        raise CodebookError(f"{path}: content hash {qs.codebook_id} does not match the recorded codebook_id "
                            f"{meta.get('codebook_id')}")
    return qs


def arrays_problem(name: str, arr: ScaleArrays) -> str:
    """Why one stream's arrays cannot be used (shapes that disagree, non-finite values); "" if they can."""
    for part in PARTS:
        t = getattr(arr, part)
        if not np.issubdtype(t.dtype, np.floating):
            return f"tensor {name}.{part} has dtype {t.dtype}, not floating point"
        bad = int(t.size - np.count_nonzero(np.isfinite(t)))
        if bad:
            return f"tensor {name}.{part} has {bad} non-finite values (NaN or infinity) of {t.size}"
    mean, proj, books = arr.mean, arr.proj, arr.codebooks
    if mean.ndim != 1 or proj.ndim != 2 or proj.shape[0] != mean.shape[0] or not 1 <= proj.shape[1] <= mean.shape[0]:
        return f"tensors {name}.mean {list(mean.shape)} and {name}.proj {list(proj.shape)} do not fit ([D], [D, d<=D])"
    if books.ndim != 3 or books.shape[0] < 1 or not 2 <= books.shape[1] <= MAX_CODES or books.shape[2] != proj.shape[1]:
        return (f"tensor {name}.codebooks has shape {list(books.shape)}, want [levels >= 1, 2..{MAX_CODES} codes, "
                f"{proj.shape[1]}]")
    return ""


def check_fitted_for(qs: QuantizerSet, kind: str, expected: dict[str, Any], tokenizer: str) -> None:
    """Refuse codebooks fitted for another kind, model or front end: one CodebookError line naming
    the key and both values, and how to fit them again."""
    where = f"tokenizer {tokenizer!r}: codebooks {qs.source}"
    again = f"; fit them again: livetok fit --tokenizer {tokenizer}"
    if qs.kind != kind:
        raise CodebookError(f"{where} were fitted for a {qs.kind!r} tokenizer, not {kind!r}{again}")
    expected = json.loads(json.dumps(expected, sort_keys=True))
    for key, want in expected.items():
        have = qs.fitted_for.get(key)
        if have != want:
            if key == "model_sha256":
                raise CodebookError(f"{where} were fitted for another model (model_sha256 {str(have)[:16]}..., "
                                    f"this model file is {str(want)[:16]}...){again}")
            raise CodebookError(f"{where} were fitted for {key}={have!r}, but this tokenizer has {key}={want!r}{again}")


def stream_arrays(qs: QuantizerSet, stream: str, tokenizer: str) -> ScaleArrays:
    if stream not in qs.streams:
        raise CodebookError(f"tokenizer {tokenizer!r}: codebooks {qs.source} have no stream {stream!r} "
                            f"(they have: {', '.join(sorted(qs.streams))})")
    return qs.streams[stream]
