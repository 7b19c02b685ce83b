"""``livetok fit``: projections and RVQ codebooks learnt from media files (:mod:`livetok.tokenizers.fit`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from livetok.config import load_config
from livetok.outputs import check_output
from livetok.tokenizers.codebooks import load_codebooks, save_codebooks
from livetok.tokenizers.fit import FitOptions, fit, media_files


def command(args: argparse.Namespace) -> int:
    cfg = load_config(args.config).tokenizer
    files = media_files([Path(p) for p in args.inputs])
    base = None if args.no_base else load_codebooks(cfg.codebooks)
    check_output(Path(args.output))  # before minutes of fitting, not after
    cbs = fit(files, cfg, FitOptions(iters=args.iters, seed=args.seed), base)
    save_codebooks(cbs, Path(args.output), {"fitted_on": ",".join(sorted({f.parent.name for f in files}))})
    print(f"wrote codebooks {cbs.codebook_id} to {args.output} ({len(files)} files)", file=sys.stderr)
    return 0
