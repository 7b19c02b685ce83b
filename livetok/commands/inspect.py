"""``livetok inspect``: one PNG that lets a person judge a token file by eye.

Video: up to four evenly spaced frames, one row each: the original (with ``--source``), then the
reconstruction of every scale (fine, coarse) at every RVQ depth 1..L, each captioned with its bits
per pixel and, with the original at hand, its PSNR. Delta packets are applied on top of the last
codes of each grid position, so every drawn frame is a full grid.

Audio: the log-mel spectrogram of the source (with ``--source``) above its reconstruction from the
fine and the coarse tokens at full depth, on one colour scale (a viridis-like map, colour bar at the
right) and one time axis in media seconds; low mel bands at the bottom; steps with no tokens grey.

The picture shows one source of the token file: the one named like ``--source``'s file stem when
there is one, else the first in the file. Named streams (plug-in tokenizers', wire v2) cannot be
decoded with the built-in codebooks: they are listed under the title, not drawn; a file that holds
nothing else is one line and exit 65.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from livetok.commands.quality import (
    SCALES,
    AudioSteps,
    GridFrame,
    audio_step_ns,
    audio_steps,
    model_images,
    named_note,
    named_streams,
    psnr_db,
    snr_db,
    source_logmel,
    video_grids,
)
from livetok.errors import CodebookError, DecodeError, OutputError
from livetok.outputs import atomic_output, describe_oserror
from livetok.tokenizers.session import Tokenizers
from livetok.wire import AlignedStep, TokenPacket, read_ltk

MAX_FRAMES = 4
MARGIN = 16  # around the picture (px)
GAP = 8  # between tiles and between spectrogram rows (px)
FONT_SIZE = 13
LINE_H = 16  # one line of text (px)
TITLE_H = 2 * LINE_H + 8  # two title lines
SECTION_H = LINE_H + 8  # a section heading ("video ...", "audio ...")
CAPTION_H = 2 * LINE_H + 2  # two caption lines above each tile
LABEL_W = 132  # the left column with row labels (px)
SPEC_ROW_H = 160  # one spectrogram (px): 2 px per mel band at 80 mels
AXIS_H = LINE_H + 10  # tick marks and second labels under the spectrograms
AUDIO_MIN_W = 960  # content width when there is little or no video (px)
COLORBAR_W = 64  # colour bar and its labels, inside the content width at the right (px)

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
FAINT = (110, 110, 110)
MISSING = (150, 150, 150)  # no data (no original frame, steps without tokens)

# viridis sampled at 0, 1/8, ..., 1 (matplotlib's values, rounded); interpolated linearly
_VIRIDIS = np.array([
    (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
    (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37),
], dtype=np.float64)


def colormap(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """``values [H, W]`` -> ``[H, W, 3]`` uint8 in a viridis-like map; NaN -> grey."""
    t = np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    pos = np.nan_to_num(t, nan=0.0) * (len(_VIRIDIS) - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(_VIRIDIS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac
    rgb[np.isnan(values)] = MISSING
    return np.rint(rgb).astype(np.uint8)


@dataclass(frozen=True)
class Layout:
    """Pixel geometry of the picture, a function of what is drawn only."""

    tile: int
    columns: int  # video tiles per row (0: no video)
    rows: int  # video frames drawn
    spectrograms: int  # spectrogram rows (0: no audio)
    notes: int = 0  # lines under the title (the named streams not drawn)

    @property
    def video_w(self) -> int:
        return self.columns * self.tile + max(self.columns - 1, 0) * GAP

    @property
    def content_w(self) -> int:
        return max(self.video_w, AUDIO_MIN_W) if self.spectrograms else self.video_w

    @property
    def video_h(self) -> int:
        return SECTION_H + self.rows * (CAPTION_H + self.tile + GAP) if self.rows else 0

    @property
    def audio_h(self) -> int:
        return SECTION_H + self.spectrograms * (SPEC_ROW_H + GAP) + AXIS_H if self.spectrograms else 0

    @property
    def size(self) -> tuple[int, int]:
        width = 2 * MARGIN + LABEL_W + self.content_w
        height = 2 * MARGIN + TITLE_H + self.notes * (LINE_H + 4) + self.video_h + self.audio_h
        return width, height


def _token_packets(items: list[TokenPacket | AlignedStep]) -> list[TokenPacket]:
    out: list[TokenPacket] = []
    for item in items:
        out.extend(item.packets if isinstance(item, AlignedStep) else [item])
    return out


def load_packets(ltk: Path, toks: Tokenizers) -> tuple[list[TokenPacket], list[str]]:
    """The token packets of a .ltk file (named streams' included) and the reader's message for each
    damaged region skipped; the built-in streams' packets checked against the loaded codebooks."""
    result = read_ltk(ltk)  # DecodeError (one line) for a missing or non-.ltk file
    packets = _token_packets(result.packets)
    if not packets:
        extra = f" ({len(result.errors)} damaged regions)" if result.errors else ""
        raise DecodeError(f"{ltk}: no token packets in the file{extra}")
    if all(p.scale is None for p in packets):
        raise DecodeError(f"{ltk}: nothing to draw: {named_note(named_streams(packets))}")
    want = toks.codebooks.codebook_id
    for p in packets:
        if p.scale is not None and p.codebook_id != want:
            raise CodebookError(
                f"{ltk}: tokens were made with codebooks {p.codebook_id} but the loaded codebooks are "
                f"{want} ({toks.codebooks.source}); pass the matching config with -c"
            )
    return packets, result.errors


def pick_source(packets: list[TokenPacket], media: Path | None) -> str:
    names = list(dict.fromkeys(p.source for p in packets))
    if media is not None and media.stem in names:
        return media.stem
    return names[0]


def evenly_spaced(n: int, k: int = MAX_FRAMES) -> list[int]:
    """``k`` indices at the centres of ``k`` equal parts of ``range(n)``: never the very first or
    last frame, and not in step with round periods (a marker every 2 s at 30 fps)."""
    if n <= k:
        return list(range(n))
    return sorted({min(n - 1, int((i + 0.5) * n / k)) for i in range(k)})


def original_frames(media: Path, toks: Tokenizers, wanted: list[int]) -> dict[int, np.ndarray]:
    """``start_ns -> model image`` of the source's frames at (or nearest to) the wanted times."""
    best: dict[int, tuple[int, np.ndarray]] = {}
    todo = set(wanted)
    for pts, image in model_images(media, toks):
        for t in wanted:
            if t not in best or abs(pts - t) < best[t][0]:
                best[t] = (abs(pts - t), image)
        todo.discard(pts)
        if not todo:
            break
    return {t: image for t, (_, image) in best.items()}


class _Canvas:
    def __init__(self, size: tuple[int, int]) -> None:
        self.image = Image.new("RGB", size, BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)
        self.font = ImageFont.load_default(size=FONT_SIZE)
        self.bold = ImageFont.load_default(size=FONT_SIZE + 2)

    def text(self, xy: tuple[float, float], s: str, fill: tuple[int, int, int] = INK,
             anchor: str = "la", bold: bool = False) -> None:
        self.draw.text(xy, s, fill=fill, font=self.bold if bold else self.font, anchor=anchor)

    def fit(self, s: str, width: int) -> str:
        """``s`` cut with an ellipsis to fit ``width`` pixels."""
        if self.draw.textlength(s, font=self.font) <= width:
            return s
        while s and self.draw.textlength(s + "…", font=self.font) > width:
            s = s[:-1]
        return s + "…"

    def label_lines(self, x: int, centre_y: int, lines: list[str]) -> None:
        """A row label: the first line bold, the others faint, centred vertically on ``centre_y``."""
        y = centre_y - len(lines) * LINE_H // 2
        for i, s in enumerate(lines):
            self.text((x, y + i * LINE_H), self.fit(s, LABEL_W - 8), fill=INK if i == 0 else FAINT, bold=i == 0)

    def paste(self, rgb: np.ndarray, xy: tuple[int, int]) -> None:
        self.image.paste(Image.fromarray(rgb), xy)

    def placeholder(self, box: tuple[int, int, int, int], s: str) -> None:
        self.draw.rectangle(box, fill=(225, 225, 225), outline=MISSING)
        self.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), s, fill=FAINT, anchor="mm")


