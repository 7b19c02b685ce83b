"""k-means++ seeding, Lloyd iterations, PCA, and residual VQ fitting (torch, any device)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Progress = Callable[[int], None]


def pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``x [N, D] -> (mean [D], proj [D, dim])``: the top principal directions, orthonormal columns.
    Memory: ``x`` and one float64 copy of it."""
    arr = np.asarray(x, dtype=np.float64)
    xc = torch.from_numpy(arr.copy() if arr is x else arr)  # one float64 copy, centred in place
    mean = xc.mean(0)
    xc -= mean
    cov = xc.T @ xc / max(1, xc.shape[0] - 1)
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    proj = vecs[:, -dim:].flip(1)
    # A fixed sign per direction makes fitted files reproducible across BLAS builds.
    proj = proj * torch.sign(proj[proj.abs().argmax(0), torch.arange(dim)])
    return mean.numpy(), proj.numpy()


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
