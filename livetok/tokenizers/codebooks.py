"""Codebook files: projections and RVQ codebooks for every (modality, scale) in one safetensors file.

Tensors are named ``{modality}.{scale}.{mean|proj|codebooks}``; the metadata records the front-end
parameters they were fitted with (so a mismatched configuration is refused), and ``codebook_id``:
the first 16 hex digits of a SHA-256 over the tensors and front-end parameters. Packets carry that id.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, cast

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from livetok.config.tokenizer import AudioConfig, TokenizerConfig, VideoConfig
from livetok.errors import CodebookError, OutputError
from livetok.outputs import atomic_output, describe_oserror

FORMAT = "livetok-codebooks/1"
SCALES = ("fine", "coarse")
MODALITIES = ("audio", "video")


def default_codebook_path() -> Path:
    """The codebooks packaged with livetok (fitted by ``scripts/fit-default-codebooks.sh``)."""
    return Path(str(resources.files("livetok") / "codebooks" / "default.safetensors"))


PACKAGED_ID = re.compile(r"[0-9a-f]{16}")


def packaged_codebook_path(codebook_id: str) -> Path | None:
    """An earlier default codebook set kept in the package as ``codebooks/<id>.safetensors``
    (docs/tokenizers.md lists them), so that its token files still decode; None if there is none."""
    if not PACKAGED_ID.fullmatch(codebook_id):
        return None
    path = Path(str(resources.files("livetok") / "codebooks" / f"{codebook_id}.safetensors"))
    return path if path.is_file() else None


def resolve_codebook_path(path: Path | None) -> Path:
    """``tokenizer.codebooks`` -> a file: None is the packaged default; a file path is itself; a
    bare codebook id that is no file here names a packaged earlier set (:func:`packaged_codebook_path`)."""
    if path is None:
        return default_codebook_path()
    path = Path(path)
    if not path.exists():
        return packaged_codebook_path(str(path)) or path
    return path


def audio_frontend(cfg: AudioConfig) -> dict[str, Any]:
    """The audio parameters that codebooks depend on."""
    return {
        "sample_rate": cfg.sample_rate, "win_length": cfg.win_length, "hop_length": cfg.hop_length,
        "n_fft": cfg.n_fft, "n_mels": cfg.n_mels, "f_min": cfg.f_min,
        "f_max": cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2,
        "fine_frames": cfg.fine_frames, "coarse_frames": cfg.coarse_frames,
    }


def video_frontend(cfg: VideoConfig) -> dict[str, Any]:
    """The video parameters that codebooks depend on."""
    return {"size": cfg.size, "fine_patch": cfg.fine_patch, "coarse_patch": cfg.coarse_patch}


@dataclass(frozen=True)
class ScaleArrays:
    """Fitted arrays of one scale: ``mean [D]``, ``proj [D, d]``, ``codebooks [L, K, d]`` (float32)."""

    mean: np.ndarray
    proj: np.ndarray
    codebooks: np.ndarray


@dataclass(frozen=True)
class CodebookSet:
    """Everything a tokenizer needs, as loaded from (or about to be saved to) one file."""

    frontend: dict[str, dict[str, Any]]  # {"audio": {...}, "video": {...}}
    scales: dict[str, ScaleArrays]  # key "audio.fine", "video.coarse", ...
    codebook_id: str
    source: str = "<memory>"
    # Decoder post-processing per video scale, fitted with the codebooks (docs/tokenizers.md):
    # {"video.fine": {"deblock_width": 2, "deblock_strength": 1.0}, ...}; empty: none (v1 files).
    decoder: dict[str, dict[str, float]] = field(default_factory=dict)

    def scale(self, modality: str, scale: str) -> ScaleArrays:
        return self.scales[f"{modality}.{scale}"]

    def check(self, cfg: TokenizerConfig) -> None:
        """Raise CodebookError naming both values when the configuration does not match: front-end
        parameters, codes per level, projected size (``dim``), and no more levels than fitted. The
        arrays' own consistency is checked when a file is loaded (:func:`content_problem`)."""
        problem = content_problem(self.frontend, self.scales)
        if problem:
            raise CodebookError(f"codebooks {self.source}: {problem}")
        wanted = {"audio": audio_frontend(cfg.audio), "video": video_frontend(cfg.video)}
        for modality, params in wanted.items():
            for key, value in params.items():
                have = self.frontend.get(modality, {}).get(key)
                if have != value:
                    raise CodebookError(
                        f"codebooks {self.source} were fitted with {modality}.{key}={have!r} "
                        f"but the configuration has tokenizer.{modality}.{key}={value!r}"
                    )
            for scale in SCALES:
                arr = self.scale(modality, scale)
                rvq = getattr(getattr(cfg, modality), scale)
                if arr.codebooks.shape[1] != rvq.codebook_size:
                    raise CodebookError(
                        f"codebooks {self.source} have {arr.codebooks.shape[1]} codes per level for "
                        f"{modality}.{scale} but the configuration has "
                        f"tokenizer.{modality}.{scale}.codebook_size={rvq.codebook_size}"
                    )
                if rvq.levels > arr.codebooks.shape[0]:
                    raise CodebookError(
                        f"codebooks {self.source} have {arr.codebooks.shape[0]} levels for "
                        f"{modality}.{scale} but the configuration asks for "
                        f"tokenizer.{modality}.{scale}.levels={rvq.levels}"
                    )
                if arr.proj.shape[1] != rvq.dim:
                    raise CodebookError(
                        f"codebooks {self.source} project {modality}.{scale} to {arr.proj.shape[1]} values but "
                        f"the configuration has tokenizer.{modality}.{scale}.dim={rvq.dim}"
                    )


