"""Fit the video scales of the packaged default codebooks (run by scripts/fit-default-codebooks.sh).

Usage: python scripts/fit_default_codebooks.py CORPUS_DIR BASE.safetensors OUT.safetensors

Video is fitted on CORPUS_DIR (scripts/make_corpus.py --video-only) with larger training samples
than ``livetok fit``'s defaults (390 625 fine and 97 656 coarse vectors: 5.2 GB peak RSS); the
audio scales are taken unchanged from BASE (the v1 codebooks, fitted on the speech and music that
make_corpus.py also makes), so audio tokens do not change. Last, the decoder's deblocking
(docs/tokenizers.md) is fitted on every corpus picture as the tokenizer sees it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from livetok.config.tokenizer import TokenizerConfig
from livetok.media.frames import to_model_image
from livetok.tokenizers.codebooks import load_codebooks, make_set, save_codebooks
from livetok.tokenizers.fit import FitOptions, fit, fit_deblocking, media_files

# deblock_pictures=0: the deblocking is fitted below on every corpus picture, not on a sample
OPTIONS = FitOptions(iters=20, seed=0, max_vectors=400_000, max_values=300_000_000, refine_rounds=4,
                     deblock_pictures=0)


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    corpus, base_path, out = (Path(a) for a in sys.argv[1:])
    cfg = TokenizerConfig(device="cpu")
    base = load_codebooks(base_path)
    files = media_files([corpus])
    cbs = fit(files, cfg, OPTIONS, base)
    for s in ("fine", "coarse"):
        if not np.array_equal(cbs.scale("audio", s).codebooks, base.scale("audio", s).codebooks):
            raise SystemExit("the corpus has audio: make it with make_corpus.py --video-only")
    pictures = np.stack([to_model_image(np.asarray(Image.open(f).convert("RGB")), cfg.video.size, "crop")
                         for f in files])
    cbs = make_set(cbs.frontend, cbs.scales, fit_deblocking(cbs, cfg, pictures))
    parents = sorted({f.parent.name for f in files})
    save_codebooks(cbs, out, {"fitted_on": ",".join(parents), "audio_from": base.codebook_id})
    print(f"wrote codebooks {cbs.codebook_id} to {out} ({len(files)} files)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
