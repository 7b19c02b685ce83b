"""``livetok fit``: projections and RVQ codebooks learnt from media files (:mod:`livetok.tokenizers.fit`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from livetok.config import LivetokConfig, load_config
from livetok.outputs import check_output
from livetok.tokenizers.codebooks import load_codebooks, save_codebooks
from livetok.tokenizers.fit import FitOptions, fit, media_files


def command(args: argparse.Namespace) -> int:
    if args.tokenizer is not None:
        return fit_plugin(args)
    cfg = load_config(args.config).tokenizer
    files = media_files([Path(p) for p in args.inputs])
    base = None if args.no_base else load_codebooks(cfg.codebooks)
    check_output(Path(args.output))  # before minutes of fitting, not after
    cbs = fit(files, cfg, FitOptions(iters=args.iters, seed=args.seed), base)
    save_codebooks(cbs, Path(args.output), {"fitted_on": ",".join(sorted({f.parent.name for f in files}))})
    print(f"wrote codebooks {cbs.codebook_id} to {args.output} ({len(files)} files)", file=sys.stderr)
    return 0


def fit_plugin(args: argparse.Namespace) -> int:
    """``fit --tokenizer NAME``: the plug-in tokenizer's quantizer on its model's embeddings (or its
    spectrogram patches) of the inputs, written as its codebook file. A model that gives codes has
    nothing to fit: said, nothing written, exit 0."""
    from livetok.errors import ConfigError
    from livetok.tokenizers.plugin_fit import fit_tokenizer
    from livetok.tokenizers.quantizer_file import save_quantizers
    from livetok.tokenizers.registry import check_plugins, unfitted

    cfg = load_config(args.config)
    checked = {c.entry.name: c for c in check_plugins(cfg)}
    c = checked.get(args.tokenizer)
    if c is None:
        names = ", ".join(checked) or "none"
        raise ConfigError(f"--tokenizer {args.tokenizer}: no plug-in tokenizer of that name in the configuration "
                          f"(plug-in tokenizers: {names}; the built-in kinds are fitted without --tokenizer)")
    kind, quantizer = unfitted(cfg, c)
    if quantizer is None:
        print(f"tokenizer {args.tokenizer!r}: its model gives codes itself; there is nothing to fit", file=sys.stderr)
        return 0
    files = media_files([Path(p) for p in args.inputs])
    check_output(Path(args.output))
    qs = fit_tokenizer(files, kind, quantizer, FitOptions(iters=args.iters, seed=args.seed))
    save_quantizers(qs, Path(args.output))
    print(f"wrote codebooks {qs.codebook_id} of tokenizer {args.tokenizer!r} to {args.output} ({len(files)} files); "
          f"{_where_to_name(cfg, c.index, c.entry.codebooks, Path(args.output))}", file=sys.stderr)
    return 0


def _where_to_name(cfg: LivetokConfig, index: int, named: Path | None, out: Path) -> str:
    """What the user does next: the key that names the written file (and where the tokenizer is
    in the file), or that it names it already."""
    key = f"tokenizers.{index}.codebooks"
    entry = cfg.where("tokenizers", index)  # "FILE:LINE: tokenizers.N", or the key alone without a file
    at = f" ({entry.rsplit(': ', 1)[0]})" if ": " in entry else ""
    if named is not None and named.expanduser().resolve() == out.resolve():
        return f"{key}{at} names it already"
    return f"to use them, set {key}: {out.resolve()}{at}"