def compute_id(
    frontend: dict[str, dict[str, Any]], scales: dict[str, ScaleArrays], decoder: dict[str, Any] | None = None
) -> str:
    """The content hash; a decoder section, when there is one, is part of it (a set without one
    hashes exactly as files written before decoders existed did)."""
    h = hashlib.sha256(json.dumps(frontend, sort_keys=True).encode())
    for key in sorted(scales):
        for arr in (scales[key].mean, scales[key].proj, scales[key].codebooks):
            h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    if decoder:
        h.update(b"decoder" + json.dumps(decoder, sort_keys=True).encode())
    return h.hexdigest()[:16]


def make_set(
    frontend: dict[str, dict[str, Any]], scales: dict[str, ScaleArrays], decoder: dict[str, Any] | None = None
) -> CodebookSet:
    scales = {
        k: ScaleArrays(*(np.ascontiguousarray(a, dtype=np.float32) for a in (v.mean, v.proj, v.codebooks)))
        for k, v in scales.items()
    }
    decoder = decoder or {}
    return CodebookSet(frontend=frontend, scales=scales, codebook_id=compute_id(frontend, scales, decoder),
                       decoder=decoder)


def save_codebooks(cbs: CodebookSet, path: Path, extra: dict[str, str] | None = None) -> None:
    tensors = {}
    for key, arr in cbs.scales.items():
        tensors[f"{key}.mean"] = arr.mean
        tensors[f"{key}.proj"] = arr.proj
        tensors[f"{key}.codebooks"] = arr.codebooks
    meta = {"format": FORMAT, "codebook_id": cbs.codebook_id, "frontend": json.dumps(cbs.frontend, sort_keys=True)}
    meta["shapes"] = json.dumps({k: list(v.shape) for k, v in tensors.items()}, sort_keys=True)
    if cbs.decoder:
        meta["decoder"] = json.dumps(cbs.decoder, sort_keys=True)
    meta.update(extra or {})
    with atomic_output(path) as tmp:  # a failed save leaves an existing file as it was
        try:
            save_file(tensors, str(tmp), metadata=meta)
        except (OSError, SafetensorError) as err:
            reason = describe_oserror(err) if isinstance(err, OSError) else str(err)
            raise OutputError(f"{path}: cannot write it: {reason}") from err


