"""Where `livetok tokenize`'s CPU goes, per frame: every stage run in turn on one thread.

    .venv/bin/python bench/profile_tokenize.py [--seconds 60] [--clip FILE]

The clip is bench_tokenize.py's (720p30 H.264 + AAC 48 kHz; made in a temporary folder unless
``--clip`` names one). Stages, timed with ``time.process_time`` (the CPU of every thread of the
process, FFmpeg's decoder and scaler threads included), torch on 1 thread, no overlap:

* ``decode``: the next decoded frame (FFmpeg decodes in its own threads, ahead of the caller, so
  part of its CPU lands in whichever stage runs meanwhile: read decode + prepare together);
* ``prepare video``: conversion to the model's 224 x 224 RGB (swscale: scale + colour conversion);
* ``feed video``: batching, patches, projection, RVQ, packet building; ``feed audio``: conversion,
  resampling, log-mel, RVQ, packets; ``write``: the .ltk writer.

Then the video encode alone, by phase, on a batch of 8 random 224 x 224 frames. Figures are
printed, not asserted; with PYTHONPATH=DIR (run from outside the repository) it profiles the
livetok tree in DIR instead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from bench_tokenize import make_clip

from livetok.config import load_config
from livetok.media.decode import decode
from livetok.tokenizers import Tokenizers
from livetok.tokenizers.rvq import argmin_rows
from livetok.tokenizers.session import MediaTokenizer
from livetok.tokenizers.video import PIXEL_SCALE, patch_pixels
from livetok.wire import LtkWriter


def stages(clip: Path, toks: Tokenizers, out: Path) -> tuple[dict[str, float], int]:
    """CPU seconds per stage over the whole clip, and the video frame count."""
    spent: dict[str, float] = {}
    mt = MediaTokenizer(toks, "clip")  # no encode threads: every stage on this one
    frames = decode(clip)
    n_video = 0
    with LtkWriter(out) as sink:
        while True:
            t = time.process_time()
            mf = next(frames, None)
            if mf is None:
                break
            t1 = time.process_time()
            item = mt.prepare(mf)
            t2 = time.process_time()
            packets = mt.feed(item)
            t3 = time.process_time()
            for p in packets:
                sink.write(p)
            t4 = time.process_time()
            for name, dt in ((f"decode {mf.kind}", t1 - t), (f"prepare {mf.kind}", t2 - t1),
                             (f"feed {mf.kind}", t3 - t2), ("write", t4 - t3)):
                spent[name] = spent.get(name, 0.0) + dt
            n_video += mf.kind == "video"
        t = time.process_time()
        for p in mt.flush():
            sink.write(p)
        spent["flush"] = time.process_time() - t
    return spent, n_video


@torch.inference_mode()
def encode_phases(toks: Tokenizers, repeat: int = 30) -> dict[str, float]:
    """CPU ms per frame of each phase of ``VideoTokenizer.encode``, batch of 8, both scales."""
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (8, 224, 224, 3), dtype=np.uint8))
    spent: dict[str, float] = {}

    @contextmanager
    def phase(name: str) -> Iterator[None]:
        t = time.process_time()
        yield
        spent[name] = spent.get(name, 0.0) + time.process_time() - t

    for _ in range(repeat):
        for scale, q in toks.video.quantizers.items():
            with phase("patch_pixels (reorder + uint8 -> float)"):
                x = patch_pixels(images, toks.video.patch[scale])
            p = q.torch_params(x.device, x.dtype, PIXEL_SCALE)
            with phase("projection (addmm)"):
                r = torch.addmm(p.bias, x, p.weight)
            scores = torch.empty((x.shape[0], q.codebook_size))
            for level in range(q.levels):
                with phase("scores (addmm per level)"):
                    torch.addmm(p.half_norms[level], r, p.codebooks_t[level], beta=1.0, alpha=-1.0, out=scores)
                with phase("argmin_rows"):
                    idx = argmin_rows(scores)
                if level + 1 < q.levels:
                    with phase("residual update"):
                        r -= p.codebooks[level].index_select(0, idx)
    return {k: 1e3 * v / repeat / images.shape[0] for k, v in spent.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clip", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    toks = Tokenizers.from_config(load_config(None).tokenizer)
    toks.warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or Path(tmp) / "clip.mp4"
        if args.clip is None:
            make_clip(clip, args.seconds)
        spent, n = stages(clip, toks, Path(tmp) / "out.ltk")
    total = sum(spent.values())
    print(f"{n} video frames, {total:.2f} CPU s in all ({1e3 * total / n:.2f} ms per video frame), torch on 1 thread")
    for name, s in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:16s} {s:7.2f} s  {1e3 * s / n:6.2f} ms/frame  {100 * s / total:5.1f} %")
    phases = encode_phases(toks)
    print(f"video encode by phase, batch of 8: {sum(phases.values()):.2f} ms per frame")
    for name, ms in phases.items():
        print(f"  {name:40s} {ms:6.3f} ms/frame  {100 * ms / sum(phases.values()):5.1f} %")


if __name__ == "__main__":
    main()
