#!/usr/bin/env bash
# Reproduce the packaged codebooks: build the redistributable corpus, then fit with seed 0.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
.venv/bin/python scripts/make_corpus.py "$corpus"
.venv/bin/livetok fit "$corpus" --no-base --seed 0 -o livetok/codebooks/default.safetensors
