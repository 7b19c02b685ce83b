"""Experiment (issue 16 section 4): what a fixed token budget can still give the fine picture.

The fine scale spends the same 40 bits (4 levels x 10) on every 16 x 16 patch. Three levers that
keep the frame's 196 x 4 tokens, each measured on the training corpus / held-out photographs of
``scripts/ctx_decoder_experiment.py`` (fitted on ``scripts/make_corpus.py --video-only``, measured on
mate-backgrounds' 12 photographs, deblocked as the shipped decoder does, greedy encoder):

``alloc``
    Content-dependent depth: each patch gets ``--min-levels`` levels, then the frame's remaining
    tokens go one level at a time to the patch whose next level is expected to remove the most error
    (greedy marginal allocation), up to ``--max-levels`` (levels 5.. fitted on what the shipped 4 leave).
    *backward*: the expected error is the mean residual of the patch's last code's cell on the
    training vectors, so a decoder derives the same allocation from the codes (no side information);
    *oracle*: the true residual (free side information: a bound, not a codec).
``classified``
    Levels 2-4 from one of G codebook sets chosen by the level-1 code (groups of equal population by
    the level-1 cell's mean residual); against a one-group refit on the same vectors.
``dims``
    The projection size ``d`` (PCA 768 -> d, then RVQ 4 x 1024 refitted) instead of 64.

    OMP_NUM_THREADS=2 nice -n 19 .venv/bin/python scripts/fixed_rate_experiment.py CORPUS MATE_ROOT \
        {alloc,classified,dims} [--crops 12] [--groups 4,16] [--dims 48,64,128]

Results: docs/performance.md, section 12, "A fixed budget's last levers": none is taken.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ctx_decoder_experiment import held_out, log, patches, psnrs, training_pictures

from livetok.config.tokenizer import TokenizerConfig
from livetok.tokenizers.codebooks import load_codebooks
from livetok.tokenizers.kmeans import _nearest, fit_rvq, pca, project, refine_rvq
from livetok.tokenizers.video import VideoTokenizer, deblock, unpatchify

PATCH, GRID, LEVELS, K = 16, 196, 4, 1024
CPU = torch.device("cpu")


def rvq_apply(z: torch.Tensor, books: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Greedy RVQ: ``z [N, d]`` -> ``(codes [N, L], z_hat [N, d], residual [N, d])``."""
    r, zh, codes = z.clone(), torch.zeros_like(z), []
    for cb in books:
        c = torch.from_numpy(np.asarray(cb, np.float32))
        idx, _ = _nearest(r, c)
        r -= c[idx]
        zh += c[idx]
        codes.append(idx)
    return torch.stack(codes, 1), zh, r


class Held:
    """The 12 photographs, their patch vectors ``x [12 * 196, 768]`` and the shipped deblocking."""

    def __init__(self, mate_root: Path, tok: VideoTokenizer) -> None:
        self.names, self.images = held_out(mate_root, 224)
        self.x = patches(self.images, PATCH).reshape(-1, 768).astype(np.float64)
        self.width, self.strength = tok.deblocking["fine"]

    def psnr(self, rec: np.ndarray, label: str) -> np.ndarray:
        """``rec [12 * 196, 768]`` (0-1 scale) -> per-image PSNR of the deblocked pictures, logged."""
        pics = np.stack([unpatchify(v, PATCH) for v in rec.reshape(len(self.images), GRID, -1)])
        p = psnrs(self.images, deblock(pics, PATCH, self.width, self.strength))
        log(f"{label}: mean {p.mean():.3f} dB  " + " ".join(f"{v:.2f}" for v in p))
        return p


