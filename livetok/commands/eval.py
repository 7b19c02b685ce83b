"""``livetok eval``: tokenize, decode and report quality (the measuring is :mod:`livetok.commands.quality`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from livetok.commands.quality import evaluate, format_report
from livetok.config import load_config
from livetok.tokenizers import Tokenizers


def command(args: argparse.Namespace) -> int:
    toks = Tokenizers.from_config(load_config(args.config).tokenizer)
    report = evaluate(Path(args.input), toks, compare=not args.no_compare)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0