def read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """A safetensors file's metadata and tensors; a missing or unreadable file is one CodebookError
    line naming it (the livetok codebooks and the plug-in tokenizers' quantizer files alike)."""
    if not path.is_file():
        raise CodebookError(f"codebook file not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CodebookError(f"{path}: not a readable safetensors codebook file ({err})") from err
    return meta, tensors


def load_codebooks(path: Path | None = None) -> CodebookSet:
    """Load and verify a codebook file; every failure is a one-line CodebookError naming the file."""
    path = resolve_codebook_path(path)
    meta, tensors = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise CodebookError(f"{path}: not a livetok codebook file (format {meta.get('format')!r}, want {FORMAT!r})")
    try:
        frontend = json.loads(meta["frontend"])
        scales = {
            f"{m}.{s}": ScaleArrays(
                tensors[f"{m}.{s}.mean"], tensors[f"{m}.{s}.proj"], tensors[f"{m}.{s}.codebooks"]
            )
            for m in MODALITIES
            for s in SCALES
        }
    except (KeyError, json.JSONDecodeError) as err:
        raise CodebookError(f"{path}: codebook file is missing {err}") from err
    try:
        decoder = json.loads(meta.get("decoder", "{}"))
    except json.JSONDecodeError as err:
        raise CodebookError(f"{path}: metadata 'decoder' is not JSON ({err})") from err
    problem = decoder_problem(decoder, frontend)
    if problem:
        raise CodebookError(f"{path}: {problem}")
    cbs = CodebookSet(frontend=frontend, scales=scales, codebook_id=compute_id(frontend, scales, decoder),
                      source=str(path), decoder=decoder)
    if cbs.codebook_id != meta.get("codebook_id"):
        raise CodebookError(
            f"{path}: content hash {cbs.codebook_id} does not match the recorded codebook_id {meta.get('codebook_id')}"
        )
    problem = content_problem(frontend, scales)
    if problem:
        raise CodebookError(f"{path}: {problem}")
    return cbs


# Front-end metadata a codebook file must carry, with its type; every value is above 0 but f_min (>= 0).
FRONTEND_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    "audio": {"sample_rate": (int,), "win_length": (int,), "hop_length": (int,), "n_fft": (int,), "n_mels": (int,),
              "f_min": (int, float), "f_max": (int, float), "fine_frames": (int,), "coarse_frames": (int,)},
    "video": {"size": (int,), "fine_patch": (int,), "coarse_patch": (int,)},
}
MAX_CODES = 65536  # codes travel as u16 (docs/wire-format.md)
# The largest magnitude a tensor value may have. Fitted values are log-mel or pixel scale (the
# packaged set's largest is about 222); far beyond, the tokenizers' float32 sums of squares and
# projections overflow (to infinity at about 1e19) and every code becomes meaningless.
MAX_ABS_VALUE = 1e6


def vector_size(frontend: dict[str, dict[str, Any]], modality: str, scale: str) -> int:
    """``D``, the length of the vectors a scale's projection takes, as the tokenizers build them:
    audio, ``n_mels`` x the scale's log-mel frames per step (frames concatenated); video, the
    scale's patch as RGB pixels (``3 * patch^2``)."""
    fe = frontend[modality]
    if modality == "audio":
        return int(fe["n_mels"] * fe[f"{scale}_frames"])
    return int(3 * fe[f"{scale}_patch"] ** 2)


