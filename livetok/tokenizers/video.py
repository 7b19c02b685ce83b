"""Video tokenizer: model-resolution RGB images -> ViT-style patches -> projection -> RVQ codes.

With the defaults (224 x 224): fine patches 16 x 16 px (14 x 14 = 196 per frame, 4 x 1024 codes
each), coarse patches 32 x 32 px (7 x 7 = 49 per frame, 2 x 1024 codes each). A patch vector is
the patch's pixels in row-major (y, x, RGB) order scaled to [0, 1]. Reconstructions are deblocked
when the codebooks' decoder metadata says so (:func:`deblock`).

:class:`VideoTokenizer` is stateless and batched (frames from many sources in one call);
:class:`VideoStream` holds one source's incremental (delta) state and sequence numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from livetok.config.tokenizer import VideoConfig
from livetok.tokenizers.codebooks import CodebookSet
from livetok.tokenizers.patch_delta import patch_change
from livetok.tokenizers.rvq import ScaleQuantizer
from livetok.wire import Clock, Flag, Modality, Scale, TokenPacket

SCALES = ("fine", "coarse")
PIXEL_SCALE = 1.0 / 255.0  # patch vectors are pixels scaled to [0, 1]


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when torch sees a GPU, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def patch_pixels(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, S, S, 3]`` uint8 -> ``[B * g * g, patch * patch * 3]`` float32 pixel values (0-255)."""
    b, s, _, c = images.shape
    g = s // patch
    out = torch.empty((b, g, g, patch, patch, c), dtype=torch.float32, device=images.device)
    out.copy_(images.reshape(b, g, patch, g, patch, c).permute(0, 1, 3, 2, 4, 5))  # reorder + convert: one pass
    return out.view(b * g * g, patch * patch * c)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, S, S, 3]`` uint8 -> ``[B * g * g, patch * patch * 3]`` float32 in [0, 1], the vectors
    the codebooks are fitted on."""
    return patch_pixels(images, patch).mul_(PIXEL_SCALE)


def unpatchify(vectors: np.ndarray, patch: int) -> np.ndarray:
    """``[g * g, patch * patch * 3]`` in [0, 1] -> ``[S, S, 3]`` uint8 image."""
    g = round((vectors.shape[0]) ** 0.5)
    x = vectors.reshape(g, g, patch, patch, 3).transpose(0, 2, 1, 3, 4).reshape(g * patch, g * patch, 3)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def deblock(images: np.ndarray, patch: int, width: int, strength: float) -> np.ndarray:
    """Smooth the seams of a patch-wise reconstruction: ``images [..., S, S, 3]`` uint8 -> the same.

    Each reconstructed patch is decoded on its own, so neighbours meet with a step. Across every
    patch boundary, each side moves towards the other by a linear ramp of the step: the pixel at
    distance ``d`` (0 at the boundary) by ``strength * (1 - (d + 0.5) / width) / 2`` of it, so a
    flat step becomes a gradient; rows first, then columns. ``width <= patch // 2``: the ramps of
    two boundaries never overlap. The parameters are fitted with the codebooks (decoder metadata)."""
    if width <= 0 or strength <= 0:
        return images
    x = images.astype(np.float64)
    size = x.shape[-2]
    left = np.arange(patch, size, patch)  # the first pixel after each boundary
    for axis in (-3, -2):
        y = np.moveaxis(x, axis, 0)  # a view: writes go to x
        jump = y[left] - y[left - 1]
        for d in range(width):
            w = strength * 0.5 * (1.0 - (d + 0.5) / width)
            y[left - 1 - d] += w * jump
            y[left + d] -= w * jump
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class BatchCodes:
    """Codes of a batch: ``codes[scale] [B, P, L] uint16``; ``vectors[scale] [B, P, d] float16`` or None.
    ``fine_levels [B]``: the fine levels made per frame when an overloaded daemon shed some (0: the
    frame's fine tokens were shed; its rows are zeros past that depth); None: every level of every frame.
    ``greedy``: the scales encoded greedily although their configured beam would search
    (:attr:`ScaleQuantizer.searches`; a catch-up batch): their packets carry :attr:`Flag.GREEDY`."""

    codes: dict[str, np.ndarray]
    vectors: dict[str, np.ndarray | None]
    fine_levels: np.ndarray | None = None
    greedy: tuple[str, ...] = ()


class VideoTokenizer:
    """Shared, stateless video tokenizer on one torch device."""

    def __init__(self, cfg: VideoConfig, codebooks: CodebookSet, device: str = "auto") -> None:
        self.cfg = cfg
        self.codebook_id = codebooks.codebook_id
        self.device = resolve_device(device)
        self.patch = {"fine": cfg.fine_patch, "coarse": cfg.coarse_patch}
        self.grid = {s: cfg.size // p for s, p in self.patch.items()}
        self.quantizers = {
            s: ScaleQuantizer(arr.mean, arr.proj, arr.codebooks, getattr(cfg, s).levels, getattr(cfg, s).beam)
            for s in SCALES
            for arr in [codebooks.scale("video", s)]
        }
        self.deblocking = {  # (width px, strength) per scale; (0, 0): none, as in v1 codebooks
            s: (int(d.get("deblock_width", 0)), float(d.get("deblock_strength", 0.0)))
            for s in SCALES
            for d in [codebooks.decoder.get(f"video.{s}", {})]
        }

    @torch.inference_mode()
    def encode(self, images: np.ndarray, vectors: bool = False,
               fine_levels: Sequence[int] | None = None, greedy: bool = False) -> BatchCodes:
        """``images [B, S, S, 3] uint8`` -> codes for every patch of every frame, both scales.
        ``fine_levels [B]``: fine levels to make per frame (0: none), the daemon's overload plan;
        ``greedy``: every scale encoded greedily whatever its ``beam`` (the daemon's catch-up batches)."""
        batch = torch.from_numpy(images).to(self.device, non_blocking=True)
        codes: dict[str, np.ndarray] = {}
        vecs: dict[str, np.ndarray | None] = {}
        full = self.quantizers["fine"].levels
        if fine_levels is not None and min(fine_levels, default=full) < full:
            codes["fine"], vecs["fine"] = self._encode_some(batch, "fine", fine_levels, vectors, greedy)
        for scale in SCALES:
            if scale in codes:
                continue
            pixels = patch_pixels(batch, self.patch[scale])
            c, z = self.quantizers[scale].encode_torch(pixels, input_scale=PIXEL_SCALE, beam=1 if greedy else None)
            n = images.shape[0]
            codes[scale] = c.to(torch.int32).cpu().numpy().astype(np.uint16).reshape(n, -1, c.shape[1])
            vecs[scale] = z.to(torch.float16).cpu().numpy().reshape(n, -1, z.shape[1]) if vectors else None
        shed = None if fine_levels is None else np.minimum(np.asarray(fine_levels, np.int64), full)
        degraded = tuple(s for s in SCALES if greedy and self.quantizers[s].searches)
        return BatchCodes(codes=codes, vectors=vecs, fine_levels=shed, greedy=degraded)

    def _encode_some(self, batch: torch.Tensor, scale: str, levels: Sequence[int], vectors: bool,
                     greedy: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """One scale at ``levels[i]`` levels for frame i: one call per distinct depth, none for 0."""
        q, n, cells = self.quantizers[scale], batch.shape[0], self.grid[scale] ** 2
        codes = np.zeros((n, cells, q.levels), np.uint16)
        vecs = np.zeros((n, cells, q.dim), np.float16) if vectors else None
        depths = np.asarray(levels, np.int64)
        for depth in sorted(set(depths.tolist()) - {0}):
            idx = np.flatnonzero(depths == depth)
            pixels = patch_pixels(batch[torch.from_numpy(idx).to(batch.device)], self.patch[scale])
            c, z = q.encode_torch(pixels, input_scale=PIXEL_SCALE, levels=depth, beam=1 if greedy else None)
            codes[idx, :, : c.shape[1]] = c.to(torch.int32).cpu().numpy().astype(np.uint16).reshape(len(idx), cells, -1)
            if vecs is not None:
                vecs[idx] = z.to(torch.float16).cpu().numpy().reshape(len(idx), cells, -1)
        return codes, vecs

    def reconstruct(self, codes: np.ndarray, scale: str, depth: int | None = None) -> np.ndarray:
        """``codes [P, L]`` for a full grid -> ``[S, S, 3]`` uint8 image using ``depth`` levels,
        deblocked as the codebooks' decoder metadata says (:func:`deblock`)."""
        return self.finish(unpatchify(self.quantizers[scale].decode(codes, depth), self.patch[scale]), scale)

    def finish(self, images: np.ndarray, scale: str) -> np.ndarray:
        """The decoder's last step on unpatchified reconstructions ``[..., S, S, 3]`` uint8."""
        width, strength = self.deblocking[scale]
        return deblock(images, self.patch[scale], width, strength)

    def stream(self, source: str, clock: Clock = Clock.MEDIA) -> VideoStream:
        return VideoStream(self, source, clock)


@dataclass
class DeltaState:
    """Per scale: the pixels each patch had when last sent, and when the last keyframe was."""

    reference: dict[str, np.ndarray] = field(default_factory=dict)  # scale -> [S, S, 3] uint8
    last_keyframe_ns: int | None = None


@dataclass
class VideoStreamState:
    """``seq``: frames made (the coarse stream's next seq); ``fine_shed``: fine packets an overloaded
    daemon did not make, so the fine stream's next seq is ``seq - fine_shed``; ``fine_pending``: flags
    for the next fine packet only (GAP after shed frames: it is a keyframe)."""

    seq: int = 0
    pending: Flag = Flag.NONE
    delta: DeltaState = field(default_factory=DeltaState)
    fine_shed: int = 0
    fine_pending: Flag = Flag.NONE


class VideoStream:
    """One source's video token stream: sequence numbers, gap flags and the delta-mode reference."""

    def __init__(self, tok: VideoTokenizer, source: str, clock: Clock) -> None:
        self.tok = tok
        self.source = source
        self.clock = clock
        self.state = VideoStreamState()

    def reset(self) -> None:
        self.state = VideoStreamState(pending=Flag.DISCONTINUITY)

    def mark_gap(self) -> None:
        self.state.pending |= Flag.GAP

    def packets(
        self, image: np.ndarray, codes: BatchCodes, index: int, start_ns: int, end_ns: int
    ) -> list[TokenPacket]:
        """Packets (fine, coarse) for frame ``index`` of an encoded batch; ``image [S, S, 3]``. A frame
        whose fine tokens were shed (``codes.fine_levels``) has only its coarse packet; the next fine
        packet is flagged GAP and is a keyframe, so the fine stream's delta coding starts again there."""
        st = self.state
        cfg = self.tok.cfg.delta
        keyframe = True
        if cfg.enabled:
            last = st.delta.last_keyframe_ns
            keyframe = last is None or start_ns - last >= round(cfg.keyframe_interval_s * 1e9) or bool(st.pending)
            if keyframe:
                st.delta.last_keyframe_ns = start_ns
        depth = None if codes.fine_levels is None else int(codes.fine_levels[index])
        out = []
        for scale in SCALES:
            c = codes.codes[scale][index]
            seq, flags, key = st.seq, st.pending, keyframe
            if scale == "fine":
                if depth == 0:
                    st.fine_shed += 1
                    st.fine_pending |= Flag.GAP | st.pending  # a discontinuity is the fine stream's too
                    continue
                c = c if depth is None else c[:, :depth]
                seq, flags, key = st.seq - st.fine_shed, flags | st.fine_pending, keyframe or bool(st.fine_pending)
                st.fine_pending = Flag.NONE
            flags |= Flag.KEYFRAME if key else Flag.DELTA
            if scale in codes.greedy:
                flags |= Flag.GREEDY
            v = codes.vectors[scale]
            vec = None if v is None else v[index]
            positions = None
            if not key:
                changed = patch_change(image, st.delta.reference[scale], self.tok.patch[scale]) > cfg.threshold
                positions = np.flatnonzero(changed.reshape(-1)).astype(np.uint16)
                c = c[positions]
                vec = None if vec is None else vec[positions]
            if cfg.enabled:
                self._update_reference(scale, image, positions)
            g = self.tok.grid[scale]
            out.append(
                TokenPacket(
                    source=self.source, modality=Modality.VIDEO, scale=Scale[scale.upper()], seq=seq,
                    start_ns=start_ns, end_ns=end_ns, clock=self.clock, codebook_id=self.tok.codebook_id,
                    flags=flags, grid=(g, g), codes=np.ascontiguousarray(c), positions=positions, vectors=vec,
                )
            )
        st.seq += 1
        st.pending = Flag.NONE
        return out

    def _update_reference(self, scale: str, image: np.ndarray, positions: np.ndarray | None) -> None:
        ref = self.state.delta.reference
        if positions is None or scale not in ref:
            ref[scale] = image.copy()
            return
        p, g = self.tok.patch[scale], self.tok.grid[scale]
        for pos in positions.tolist():
            y, x = divmod(pos, g)
            ref[scale][y * p : (y + 1) * p, x * p : (x + 1) * p] = image[y * p : (y + 1) * p, x * p : (x + 1) * p]
