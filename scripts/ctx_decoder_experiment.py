"""Experiment (issue 16 section 4): a context decoder, tokens unchanged.

Each patch is decoded today from its own code vector (``z_hat @ proj.T + mean``), then deblocked.
Here a patch's pixels are predicted from the decoded ``z_hat`` of its neighbourhood too: a ridge
regression from the 3 x 3 (or 5-tap cross, or 5 x 5) neighbourhood of ``z_hat`` to the centre
patch's residual over the plain decode; optionally a small conv net on the ``g x g x d`` grid.

Fitted on the training corpus only (scripts/make_corpus.py --video-only: never mate-backgrounds,
never coffee.png), measured on mate-backgrounds' 12 photographs (``nature/``) as ``livetok eval``
sees them, against the shipped decoder (v2 + deblocking), with the codes the shipped encoder makes
(fine beam 1, coarse beam 4).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 19 .venv/bin/python scripts/ctx_decoder_experiment.py \
        CORPUS MATE_ROOT [--crops 15] [--scales fine,coarse] [--hoods 3x3-edge,...] [--no-colour]
        [--net [--epochs 8] [--hidden 128] [--layers 2] [--lr 1e-3]] [--out results.json]

CORPUS: scripts/make_corpus.py's folder; MATE_ROOT: the extracted mate-backgrounds package
(``dpkg-deb -x``). Neighbourhoods ``HOOD-PAD``: HOOD one of :data:`HOODS`, PAD ``zero`` (zeros
plus one outside-the-grid indicator per neighbour) or ``edge`` (the edge patch repeated). The
results (docs/performance.md, section 12, "A context decoder"): not taken, +0.1 dB fine at best.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image

from livetok.config.tokenizer import TokenizerConfig
from livetok.media.decode import decode
from livetok.media.frames import to_model_image
from livetok.tokenizers import fit as fit_module
from livetok.tokenizers.codebooks import load_codebooks
from livetok.tokenizers.fit import _augment, media_files
from livetok.tokenizers.video import VideoTokenizer, deblock, unpatchify

SCALES = ("fine", "coarse")
LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
# neighbourhoods: offsets (dy, dx) around the centre patch
HOODS = {
    "1x1": [(0, 0)],
    "cross5": [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)],
    "3x3": [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)],
    "5x5": [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)],
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def training_pictures(corpus: Path, size: int, crops: int, seed: int) -> np.ndarray:
    """``[N, S, S, 3] uint8``: every corpus picture as the tokenizer sees it plus ``crops`` augmented views."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    for f in media_files([corpus]):
        rgb = np.asarray(Image.open(f).convert("RGB"))
        if min(rgb.shape[:2]) < 32:
            continue
        out += _augment(rgb, size, crops, rng)
    return np.stack(out)


def held_out(mate_root: Path, size: int) -> tuple[list[str], np.ndarray]:
    """The 12 photographs as ``livetok eval`` sees them (FFmpeg decode, crop to the model size)."""
    paths = sorted((mate_root / "usr/share/backgrounds/mate/nature").glob("*.jpg"))
    imgs = [next(to_model_image(mf.frame, size, "crop") for mf in decode(p, audio=False)
                 if isinstance(mf.frame, av.VideoFrame)) for p in paths]
    return [p.stem for p in paths], np.stack(imgs)


class Decoded:
    """One scale's codes for a batch of pictures: ``z [N, g, g, d]`` (decoded code vectors) and
    ``base [N, g*g, D]`` (the plain decode, 0-1 pixel scale)."""

    def __init__(self, tok: VideoTokenizer, images: np.ndarray, scale: str) -> None:
        q = tok.quantizers[scale]
        codes = np.concatenate([tok.encode(images[i : i + 64]).codes[scale] for i in range(0, len(images), 64)])
        n, p, levels = codes.shape
        g = round(math.sqrt(p))
        z = np.zeros((n * p, q.dim))
        flat = codes.reshape(-1, levels).astype(np.int64)
        for level in range(levels):
            z += q.codebooks[level][flat[:, level]]
        self.z = z.reshape(n, g, g, q.dim).astype(np.float32)
        self.base = (z @ q.proj.T + q.mean).reshape(n, p, -1).astype(np.float32)
        self.patch, self.g = tok.patch[scale], g