def inspect(ltk: Path, out_png: Path, toks: Tokenizers, source: Path | None) -> list[str]:
    """Draw the inspection picture of ``ltk`` (see module doc) into ``out_png``, atomically.

    Returns the reader's message for each damaged region of the token file that was skipped (the
    picture shows what could be read, and says how many regions were skipped)."""
    ltk, out_png = Path(ltk), Path(out_png)
    packets, skipped = load_packets(ltk, toks)
    damaged = len(skipped)
    named = named_streams(packets)
    packets = [p for p in packets if p.scale is not None]
    name = pick_source(packets, source)
    mine = [p for p in packets if p.source == name]
    n_sources = len({p.source for p in packets})

    grids = video_grids(mine)
    frames = {s: grids.get((name, s), []) for s in SCALES}
    fine_by_seq = {f.seq: f for f in frames["fine"]}
    coarse_by_seq = {f.seq: f for f in frames["coarse"]}
    shown = [frames["fine"][i] for i in evenly_spaced(len(frames["fine"]))]
    levels = {s: toks.video.quantizers[s].levels for s in SCALES}
    columns = (1 if source is not None else 0) + sum(levels.values()) if shown else 0

    steps = audio_steps(mine, audio_step_ns(toks))
    has_audio = any((name, s) in steps for s in SCALES)
    n_spec = (1 if source is not None else 0) + len(SCALES) if has_audio else 0

    layout = Layout(toks.cfg.video.size, columns, len(shown), n_spec, 1 if named else 0)
    canvas = _Canvas(layout.size)
    x0, y = MARGIN, MARGIN
    title = f"livetok inspect: {ltk.name}   source '{name}'"
    if n_sources > 1:
        title += f" (1 of {n_sources} sources in the file)"
    canvas.text((x0, y), canvas.fit(title, layout.size[0] - 2 * MARGIN), bold=True)
    sub = f"codebooks {toks.codebooks.codebook_id}   {len(mine)} packets"
    sub += f"   original: {source.name}" if source is not None else "   no --source: reconstructions only"
    if damaged:
        sub += f"   ({damaged} damaged regions skipped)"
    canvas.text((x0, y + LINE_H + 4), canvas.fit(sub, layout.size[0] - 2 * MARGIN), fill=FAINT)
    y += TITLE_H
    if named:
        canvas.text((x0, y), canvas.fit(named_note(named), layout.size[0] - 2 * MARGIN), fill=FAINT)
        y += LINE_H + 4

    if shown:
        originals = original_frames(source, toks, [f.start_ns for f in shown]) if source is not None else {}
        _draw_video(canvas, layout, y, shown, fine_by_seq, coarse_by_seq, originals, source is not None, toks)
        y += layout.video_h
    if has_audio:
        mel = source_logmel(source, toks) if source is not None else None
        _draw_audio(canvas, layout, y, steps, name, mel, source is not None, toks)

    with atomic_output(out_png) as tmp:
        try:
            canvas.image.save(tmp, "PNG", optimize=True)
        except OSError as err:
            raise OutputError(f"{out_png}: cannot write it: {describe_oserror(err)}") from err
    return skipped