def content_problem(frontend: Any, scales: dict[str, ScaleArrays]) -> str:
    """Why a codebook file's content cannot be used, naming the tensor or metadata key; "" if it can.

    Checks the front-end metadata's keys and types, that every tensor is floating point with finite
    values no larger than :data:`MAX_ABS_VALUE`, and that shapes agree with each other (``mean [D]``,
    ``proj [D, d]``, ``codebooks [L, K, d]``) and with the front end (``D``: :func:`vector_size`)."""
    if not isinstance(frontend, dict):
        return f"metadata 'frontend' is a {type(frontend).__name__}, not an object"
    for modality, keys in FRONTEND_TYPES.items():
        fe = frontend.get(modality)
        if not isinstance(fe, dict):
            return f"metadata 'frontend.{modality}' is missing or not an object"
        for key, types in keys.items():
            value = fe.get(key)
            if isinstance(value, bool) or not isinstance(value, types):
                want = " or ".join(t.__name__ for t in types)
                return f"metadata 'frontend.{modality}.{key}' is {value!r}, not a {want}"
            number = float(cast(float, value))
            if not (math.isfinite(number) and (number >= 0 if key == "f_min" else number > 0)):
                return f"metadata 'frontend.{modality}.{key}' is {value!r}, out of range"
    for key, arr in scales.items():
        modality, scale = key.split(".")
        d_in = vector_size(frontend, modality, scale)
        tensors = {"mean": arr.mean, "proj": arr.proj, "codebooks": arr.codebooks}
        for name, t in tensors.items():
            if not np.issubdtype(t.dtype, np.floating):
                return f"tensor {key}.{name} has dtype {t.dtype}, not floating point"
        mean, proj, books = arr.mean, arr.proj, arr.codebooks
        if mean.shape != (d_in,):
            return (f"tensor {key}.mean has shape {list(mean.shape)}, but the front end makes "
                    f"{d_in}-value {modality} {scale} vectors ({_d_reason(frontend, modality, scale)}): want [{d_in}]")
        if proj.ndim != 2 or proj.shape[0] != d_in or not 1 <= proj.shape[1] <= d_in:
            return (f"tensor {key}.proj has shape {list(proj.shape)}, want [{d_in}, d] with 1 <= d <= {d_in} "
                    f"(mean has {d_in} values)")
        d = proj.shape[1]
        if books.ndim != 3 or books.shape[0] < 1 or not 2 <= books.shape[1] <= MAX_CODES or books.shape[2] != d:
            return (f"tensor {key}.codebooks has shape {list(books.shape)}, want [levels >= 1, 2..{MAX_CODES} "
                    f"codes, {d}] ({key}.proj projects to {d} values)")
        for name, t in tensors.items():
            bad = int(t.size - np.count_nonzero(np.isfinite(t)))
            if bad:
                return f"tensor {key}.{name} has {bad} non-finite values (NaN or infinity) of {t.size}"
            huge = int(np.count_nonzero(np.abs(t) > MAX_ABS_VALUE))
            if huge:
                return (f"tensor {key}.{name} has {huge} values beyond ±{MAX_ABS_VALUE:g} of {t.size} (the largest "
                        f"{float(np.abs(t).max()):.3g}): not fitted codebooks; tokenizing with them would overflow")
    return ""


DECODER_KEYS = {"deblock_width": int, "deblock_strength": float}


def decoder_problem(decoder: Any, frontend: Any) -> str:
    """Why a codebook file's ``decoder`` metadata cannot be used ("" if it can): per video scale,
    a deblocking width of 0 to half the scale's patch (pixels) and a strength from 0 to 1."""
    if not isinstance(decoder, dict):
        return f"metadata 'decoder' is a {type(decoder).__name__}, not an object"
    for key, params in decoder.items():
        if key not in ("video.fine", "video.coarse"):
            return f"metadata 'decoder' has {key!r}, not a video scale (video.fine, video.coarse)"
        if not isinstance(params, dict) or set(params) != set(DECODER_KEYS):
            return f"metadata 'decoder.{key}' is {params!r}, want the keys {sorted(DECODER_KEYS)}"
        width, strength = params["deblock_width"], params["deblock_strength"]
        patch = frontend.get("video", {}).get(f"{key.split('.')[1]}_patch") if isinstance(frontend, dict) else None
        if isinstance(width, bool) or not isinstance(width, int) or not isinstance(patch, int) \
                or not 0 <= width <= patch // 2:
            return f"metadata 'decoder.{key}.deblock_width' is {width!r}, want an integer from 0 to half the patch"
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength <= 1:
            return f"metadata 'decoder.{key}.deblock_strength' is {strength!r}, want a number from 0 to 1"
    return ""


def _d_reason(frontend: dict[str, dict[str, Any]], modality: str, scale: str) -> str:
    fe = frontend[modality]
    if modality == "audio":
        return f"n_mels={fe['n_mels']} x {scale}_frames={fe[f'{scale}_frames']}"
    return f"3 x {scale}_patch={fe[f'{scale}_patch']} squared"
