"""``livetok eval``: tokenize a file through the streaming path, decode the tokens, measure quality.

What is measured, per modality and scale (only the modalities the input has):

* video ``psnr_db[d-1]``: PSNR of the reconstruction from the first ``d`` RVQ levels against the
  model-resolution image (RGB, peak 255), MSE averaged over all frames; a still image is one frame.
  ``bits_per_pixel`` = code positions per frame x L x log2(K) / (size x size), at full depth
  (positions per frame is the full grid unless delta mode sent fewer).
* audio ``logmel_snr_db[d-1]``: ``10 log10(sum (x - mean_m)^2 / sum (x - x_hat)^2)`` over every
  step's log-mel values, where ``mean_m`` is the per-mel-band mean of the original ``x``. The mean
  is removed from the signal term because log-mel values sit on a large constant offset (digital
  silence is about -13.8): leaving it in would credit a decoder with "signal" it did not carry.
  ``bits_per_second`` = steps per second x L x log2(K).
* ``perplexity[level]``: ``exp(entropy)`` (nats) of that level's code histogram; 1 means one code
  is always used, K means all codes are used equally often.

With ``compare=True`` each modality also gets a ``reference`` entry, classic codecs at our rate:

* JPEG and WebP (Pillow) per frame at the bit budget of a scale at full depth: ``reference`` at
  the fine scale's budget, ``reference_coarse`` at the coarse scale's. The quality setting is
  binary-searched to the largest payload at or below the budget. When even the codec's lowest
  quality is over budget, the frame is encoded at a reduced resolution and scaled back up
  (bicubic) for the PSNR, the usual way to run an image codec below its rate floor; only if
  nothing fits is the smallest output used.
* What a codec's bits count (:func:`payload_bytes`): what a decoder that already holds the
  codec's fixed tables needs, as our decoder already holds the codebooks. JPEG is written with
  the standard (Annex K) Huffman tables, and its quantization tables are the standard ones scaled
  by the quality setting, so its DQT, DHT and APPn segments are not counted and one byte (the
  quality) is; WebP's 20 bytes of RIFF container are not counted. Everything else is: frame and
  scan headers, entropy-coded data.
* Opus (libopus via PyAV) on the model-rate mono signal the tokenizer saw, at the bitrate nearest
  to our fine ``bits_per_second`` that libopus supports (6 to 510 kb/s); its decoded audio goes
  through the same log-mel front end and its ``bits_per_second`` counts the Opus packet bytes.
"""
# Over 450 lines because the codebook-quality work (issue 15) reworks this module in parallel: it was
# moved whole into commands/ and is split once that work has landed.

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from livetok.commands.tokenize import TokenizeReport, tokenize_file
from livetok.config.tokenizer import AudioConfig
from livetok.errors import LivetokError, MediaError
from livetok.media.decode import decode
from livetok.media.frames import to_model_image
from livetok.tokenizers.audio_frontend import StreamingLogMel, StreamingResampler
from livetok.tokenizers.session import Tokenizers
from livetok.tokenizers.video import unpatchify
from livetok.wire import Modality, TokenPacket

SCALES = ("fine", "coarse")
PEAK = 255.0
MIN_ERROR = 1e-10  # an exact reconstruction reports a large finite figure, not inf (valid JSON)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # sample rates libopus accepts
OPUS_MIN_BPS, OPUS_MAX_BPS = 6000, 510000
IMAGE_CODECS = {"jpeg": ("JPEG", 1, 95), "webp": ("WEBP", 0, 100)}  # Pillow format, quality range
RECON_CHUNK = 32  # frames decoded together when measuring video reconstructions
DOWNSCALES = (7 / 8, 3 / 4, 5 / 8, 1 / 2, 3 / 8, 1 / 4, 3 / 16, 1 / 8, 1 / 16)


# ---------------------------------------------------------------------------------------------
# token packets -> full code grids / step sequences (shared with livetok.commands.inspect)


@dataclass(frozen=True)
class GridFrame:
    """One video frame's codes on the full grid: ``codes [rows * cols, L]`` uint16."""

    seq: int
    start_ns: int
    end_ns: int
    codes: np.ndarray
    sent: int  # positions the packet actually carried (the whole grid for a keyframe)