def allocate(z: np.ndarray, books: list[np.ndarray], cell: np.ndarray, gain: np.ndarray, start: float,
             min_levels: int, max_levels: int, oracle: bool) -> tuple[np.ndarray, np.ndarray]:
    """One frame ``z [196, d]`` -> ``(z_hat [196, d], depth [196])`` with ``196 * 4`` codes in all.

    A patch's next level is worth ``expected error * gain[level]`` (``gain``: the mean fraction of
    the error a level removes); the expected error is ``cell[level - 1, code]`` (backward) or the
    true residual (oracle). Ties go to the lower patch index, so a decoder repeats it exactly."""
    r, zh = z.copy(), np.zeros_like(z)
    depth, last = np.zeros(len(z), np.int64), np.zeros(len(z), np.int64)

    def step(i: int) -> None:
        cb = books[depth[i]]
        k = int(np.argmin(((r[i][None] - cb) ** 2).sum(1)))
        r[i] -= cb[k]
        zh[i] += cb[k]
        last[i] = k
        depth[i] += 1

    def worth(i: int) -> float:
        level = int(depth[i])
        err = float((r[i] ** 2).sum()) if oracle else (cell[level - 1, last[i]] if level else start)
        return err * gain[level]

    for _ in range(min_levels):
        for i in range(len(z)):
            step(i)
    heap = [(-worth(i), i) for i in range(len(z)) if depth[i] < max_levels]
    heapq.heapify(heap)
    for _ in range(len(z) * LEVELS - len(z) * min_levels):
        if not heap:
            break
        _, i = heapq.heappop(heap)
        step(i)
        if depth[i] < max_levels:
            heapq.heappush(heap, (-worth(i), i))
    return zh, depth


