"""k-means++ seeding, Lloyd iterations, PCA, and residual VQ fitting (torch, any device)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Progress = Callable[[int], None]


def pca(x: np.ndarray, dim: int, chunk: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """``x [N, D] -> (mean [D], proj [D, dim])``: the top principal directions, orthonormal columns.
    The mean and covariance are summed in float64 over chunks of ``chunk`` rows, so memory is
    ``x`` plus one chunk in float64 and the ``[D, D]`` covariance, not a float64 copy of ``x``."""
    n = x.shape[0]
    mean = torch.zeros(x.shape[1], dtype=torch.float64)
    for lo in range(0, n, chunk):
        mean += torch.from_numpy(np.asarray(x[lo : lo + chunk], dtype=np.float64)).sum(0)
    mean /= max(1, n)
    cov = torch.zeros((x.shape[1], x.shape[1]), dtype=torch.float64)
    for lo in range(0, n, chunk):
        xc = torch.from_numpy(np.asarray(x[lo : lo + chunk], dtype=np.float64)) - mean
        cov.addmm_(xc.T, xc)
    cov /= max(1, n - 1)
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    proj = vecs[:, -dim:].flip(1)
    # A fixed sign per direction makes fitted files reproducible across BLAS builds.
    proj = proj * torch.sign(proj[proj.abs().argmax(0), torch.arange(dim)])
    return mean.numpy(), proj.numpy()


def project(x: np.ndarray, mean: np.ndarray, proj: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """``(x [N, D] - mean) @ proj -> z [N, d]`` float32, a chunk of rows at a time (no copy of ``x``)."""
    z = np.empty((x.shape[0], proj.shape[1]), dtype=np.float32)
    for lo in range(0, x.shape[0], chunk):
        z[lo : lo + chunk] = (np.asarray(x[lo : lo + chunk], dtype=np.float64) - mean) @ proj
    return z


def _nearest(x: torch.Tensor, centers: torch.Tensor, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [N, d], centers [K, d] -> (index [N], squared distance [N])``."""
    half = 0.5 * (centers * centers).sum(1)
    idx = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    dist = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for lo in range(0, x.shape[0], chunk):
        xs = x[lo : lo + chunk]
        scores = torch.addmm(half, xs, centers.T, alpha=-1.0)
        best, arg = scores.min(1)
        idx[lo : lo + chunk] = arg
        dist[lo : lo + chunk] = ((xs * xs).sum(1) + 2 * best).clamp_min(0)
    return idx, dist


def kmeans_pp(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: ``x [N, d] -> centers [k, d]`` (D^2 sampling)."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=gen, device="cpu"))
    centers = [x[first]]
    d2 = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        if float(total) <= 0:
            i = int(torch.randint(n, (1,), generator=gen, device="cpu"))
        else:
            i = int(torch.multinomial((d2 / total).cpu().double(), 1, generator=gen))
        centers.append(x[i])
        d2 = torch.minimum(d2, ((x - x[i]) ** 2).sum(1))
    return torch.stack(centers)


def lloyd(x: torch.Tensor, centers: torch.Tensor, iters: int, progress: Progress | None = None) -> torch.Tensor:
    """Lloyd iterations from ``centers [k, d]``; an empty cluster takes the worst-served point."""
    k = centers.shape[0]
    for _ in range(iters):
        idx, dist = _nearest(x, centers)
        sums = torch.zeros_like(centers).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=k).to(x.dtype)
        new = sums / counts.clamp_min(1).unsqueeze(1)
        empty = (counts == 0).nonzero().flatten()
        if empty.numel():
            worst = dist.topk(min(empty.numel(), x.shape[0])).indices
            new[empty[: worst.numel()]] = x[worst]
        centers = new
        if progress:
            progress(1)
    return centers


def fit_rvq(
    z: np.ndarray, levels: int, k: int, iters: int, seed: int, device: torch.device,
    seed_points: int = 32768, progress: Progress | None = None,
) -> np.ndarray:
    """Residual VQ, level by level on the residuals: ``z [N, d] -> codebooks [levels, k, d]``."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    r = torch.from_numpy(np.asarray(z, dtype=np.float32)).to(device)
    books = []
    for _ in range(levels):
        sub = r[torch.randperm(r.shape[0], generator=gen)[:seed_points].to(device)]
        centers = lloyd(r, kmeans_pp(sub, k, gen), iters, progress)
        idx, _ = _nearest(r, centers)
        r = r - centers[idx]
        books.append(centers.cpu().numpy())
    return np.stack(books)


def rvq_encode(z: torch.Tensor, books: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy RVQ, as the tokenizers encode: ``z [N, d]`` -> ``(codes [N, L], residual [N, d])``."""
    r = z.clone()
    codes = []
    for cb in books:
        idx, _ = _nearest(r, cb)
        codes.append(idx)
        r -= cb[idx]
    return torch.stack(codes, 1), r


def refine_rvq(
    z: np.ndarray, books: np.ndarray, rounds: int, device: torch.device, progress: Progress | None = None,
) -> np.ndarray:
    """Joint refinement of fitted RVQ codebooks ``[L, K, d]`` on ``z [N, d]``.

    Level-by-level fitting leaves each codebook fitted to the residuals of the levels before it as
    they were *before* the later levels existed. Each round encodes every vector greedily (as the
    tokenizers do), then moves each level's codes in turn to the mean of what the other levels
    leave of their vectors (the least-squares codeword for those codes): block coordinate
    descent on the total error, with the codes of the round held fixed. A code no vector chose
    keeps its value."""
    x = torch.from_numpy(np.asarray(z, dtype=np.float32)).to(device)
    cbs = [torch.from_numpy(np.array(b, dtype=np.float32)).to(device) for b in books]
    for _ in range(rounds):
        codes, r = rvq_encode(x, cbs)
        for level, cb in enumerate(cbs):
            idx = codes[:, level]
            target = r + cb[idx]  # z less every other level's codeword
            sums = torch.zeros_like(cb).index_add_(0, idx, target)
            counts = torch.bincount(idx, minlength=cb.shape[0]).to(cb.dtype)
            new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], cb)
            r = target - new[idx]
            cbs[level] = new
        if progress:
            progress(1)
    return np.stack([cb.cpu().numpy() for cb in cbs])