def video_grids(packets: Iterable[TokenPacket]) -> dict[tuple[str, str], list[GridFrame]]:
    """Video packets of the built-in scales -> per ``(source, scale)`` the frames in seq order with
    full code grids (a named stream's packets are left out: see :func:`named_streams`).

    A delta packet updates the positions it names on top of the last codes of each position; a
    delta packet before the stream's first full grid has nothing to update and is left out.
    """
    streams: dict[tuple[str, str], list[TokenPacket]] = defaultdict(list)
    for p in packets:
        if p.modality == Modality.VIDEO and p.scale is not None:  # named streams: not ours to decode
            streams[(p.source, p.stream_name)].append(p)
    out: dict[tuple[str, str], list[GridFrame]] = {}
    for key, pkts in streams.items():
        frames: list[GridFrame] = []
        grid: np.ndarray | None = None
        for p in sorted(pkts, key=lambda p: (p.seq, p.start_ns)):
            if p.positions is None:
                grid = p.codes.copy()
            elif grid is None or grid.shape[1] != p.codes.shape[1]:
                continue
            else:
                grid = grid.copy()
                grid[p.positions.astype(np.int64)] = p.codes
            frames.append(GridFrame(p.seq, p.start_ns, p.end_ns, grid, int(p.codes.shape[0])))
        out[key] = frames
    return out


@dataclass(frozen=True)
class AudioSteps:
    """One audio stream's steps in seq order: ``seqs [N]`` int64, ``codes [N, L]`` uint16."""

    seqs: np.ndarray
    codes: np.ndarray
    start_ns: int  # start of step 0 of the stream (t0), from the first packet


def audio_steps(packets: Iterable[TokenPacket], step_ns: dict[str, float]) -> dict[tuple[str, str], AudioSteps]:
    """Audio packets of the built-in scales -> per ``(source, scale)`` their steps (duplicates of a
    seq: the last wins; a named stream's packets are left out)."""
    streams: dict[tuple[str, str], dict[int, TokenPacket]] = defaultdict(dict)
    for p in packets:
        if p.modality == Modality.AUDIO and p.scale is not None and p.codes.shape[0] == 1:
            streams[(p.source, p.stream_name)][p.seq] = p
    out = {}
    for (source, scale), by_seq in streams.items():
        seqs = np.array(sorted(by_seq), dtype=np.int64)
        codes = np.concatenate([by_seq[int(s)].codes for s in seqs])
        first = by_seq[int(seqs[0])]
        t0 = first.start_ns - round(int(seqs[0]) * step_ns[scale])
        out[(source, scale)] = AudioSteps(seqs, codes, t0)
    return out


def named_streams(packets: Iterable[TokenPacket]) -> list[dict[str, Any]]:
    """The named streams (plug-in tokenizers', wire v2) among ``packets``, which the built-in
    codebooks cannot decode: ``[{"source", "modality", "stream", "packets"}]`` in order of appearance."""
    counts: dict[tuple[str, str, str], int] = {}
    for p in packets:
        if p.scale is None:
            key = (p.source, p.modality.name.lower(), p.stream)
            counts[key] = counts.get(key, 0) + 1
    return [{"source": s, "modality": m, "stream": n, "packets": c} for (s, m, n), c in counts.items()]


def named_note(named: list[dict[str, Any]]) -> str:
    """``"named streams not decoded (no decoder for a plug-in tokenizer's codes): cam/audio/units (250 packets)"``."""
    listed = ", ".join(f"{d['source']}/{d['modality']}/{d['stream']} ({d['packets']} packets)" for d in named)
    return f"named streams not decoded (no decoder for a plug-in tokenizer's codes): {listed}"


def audio_step_ns(toks: Tokenizers) -> dict[str, float]:
    rate = toks.cfg.audio.sample_rate
    return {s: n * 1e9 / rate for s, n in toks.audio.step_samples.items()}


# ---------------------------------------------------------------------------------------------
# the original signals, through the tokenizer's own front ends


def model_images(path: Path, toks: Tokenizers) -> Iterator[tuple[int, np.ndarray]]:
    """``(pts_ns, [S, S, 3] uint8)`` for every video frame, as the tokenizer sees it."""
    cfg = toks.cfg.video
    for mf in decode(path, audio=False):
        if isinstance(mf.frame, av.VideoFrame):
            yield mf.pts_ns, to_model_image(mf.frame, cfg.size, cfg.aspect)