def features(z: np.ndarray, hood: str, pad: str) -> np.ndarray:
    """``z [n, g, g, d]`` -> ``[n * g * g, F]``: the neighbourhood's vectors, then (pad 'zero') one
    indicator per neighbour that lies outside the grid, then a constant 1."""
    n, g = z.shape[:2]
    r = max(max(abs(dy), abs(dx)) for dy, dx in HOODS[hood])
    zp = np.pad(z, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge") if pad == "edge" \
        else np.pad(z, ((0, 0), (r, r), (r, r), (0, 0)))
    parts = [zp[:, r + dy : r + dy + g, r + dx : r + dx + g] for dy, dx in HOODS[hood]]
    if pad == "zero":
        inside = np.pad(np.ones((g, g), np.float32), r)
        outside = [1.0 - inside[r + dy : r + dy + g, r + dx : r + dx + g]
                   for dy, dx in HOODS[hood] if (dy, dx) != (0, 0)]
        parts += [np.broadcast_to(o[None, :, :, None], (n, g, g, 1)) for o in outside]
    parts.append(np.ones((n, g, g, 1), np.float32))
    return np.concatenate(parts, axis=-1).reshape(n * g * g, -1)


def patches(images: np.ndarray, patch: int) -> np.ndarray:
    """``[N, S, S, 3] uint8`` -> ``[N, g*g, patch*patch*3]`` float32 in [0, 1]."""
    n, s = images.shape[:2]
    g = s // patch
    x = images.reshape(n, g, patch, g, patch, 3).transpose(0, 1, 3, 2, 4, 5)
    return (x.reshape(n, g * g, -1) / 255.0).astype(np.float32)


def ridge_fit(dec: Decoded, images: np.ndarray, hood: str, pad: str, train: np.ndarray) -> dict[float, np.ndarray]:
    """Per lambda, ``W [F, D]``: features -> residual (original - plain decode), on pictures ``train``."""
    xtx: np.ndarray | None = None
    xty: np.ndarray | None = None
    for chunk in np.array_split(train, max(1, len(train) // 128)):
        x = features(dec.z[chunk], hood, pad).astype(np.float64)
        y = (patches(images[chunk], dec.patch) - dec.base[chunk]).reshape(x.shape[0], -1).astype(np.float64)
        xtx = x.T @ x if xtx is None else xtx + x.T @ x
        xty = x.T @ y if xty is None else xty + x.T @ y
    assert xtx is not None and xty is not None
    scale = np.trace(xtx) / xtx.shape[0]
    return {lam: np.linalg.solve(xtx + lam * scale * np.eye(xtx.shape[0]), xty) for lam in LAMBDAS}


def reconstruct(dec: Decoded, idx: np.ndarray, w: np.ndarray | None, hood: str, pad: str) -> np.ndarray:
    """uint8 pictures ``[n, S, S, 3]`` from the plain decode plus the context correction."""
    vec = dec.base[idx].astype(np.float64)
    if w is not None:
        vec = vec + (features(dec.z[idx], hood, pad) @ w.astype(np.float32)).reshape(vec.shape)
    return np.stack([unpatchify(v, dec.patch) for v in vec])


def psnrs(orig: np.ndarray, rec: np.ndarray) -> np.ndarray:
    err = ((orig.astype(np.float64) - rec.astype(np.float64)) ** 2).reshape(len(orig), -1).mean(axis=1)
    return 10 * np.log10(255.0**2 / np.maximum(err, 1e-10))


def best_deblock(rec: np.ndarray, orig: np.ndarray, patch: int) -> tuple[int, float]:
    best = (float(np.sum((orig.astype(np.float64) - rec) ** 2)), 0, 0.0)
    for width in range(1, patch // 2 + 1):
        for strength in (0.1, 0.25, 0.5, 0.7, 0.85, 1.0):
            err = float(np.sum((orig.astype(np.float64) - deblock(rec, patch, width, strength)) ** 2))
            if err < best[0]:
                best = (err, width, strength)
    return best[1], best[2]


def run_ridge(scale: str, tok: VideoTokenizer, pics: np.ndarray, dec: Decoded, test_imgs: np.ndarray,
              test: Decoded, results: dict[str, Any], hoods: list[str]) -> dict[str, np.ndarray]:
    """Every neighbourhood and padding; lambda chosen on held-back training pictures (every 10th)."""
    n = len(pics)
    val = np.arange(0, n, 10)
    train = np.setdiff1d(np.arange(n), val)
    width, strength = tok.deblocking[scale]
    all_test = np.arange(len(test_imgs))
    base = psnrs(test_imgs, deblock(reconstruct(test, all_test, None, "", ""), test.patch, width, strength))
    results[f"{scale}.shipped"] = base.tolist()
    log(f"{scale}: shipped decoder (deblock {width} px at {strength}): mean {base.mean():.3f} dB")
    kept: dict[str, np.ndarray] = {}
    val_base = psnrs(pics[val], deblock(reconstruct(dec, val, None, "", ""), dec.patch, width, strength)).mean()
    for spec in hoods:
        hood, pad = spec.split("-")
        t0 = time.monotonic()
        ws = ridge_fit(dec, pics, hood, pad, train)
        val_db = {lam: psnrs(pics[val], reconstruct(dec, val, w, hood, pad)).mean() for lam, w in ws.items()}
        lam = max(val_db, key=lambda k: val_db[k])
        ws_all = ridge_fit(dec, pics, hood, pad, np.arange(n))
        w = ws_all[lam]
        rec = reconstruct(test, all_test, w, hood, pad)
        raw = psnrs(test_imgs, rec)
        dw, ds = best_deblock(reconstruct(dec, val, w, hood, pad), pics[val], dec.patch)
        deb = psnrs(test_imgs, deblock(rec, test.patch, dw, ds))
        label = f"{scale}.ridge-{hood}-{pad}"
        results[label] = raw.tolist()
        results[f"{label}+deblock({dw},{ds})"] = deb.tolist()
        kept[f"{hood}-{pad}"] = w
        log(f"{label}: lambda {lam:g}, training val {val_db[lam]:.3f} dB (shipped {val_base:.3f}), "
            f"held-out {raw.mean():.3f} dB ({raw.mean() - base.mean():+.3f}), "
            f"+refit deblock {dw} px {ds}: {deb.mean():.3f} ({deb.mean() - base.mean():+.3f}); "
            f"{(raw > base).sum()}/12 better; {time.monotonic() - t0:.0f} s")
    return kept


class ContextNet(torch.nn.Module):
    """``z [n, d+1, g, g]`` (a ones channel marks the grid) -> residual pixels ``[n, D, g, g]``:
    a 3 x 3 linear path (initialised with the ridge fit) plus a two-hidden-layer branch."""

    def __init__(self, d: int, out: int, hidden: int, layers: int, linear: np.ndarray) -> None:
        super().__init__()
        self.linear = torch.nn.Conv2d(d + 1, out, 3, padding=1)
        mid: list[torch.nn.Module] = []
        for _ in range(layers - 1):
            mid += [torch.nn.Conv2d(hidden, hidden, 3, padding=1), torch.nn.GELU()]
        self.branch = torch.nn.Sequential(
            torch.nn.Conv2d(d + 1, hidden, 3, padding=1), torch.nn.GELU(), *mid, torch.nn.Conv2d(hidden, out, 1),
        )
        last = self.branch[-1]
        assert isinstance(last, torch.nn.Conv2d) and last.bias is not None
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
        # ridge weights [9 * (d+1) ... ] for hood 3x3 pad edge have no indicators: map to the conv
        with torch.no_grad():
            wt = torch.from_numpy(linear[:-1].astype(np.float32)).reshape(3, 3, d, out)
            self.linear.weight.zero_()
            self.linear.weight[:, :d] = wt.permute(3, 2, 0, 1)
            assert self.linear.bias is not None
            self.linear.bias.copy_(torch.from_numpy(linear[-1].astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.branch(x)


def net_input(z: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(z).permute(0, 3, 1, 2)
    return torch.cat([t, torch.ones_like(t[:, :1])], dim=1).contiguous()


def run_net(scale: str, dec: Decoded, pics: np.ndarray, test: Decoded, test_imgs: np.ndarray,
            linear: np.ndarray, epochs: int, hidden: int, layers: int, lr: float, results: dict[str, Any]) -> None:
    """Train on the training pictures (Adam, MSE on the residual), report the held-out PSNR."""
    torch.manual_seed(0)
    d, out = dec.z.shape[-1], dec.base.shape[-1]
    g = dec.g
    net = ContextNet(d, out, hidden, layers, linear)
    x_all = net_input(dec.z)
    y_all = torch.from_numpy(patches(pics, dec.patch) - dec.base).reshape(len(pics), g, g, out).permute(0, 3, 1, 2)
    net.linear.requires_grad_(False)  # the ridge fit stays; the branch learns what it misses
    opt = torch.optim.Adam(net.branch.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    batch = 32
    x_test = net_input(test.z)
    for epoch in range(epochs):
        t0 = time.monotonic()
        perm = torch.randperm(len(pics))
        total = 0.0
        for i in range(0, len(perm), batch):
            idx = perm[i : i + batch]
            loss = torch.nn.functional.mse_loss(net(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        with torch.no_grad():
            corr = net(x_test).permute(0, 2, 3, 1).reshape(len(test_imgs), g * g, out).numpy()
        rec = np.stack([unpatchify(v, dec.patch) for v in test.base.astype(np.float64) + corr])
        db = psnrs(test_imgs, rec)
        log(f"{scale} net epoch {epoch}: train mse {total / len(perm):.6f}, held-out {db.mean():.3f} dB "
            f"({time.monotonic() - t0:.0f} s)")
    results[f"{scale}.net-h{hidden}x{layers}"] = db.tolist()
    dw, ds = best_deblock(rec_of(net, x_all[::10], dec, np.arange(0, len(pics), 10)), pics[::10], dec.patch)
    deb = psnrs(test_imgs, deblock(rec, dec.patch, dw, ds))
    results[f"{scale}.net-h{hidden}x{layers}+deblock({dw},{ds})"] = deb.tolist()
    log(f"{scale} net + deblock refit {dw} px {ds}: {deb.mean():.3f} dB")


def rec_of(net: ContextNet, x: torch.Tensor, dec: Decoded, idx: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        corr = net(x).permute(0, 2, 3, 1).reshape(len(idx), dec.g * dec.g, -1).numpy()
    return np.stack([unpatchify(v, dec.patch) for v in dec.base[idx].astype(np.float64) + corr])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", type=Path)
    ap.add_argument("mate", type=Path)
    ap.add_argument("--crops", type=int, default=15)
    ap.add_argument("--net", action="store_true")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--layers", type=int, default=2, help="hidden conv layers in the branch")
    ap.add_argument("--no-colour", action="store_true", help="augment without varying colours")
    ap.add_argument("--scales", default="fine,coarse")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--hoods", default="cross5-zero,3x3-zero,3x3-edge,5x5-zero")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.no_colour:
        fit_module._vary_colour = lambda rgb, rng: rgb
    cfg = TokenizerConfig(device="cpu")
    tok = VideoTokenizer(cfg.video, load_codebooks(None), "cpu")
    log(f"codebooks {tok.codebook_id}; beams fine {cfg.video.fine.beam}, coarse {cfg.video.coarse.beam}")
    pics = training_pictures(args.corpus, cfg.video.size, args.crops, seed=0)
    names, test_imgs = held_out(args.mate, cfg.video.size)
    log(f"{len(pics)} training pictures, {len(names)} held-out photographs")
    results: dict[str, Any] = {"images": names}
    for scale in args.scales.split(","):
        dec, test = Decoded(tok, pics, scale), Decoded(tok, test_imgs, scale)
        log(f"{scale}: encoded")
        kept = run_ridge(scale, tok, pics, dec, test_imgs, test, results, args.hoods.split(","))
        if args.net:
            run_net(scale, dec, pics, test, test_imgs, kept["3x3-edge"], args.epochs, args.hidden, args.layers, args.lr,
                    results)
        if args.out:
            args.out.write_text(json.dumps(results, indent=1))
    for key, vals in results.items():
        if key != "images":
            print(f"{key}: {np.mean(vals):.3f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