def run_alloc(z_train: torch.Tensor, tok: VideoTokenizer, held: Held, max_extra: int) -> None:
    q = tok.quantizers["fine"]
    shipped = [np.asarray(b, np.float64) for b in q.codebooks]
    _, _, r4 = rvq_apply(z_train, shipped)
    t0 = time.monotonic()
    books = shipped + list(np.asarray(fit_rvq(r4.numpy(), max_extra, K, 12, 1, CPU), np.float64))
    log(f"{max_extra} levels after the shipped 4 fitted in {time.monotonic() - t0:.0f} s")
    # cell[l, k]: the mean error left after level l by the training vectors whose level-l code is k
    codes, _, _ = rvq_apply(z_train, books)
    r = z_train.double().clone()
    cell = np.zeros((len(books), K))
    left = [float((r**2).sum(1).mean())]
    for level, cb in enumerate(books):
        r -= torch.from_numpy(cb)[codes[:, level]]
        e = (r**2).sum(1)
        sums = torch.zeros(K, dtype=torch.float64).index_add_(0, codes[:, level], e)
        counts = torch.bincount(codes[:, level], minlength=K).double()
        left.append(float(e.mean()))
        cell[level] = torch.where(counts > 0, sums / counts.clamp_min(1), e.mean()).numpy()
    gain = 1.0 - np.array(left[1:]) / np.array(left[:-1])
    log("mean error left per level: " + " ".join(f"{v:.3f}" for v in left)
        + "; fraction removed: " + " ".join(f"{v:.3f}" for v in gain))
    zt = (held.x - q.mean) @ q.proj
    held.psnr(np.concatenate([allocate(f, books, cell, gain, left[0], LEVELS, LEVELS, False)[0]
                              for f in zt.reshape(-1, GRID, q.dim)]) @ q.proj.T + q.mean, "uniform 4 levels (shipped)")
    for mode in ("backward", "oracle"):
        for lo, hi in ((1, LEVELS + max_extra), (2, LEVELS + max_extra), (2, LEVELS + max_extra // 2)):
            out = [allocate(f, books, cell, gain, left[0], lo, hi, mode == "oracle")
                   for f in zt.reshape(-1, GRID, q.dim)]
            hist = np.mean([np.bincount(d, minlength=hi + 1) for _, d in out], axis=0)
            held.psnr(np.concatenate([zh for zh, _ in out]) @ q.proj.T + q.mean,
                      f"{mode} levels {lo}..{hi} (patches per depth {hist.round(1).tolist()})")


def run_classified(z_train: torch.Tensor, tok: VideoTokenizer, held: Held, groups: list[int]) -> None:
    q = tok.quantizers["fine"]
    b0 = torch.from_numpy(q.codebooks[0].astype(np.float32))
    c0, _ = _nearest(z_train, b0)
    r1 = z_train - b0[c0]
    e1 = (r1**2).sum(1).double()
    count = torch.bincount(c0, minlength=K).numpy()
    sums = torch.zeros(K, dtype=torch.float64).index_add_(0, c0, e1)
    cell = (sums / torch.from_numpy(count).double().clamp_min(1)).numpy()
    zt = torch.from_numpy(((held.x - q.mean) @ q.proj).astype(np.float32))
    ct, _ = _nearest(zt, b0)

    def measure(group_of: np.ndarray, books: list[np.ndarray], label: str) -> None:
        zh = b0[ct].clone()
        g = torch.from_numpy(group_of)[ct]
        for gi, bk in enumerate(books):
            m = g == gi
            if m.any():
                zh[m] += rvq_apply(zt[m] - b0[ct[m]], list(bk))[1]
        held.psnr(zh.double().numpy() @ q.proj.T + q.mean, label)

    measure(np.zeros(K, np.int64), [q.codebooks[1:]], "shipped")
    r1n = r1.numpy()
    measure(np.zeros(K, np.int64), [refine_rvq(r1n, fit_rvq(r1n, LEVELS - 1, K, 12, 99, CPU), 2, CPU)],
            "one group, refitted on the same vectors (control)")
    order = np.argsort(cell)
    share = np.cumsum(count[order]) / count.sum()
    for n in groups:
        group_of = np.zeros(K, np.int64)
        group_of[order] = np.minimum((share * n).astype(np.int64), n - 1)
        gz = torch.from_numpy(group_of)[c0]
        books = []
        for gi in range(n):
            rg = r1[gz == gi].numpy()
            books.append(refine_rvq(rg, fit_rvq(rg, LEVELS - 1, K, 12, gi + 1, CPU), 2, CPU))
        measure(group_of, books, f"{n} groups by level-1 cell error (sizes {np.bincount(gz.numpy()).tolist()})")


def run_dims(x_train: np.ndarray, held: Held, dims: list[int]) -> None:
    for d in dims:
        mean, proj = pca(x_train, d)
        z = project(x_train, mean, proj)
        books = refine_rvq(z, fit_rvq(z, LEVELS, K, 12, 1, CPU), 2, CPU)
        zt = torch.from_numpy(((held.x - mean) @ proj).astype(np.float32))
        held.psnr(zt.double().numpy() @ proj.T + mean, f"d={d}: the projection alone (no RVQ)")
        held.psnr(rvq_apply(zt, list(books))[1].double().numpy() @ proj.T + mean, f"d={d}: RVQ 4 x 1024")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("mate_root", type=Path)
    ap.add_argument("what", choices=("alloc", "classified", "dims"))
    ap.add_argument("--crops", type=int, default=12, help="augmented views per corpus picture")
    ap.add_argument("--extra", type=int, default=4, help="alloc: levels fitted after the shipped 4")
    ap.add_argument("--groups", default="4,16", help="classified: group counts")
    ap.add_argument("--dims", default="48,64,128", help="dims: projection sizes")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tok = VideoTokenizer(TokenizerConfig().video, load_codebooks(None), "cpu")
    q = tok.quantizers["fine"]
    pics = training_pictures(args.corpus, 224, args.crops, 0)
    x = np.concatenate([patches(pics[i : i + 256], PATCH).reshape(-1, 768) for i in range(0, len(pics), 256)])
    del pics
    log(f"{len(x)} training vectors")
    held = Held(args.mate_root, tok)
    if args.what == "dims":
        run_dims(x, held, [int(v) for v in args.dims.split(",")])
        return 0
    z = torch.from_numpy(project(x, q.mean.astype(np.float32), q.proj.astype(np.float32)))
    if args.what == "alloc":
        run_alloc(z, tok, held, args.extra)
    else:
        run_classified(z, tok, held, [int(v) for v in args.groups.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