def model_rate_samples(path: Path, rate: int) -> np.ndarray | None:
    """The first audio stream as mono float32 at ``rate`` (None: no audio stream)."""
    resampler = StreamingResampler(rate)
    chunks = [resampler.push(mf.frame) for mf in decode(path, video=False) if isinstance(mf.frame, av.AudioFrame)]
    if not chunks:
        return None
    chunks.append(resampler.flush())
    return np.concatenate(chunks).astype(np.float32, copy=False)


def stream_logmel(samples: np.ndarray, toks: Tokenizers) -> np.ndarray:
    """Log-mel ``[F, n_mels]`` of model-rate samples exactly as an audio stream computes it,
    including the zero padding at flush that completes the last coarse step."""
    cfg: AudioConfig = toks.cfg.audio
    coarse = toks.audio.step_samples["coarse"]
    n = samples.size
    covered = -(-n // coarse) * coarse
    pad = max(0, covered + toks.audio.latency_samples - n) if n else 0
    padded = np.concatenate([samples.astype(np.float64), np.zeros(pad)])
    return StreamingLogMel(cfg).push(padded)


def source_logmel(path: Path, toks: Tokenizers) -> np.ndarray | None:
    """The log-mel frames ``[F, n_mels]`` a file's audio gives (None: no audio)."""
    samples = model_rate_samples(path, toks.cfg.audio.sample_rate)
    return None if samples is None else stream_logmel(samples, toks)


# ---------------------------------------------------------------------------------------------
# measures


def psnr_db(mse: float) -> float:
    return 10.0 * math.log10(PEAK * PEAK / max(mse, MIN_ERROR))


def snr_db(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Log-mel SNR of frames ``[F, n_mels]``, the per-mel mean removed from the signal term."""
    signal = float(np.sum((x - x.mean(axis=0)) ** 2))
    noise = float(np.sum((x - x_hat) ** 2))
    return 10.0 * math.log10(max(signal, MIN_ERROR) / max(noise, MIN_ERROR))


def perplexity(codes: np.ndarray, k: int) -> list[float]:
    """``exp(entropy)`` of each level's code histogram; ``codes [N, L]``."""
    out = []
    for level in range(codes.shape[1]):
        hist = np.bincount(codes[:, level].astype(np.int64), minlength=k).astype(np.float64)
        total = hist.sum()
        if total == 0:
            out.append(1.0)
            continue
        p = hist[hist > 0] / total
        out.append(float(np.exp(-np.sum(p * np.log(p)))))
    return out


# ---------------------------------------------------------------------------------------------
# video


@dataclass
class _CodecTotals:
    bytes: int = 0
    sse: float = 0.0


def evaluate_video(path: Path, packets: list[TokenPacket], toks: Tokenizers, compare: bool) -> dict[str, Any]:
    source = packets[0].source
    grids = video_grids(packets)
    size = toks.cfg.video.size
    pixels = size * size
    n_frames = len(grids.get((source, "fine"), []))
    if n_frames == 0:
        raise LivetokError(f"{path}: no complete video frame was tokenized")
    frames = {s: grids[(source, s)] for s in SCALES}
    levels = {s: frames[s][0].codes.shape[1] for s in SCALES}
    sse = {s: np.zeros(levels[s]) for s in SCALES}
    ks = {s: toks.video.quantizers[s].codebook_size for s in SCALES}
    sent = {s: sum(f.sent for f in frames[s]) for s in SCALES}
    bpp = {s: sent[s] / len(frames[s]) * levels[s] * math.log2(ks[s]) / pixels for s in SCALES}
    budgets = {s: int(bpp[s] * pixels // 8) for s in SCALES}  # bytes per frame for the reference codecs
    ref = {(s, name): _CodecTotals() for s in SCALES for name in IMAGE_CODECS}

    seen = 0
    chunk: list[np.ndarray] = []
    for _, image in model_images(path, toks):
        if seen >= n_frames:
            break
        chunk.append(image)
        if compare:
            orig = image.astype(np.float64)
            for (s, name), totals in ref.items():
                nbytes, decoded = encode_at_budget(image, name, budgets[s])
                totals.bytes += nbytes
                totals.sse += float(np.sum((orig - decoded.astype(np.float64)) ** 2))
        seen += 1
        if len(chunk) == RECON_CHUNK or seen == n_frames:
            _add_errors(toks, chunk, {s: frames[s][seen - len(chunk) : seen] for s in SCALES}, sse)
            chunk = []
    if seen != n_frames:
        raise LivetokError(f"{path}: decoded {seen} video frames but {n_frames} were tokenized")

    values = pixels * 3 * seen
    out: dict[str, Any] = {}
    for s in SCALES:
        all_codes = np.concatenate(
            [p.codes for p in packets if p.source == source and p.stream_name == s]
        )
        out[s] = {
            "psnr_db": [psnr_db(e / values) for e in sse[s]],
            "bits_per_pixel": bpp[s],
            "perplexity": perplexity(all_codes, ks[s]),
        }
    if compare:
        for s, key in (("fine", "reference"), ("coarse", "reference_coarse")):
            out[key] = {
                name: {"bits_per_pixel": t.bytes * 8 / (pixels * seen), "psnr_db": psnr_db(t.sse / values)}
                for (scale, name), t in ref.items()
                if scale == s
            }
    return out


def _add_errors(toks: Tokenizers, images: list[np.ndarray], frames: dict[str, list[GridFrame]],
                sse: dict[str, np.ndarray]) -> None:
    """Add each depth's squared reconstruction error over ``images`` to ``sse[scale][depth - 1]``;
    one decode per depth for the whole chunk (the same arithmetic as ``VideoTokenizer.reconstruct``)."""
    orig = np.stack(images).astype(np.float64)
    for s in SCALES:
        codes = np.concatenate([f.codes for f in frames[s]])
        per_frame = frames[s][0].codes.shape[0]
        patch = toks.video.patch[s]
        for d in range(1, len(sse[s]) + 1):
            x = toks.video.quantizers[s].decode(codes, d)
            rec = np.stack([unpatchify(x[i * per_frame : (i + 1) * per_frame], patch) for i in range(len(images))])
            rec = toks.video.finish(rec, s)
            sse[s][d - 1] += float(np.sum((orig - rec.astype(np.float64)) ** 2))


JPEG_TABLE_MARKERS = {0xC4, 0xDB, 0xFE, *range(0xE0, 0xF0)}  # DHT, DQT, COM, APPn: fixed or not needed
WEBP_CONTAINER = 20  # "RIFF" size "WEBP", then the "VP8 " chunk's tag and size


def payload_bytes(data: bytes, codec: str) -> int:
    """The bytes of an encoded image that a decoder holding the codec's fixed tables needs (module
    doc): a JPEG less its DQT, DHT, COM and APPn segments, plus one byte for the quality setting
    those tables follow from; a WebP less its RIFF container."""
    if codec == "webp":
        return len(data) - WEBP_CONTAINER
    skipped, i = 0, 2  # after SOI
    while i + 4 <= len(data) and data[i] == 0xFF and data[i + 1] != 0xDA:  # up to the scan
        length = 2 + (data[i + 2] << 8 | data[i + 3])
        if data[i + 1] in JPEG_TABLE_MARKERS:
            skipped += length
        i += length
    return len(data) - skipped + 1


def encode_image(image: np.ndarray, codec: str, quality: int, side: int) -> tuple[int, np.ndarray]:
    """Encode ``image [S, S, 3]`` (shrunk to ``side`` first when smaller) -> payload bytes
    (:func:`payload_bytes`), decoded at S."""
    fmt = IMAGE_CODECS[codec][0]
    size = image.shape[0]
    im = Image.fromarray(image)
    if side != size:
        im = im.resize((side, side), Image.Resampling.BOX)
    buf = io.BytesIO()
    if fmt == "JPEG":
        im.save(buf, fmt, quality=quality, optimize=False)  # the standard Huffman tables: not counted
    else:
        im.save(buf, fmt, quality=quality, method=6)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as dec:
        out = dec.convert("RGB")
        if side != size:
            out = out.resize((size, size), Image.Resampling.BICUBIC)
        return payload_bytes(data, codec), np.asarray(out)


def encode_at_budget(image: np.ndarray, codec: str, budget: int) -> tuple[int, np.ndarray]:
    """The codec's best reconstruction whose payload is at most ``budget`` bytes: at each size
    (full first, then smaller ones) the highest quality that fits, and of those sizes the one with
    the lowest error, searched downwards until a smaller size stops helping; the smallest output
    if nothing fits."""
    size = image.shape[0]
    orig = image.astype(np.float64)
    smallest: tuple[int, np.ndarray] | None = None
    best: tuple[float, tuple[int, np.ndarray]] | None = None
    for side in (size, *sorted({max(8, round(size * f)) for f in DOWNSCALES}, reverse=True)):
        fit = _best_quality(image, codec, budget, side)
        if fit is None:
            floor = encode_image(image, codec, IMAGE_CODECS[codec][1], side)
            if smallest is None or floor[0] < smallest[0]:
                smallest = floor
            continue
        err = float(np.mean((orig - fit[1]) ** 2))
        if best is not None and err >= best[0]:
            break
        best = (err, fit)
    if best is not None:
        return best[1]
    assert smallest is not None
    return smallest


def _best_quality(image: np.ndarray, codec: str, budget: int, side: int) -> tuple[int, np.ndarray] | None:
    """The highest quality whose payload at ``side`` is at most ``budget`` bytes (None: none is)."""
    _, q_lo, q_hi = IMAGE_CODECS[codec]
    floor = encode_image(image, codec, q_lo, side)
    if floor[0] > budget:
        return None
    best, lo, hi = floor, q_lo + 1, q_hi
    while lo <= hi:  # sizes grow (almost) monotonically with the quality
        mid = (lo + hi) // 2
        trial = encode_image(image, codec, mid, side)
        if trial[0] <= budget:
            best, lo = trial, mid + 1
        else:
            hi = mid - 1
    return best


# ---------------------------------------------------------------------------------------------
# audio


def evaluate_audio(path: Path, packets: list[TokenPacket], toks: Tokenizers, compare: bool) -> dict[str, Any]:
    cfg = toks.cfg.audio
    source = packets[0].source
    samples = model_rate_samples(path, cfg.sample_rate)
    if samples is None:
        raise MediaError(f"{path}: audio was tokenized but cannot be decoded again")
    mel = stream_logmel(samples, toks)
    steps = audio_steps(packets, audio_step_ns(toks))
    out: dict[str, Any] = {}
    for s in SCALES:
        st = steps[(source, s)]
        q = toks.audio.quantizers[s]
        fps = toks.audio.frames_per_step[s]
        keep = (st.seqs + 1) * fps <= mel.shape[0]
        seqs, codes = st.seqs[keep], st.codes[keep]
        rows = (seqs[:, None] * fps + np.arange(fps)[None, :]).reshape(-1)
        x = mel[rows]
        snrs = [snr_db(x, q.decode(codes, d).reshape(-1, cfg.n_mels)) for d in range(1, codes.shape[1] + 1)]
        steps_per_s = cfg.sample_rate / toks.audio.step_samples[s]
        out[s] = {
            "logmel_snr_db": snrs,
            "bits_per_second": steps_per_s * codes.shape[1] * math.log2(q.codebook_size),
            "perplexity": perplexity(st.codes, q.codebook_size),
        }
    if compare:
        bitrate = min(max(math.ceil(out["fine"]["bits_per_second"]), OPUS_MIN_BPS), OPUS_MAX_BPS)
        nbytes, decoded = opus_round_trip(samples, cfg.sample_rate, bitrate)
        opus_mel = stream_logmel(decoded, toks)
        frames = min(mel.shape[0], opus_mel.shape[0])
        out["reference"] = {
            "opus": {
                "bits_per_second": nbytes * 8 * cfg.sample_rate / max(samples.size, 1),
                "logmel_snr_db": snr_db(mel[:frames], opus_mel[:frames]),
            }
        }
    return out


def opus_round_trip(samples: np.ndarray, rate: int, bitrate: int) -> tuple[int, np.ndarray]:
    """Mono ``samples`` at ``rate`` -> Opus at ``bitrate`` -> (packet bytes, decoded samples at
    ``rate``, cut or zero-padded to the input length). Ogg's pre-skip keeps the two aligned."""
    opus_rate = rate if rate in OPUS_RATES else 48000
    x = samples.astype(np.float32)
    if opus_rate != rate:
        up = StreamingResampler(opus_rate)
        x = np.concatenate([up.push_array(x[None, :], rate), up.flush()])
    buf = io.BytesIO()
    nbytes = 0
    try:
        with av.open(buf, "w", format="ogg") as oc:
            stream = oc.add_stream("libopus", rate=opus_rate, layout="mono")
            stream.bit_rate = bitrate
            chunk = opus_rate // 10
            for i in range(0, x.size, chunk):
                frame = av.AudioFrame.from_ndarray(x[None, i : i + chunk], format="flt", layout="mono")
                frame.sample_rate = opus_rate
                frame.pts = i
                for pkt in stream.encode(frame):
                    nbytes += pkt.size
                    oc.mux(pkt)
            for pkt in stream.encode(None):
                nbytes += pkt.size
                oc.mux(pkt)
        buf.seek(0)
        back = StreamingResampler(rate)
        chunks = []
        with av.open(buf, "r") as ic:
            for frame in ic.decode(ic.streams.audio[0]):
                chunks.append(back.push(frame))
        chunks.append(back.flush())
    except (av.FFmpegError, ValueError) as err:
        raise MediaError(f"Opus reference failed (is libopus in this PyAV build?): {err}") from err
    y = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    n = samples.size
    y = y[:n] if y.size >= n else np.concatenate([y, np.zeros(n - y.size, np.float32)])
    return nbytes, y


# ---------------------------------------------------------------------------------------------
# entry points


def evaluate(path: Path, toks: Tokenizers, compare: bool = True) -> dict[str, Any]:
    """Tokenize ``path`` through the streaming path, decode, and report quality (see module doc)."""
    path = Path(path)
    packets = tokenize_file(path, toks, path.stem or "input", None, TokenizeReport())
    named = named_streams(packets)
    video = [p for p in packets if p.modality == Modality.VIDEO and p.scale is not None]
    audio = [p for p in packets if p.modality == Modality.AUDIO and p.scale is not None]
    if not video and not audio and not named:
        raise MediaError(f"{path}: nothing was tokenized (no decodable audio or video)")
    report: dict[str, Any] = {"skipped": named} if named else {}
    if video:
        report["video"] = evaluate_video(path, video, toks, compare)
    if audio:
        report["audio"] = evaluate_audio(path, audio, toks, compare)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned plain-text tables, one per modality."""
    lines: list[str] = []
    specs = {
        "video": ("bits/pixel", "bits_per_pixel", "PSNR dB", "psnr_db", "{:.4f}"),
        "audio": ("bits/second", "bits_per_second", "log-mel SNR dB", "logmel_snr_db", "{:.0f}"),
    }
    for modality, (rate_name, rate_key, q_name, q_key, rate_fmt) in specs.items():
        if modality not in report:
            continue
        section = report[modality]
        scales = [s for s in SCALES if s in section]
        depth = max(len(section[s][q_key]) for s in scales)
        lines.append(f"{modality}")
        head = (f"  {'':<18}{rate_name:>12}   {q_name + ' at RVQ depth 1..' + str(depth):<{9 * depth + 2}}"
                f"perplexity per level")
        lines.append(head)
        for s in scales:
            e = section[s]
            quality = "".join(f"{v:>9.2f}" for v in e[q_key])
            perp = "".join(f"{v:>9.1f}" for v in e["perplexity"])
            lines.append(f"  {s:<18}{rate_fmt.format(e[rate_key]):>12}   {quality:<{9 * depth + 2}}{perp}")
        for key, label in (("reference", "{} (reference)"), ("reference_coarse", "{} (coarse ref.)")):
            for name, e in section.get(key, {}).items():
                at_full = " " * 9 * (depth - 1) + f"{e[q_key]:>9.2f}"  # compares with full depth
                lines.append(f"  {label.format(name):<18}{rate_fmt.format(e[rate_key]):>12}   {at_full}")
        lines.append("")
    if report.get("skipped"):
        lines.append("note: " + named_note(report["skipped"]))
    return "\n".join(lines).rstrip("\n")