def _draw_video(canvas: _Canvas, layout: Layout, top: int, shown: list[GridFrame],
                fine: dict[int, GridFrame], coarse: dict[int, GridFrame], originals: dict[int, np.ndarray],
                with_original: bool, toks: Tokenizers) -> None:
    size = layout.tile
    pixels = size * size
    n_total = len(fine)
    canvas.text((MARGIN, top), f"video   {n_total} frames, {len(shown)} shown   "
                f"model input {size}x{size}; tiles: reconstruction from the first d RVQ levels", bold=True)
    y = top + SECTION_H
    origin_ns = min(f.start_ns for f in fine.values())  # times from the first frame (live: UNIX ns)
    for frame in shown:
        x = MARGIN + LABEL_W
        label = [f"frame {frame.seq}", f"t = {(frame.start_ns - origin_ns) / 1e9:.3f} s"]
        canvas.label_lines(MARGIN, y + CAPTION_H + size // 2, label)
        orig = originals.get(frame.start_ns)
        if with_original:
            canvas.text((x, y), "original", bold=True)
            canvas.text((x, y + LINE_H), "model input", fill=FAINT)
            box = (x, y + CAPTION_H, x + size - 1, y + CAPTION_H + size - 1)
            if orig is not None:
                canvas.paste(orig, (x, y + CAPTION_H))
            else:
                canvas.placeholder(box, "no frame in source")
            x += size + GAP
        for scale, by_seq in (("fine", fine), ("coarse", coarse)):
            q = toks.video.quantizers[scale]
            g = by_seq.get(frame.seq)
            for d in range(1, q.levels + 1):
                head = f"{scale}, depth {d}/{q.levels}"
                if g is None:
                    canvas.text((x, y), head, bold=True)
                    canvas.placeholder((x, y + CAPTION_H, x + size - 1, y + CAPTION_H + size - 1), "no tokens")
                    x += size + GAP
                    continue
                rec = toks.video.reconstruct(g.codes, scale, d)
                bpp = g.codes.shape[0] * d * math.log2(q.codebook_size) / pixels
                stats = f"{bpp:.3f} bpp"
                if orig is not None:
                    mse = float(np.mean((orig.astype(np.float64) - rec.astype(np.float64)) ** 2))
                    stats += f", PSNR {psnr_db(mse):.1f} dB"
                canvas.text((x, y), head, bold=True)
                canvas.text((x, y + LINE_H), stats, fill=FAINT)
                canvas.paste(rec, (x, y + CAPTION_H))
                x += size + GAP
        y += CAPTION_H + size + GAP


def _steps_to_frames(st: AudioSteps, toks: Tokenizers, scale: str, n_frames: int) -> np.ndarray:
    """Decoded log-mel ``[n_frames, n_mels]`` at full depth; frames without tokens are NaN."""
    fps = toks.audio.frames_per_step[scale]
    n_mels = toks.cfg.audio.n_mels
    out = np.full((n_frames, n_mels), np.nan)
    x = toks.audio.quantizers[scale].decode(st.codes).reshape(-1, fps, n_mels)
    for seq, block in zip(st.seqs.tolist(), x, strict=True):
        lo = seq * fps
        if lo < n_frames:
            out[lo : min(lo + fps, n_frames)] = block[: n_frames - lo]
    return out


def _nice_step(span_s: float, target: int = 10) -> float:
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if span_s / step <= target:
            return float(step)
    return 3600.0 * math.ceil(span_s / target / 3600.0)


def _draw_audio(canvas: _Canvas, layout: Layout, top: int, steps: dict[tuple[str, str], AudioSteps],
                name: str, mel: np.ndarray | None, with_source: bool, toks: Tokenizers) -> None:
    cfg = toks.cfg.audio
    hop_s = cfg.hop_length / cfg.sample_rate
    # the shortest extent: the coarse scale's last step reaches past the end of the audio
    n_frames = min(
        int(st.seqs.max() + 1) * toks.audio.frames_per_step[s] for (src, s), st in steps.items() if src == name
    )
    rows: list[tuple[list[str], np.ndarray | None]] = []
    ref = None
    if with_source:
        if mel is not None:
            ref = np.full((n_frames, cfg.n_mels), np.nan)
            k = min(n_frames, mel.shape[0])
            ref[:k] = mel[:k]
        rows.append((["source", "original log-mel" if ref is not None else "no audio in source"], ref))
    for s in SCALES:
        st = steps.get((name, s))
        q = toks.audio.quantizers[s]
        lines = [f"{s}, depth {q.levels}/{q.levels}"]
        if st is None:
            rows.append(([*lines, "no tokens"], None))
            continue
        x = _steps_to_frames(st, toks, s, n_frames)
        bps = cfg.sample_rate / toks.audio.step_samples[s] * q.levels * math.log2(q.codebook_size)
        lines.append(f"{bps:.0f} bit/s")
        if ref is not None:
            ok = ~np.isnan(ref).any(axis=1) & ~np.isnan(x).any(axis=1)
            if ok.any():
                lines.append(f"SNR {snr_db(ref[ok], x[ok]):.1f} dB")
        rows.append((lines, x))

    scale_src = next((v for _, v in rows if v is not None and not np.isnan(v).all()), None)
    finite = scale_src[~np.isnan(scale_src)] if scale_src is not None else np.zeros(1)
    vmin, vmax = float(np.percentile(finite, 1)), float(np.percentile(finite, 99.9))
    if vmax <= vmin:
        vmax = vmin + 1.0

    spec_w = layout.content_w - COLORBAR_W
    left = MARGIN + LABEL_W
    span_s = n_frames * hop_s
    canvas.text((MARGIN, top), f"audio   log-mel spectrogram, {cfg.n_mels} bands (low frequencies at the bottom), "
                f"{span_s:.2f} s; colour: natural-log mel power", bold=True)
    y = top + SECTION_H
    first_y = y
    for lines, values in rows:
        canvas.label_lines(MARGIN, y + SPEC_ROW_H // 2, lines)
        box = (left, y, left + spec_w - 1, y + SPEC_ROW_H - 1)
        if values is None:
            canvas.placeholder(box, lines[-1])
        else:
            canvas.paste(_spectrogram(values, spec_w, vmin, vmax), (left, y))
        y += SPEC_ROW_H + GAP

    # time axis (media seconds) under the last row, with faint tick lines through the rows
    step = _nice_step(span_s)
    # ticks in seconds from the first audio step (live packets carry UNIX times: absolute
    # seconds since 1970 would say nothing here)
    axis_y = y - GAP + 2
    t = 0.0
    while t <= span_s + 1e-9:
        px = left + round(t / span_s * (spec_w - 1))
        canvas.draw.line([(px, axis_y), (px, axis_y + 5)], fill=INK)
        for ry in range(first_y, y, SPEC_ROW_H + GAP):
            canvas.draw.line([(px, ry + SPEC_ROW_H - 4), (px, ry + SPEC_ROW_H - 1)], fill=(255, 255, 255))
        label = f"{t:.2f}".rstrip("0").rstrip(".") if step < 1 else f"{t:.0f}"
        canvas.text((px, axis_y + 6), label + " s", anchor="ma")
        t = round(t + step, 9)

    # colour bar
    bar_x = left + spec_w + 10
    bar_h = y - GAP - first_y
    ramp = np.linspace(vmax, vmin, bar_h)[:, None].repeat(14, axis=1)
    canvas.paste(colormap(ramp, vmin, vmax), (bar_x, first_y))
    canvas.text((bar_x + 18, first_y), f"{vmax:.1f}", anchor="la")
    canvas.text((bar_x + 18, first_y + bar_h), f"{vmin:.1f}", anchor="ld")


def _spectrogram(values: np.ndarray, width: int, vmin: float, vmax: float) -> np.ndarray:
    """``values [frames, mels]`` -> ``[SPEC_ROW_H, width, 3]`` uint8, low mels at the bottom."""
    v = values.T[::-1].astype(np.float32)  # [mels, frames], top row = highest band
    nan = np.isnan(v)
    filled = Image.fromarray(np.where(nan, vmin, v), mode="F")
    resample = Image.Resampling.BOX if v.shape[1] > width else Image.Resampling.NEAREST
    scaled = np.asarray(filled.resize((width, SPEC_ROW_H), resample), dtype=np.float64).copy()
    if nan.any():
        mask = Image.fromarray(nan.astype(np.uint8) * 255).resize((width, SPEC_ROW_H), Image.Resampling.NEAREST)
        scaled[np.asarray(mask) > 127] = np.nan
    return colormap(scaled, vmin, vmax)


def command(args: argparse.Namespace) -> int:
    """``livetok inspect FILE.ltk -o PICTURE.png``: 65 when the token file is damaged (drawn from what
    could be read), like probe."""
    from livetok.config import load_config

    toks = Tokenizers.from_config(load_config(args.config).tokenizer)
    skipped = inspect(Path(args.file), Path(args.output), toks, Path(args.source) if args.source else None)
    print(f"wrote {args.output}" + (f" from what could be read ({len(skipped)} damaged regions skipped)"
                                    if skipped else ""), file=sys.stderr)
    for e in skipped:
        print(f"livetok: warning: {e}", file=sys.stderr)
    return 65 if skipped else 0
