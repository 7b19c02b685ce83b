"""``livetok check-config``: the file, and everything ``run`` checks before capture starts."""

from __future__ import annotations

import argparse

from livetok.config import load_config
from livetok.daemon.preflight import check_tokenizers, preflight


def command(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    notes: list[str] = []  # a sink in the service's StateDirectory before its first start
    codebook_id = preflight(cfg, notes)  # everything `run` checks before capture starts
    plugins = check_tokenizers(cfg)
    groups = ", ".join(f"{g.name}(video={g.video}, audio={g.audio})" for g in cfg.effective_groups()) or "none"
    print(f"{args.config}: valid; {len(cfg.sources)} sources, groups: {groups}; {len(cfg.sinks)} sinks; "
          f"codebooks {codebook_id}" + (f"; tokenizers: {', '.join(plugins)}" if plugins else ""))
    for note in notes:
        print(f"  note: {note}")
    return 0
