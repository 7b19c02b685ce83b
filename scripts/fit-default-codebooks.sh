#!/usr/bin/env bash
# Reproduce the packaged default codebooks: build the redistributable corpus (scikit-image photos,
# Debian wallpaper and artwork packages fetched with apt-get download, synthetic frames), then fit
# the video scales with seed 0; the audio scales come unchanged from the v1 codebooks.
# Needs network for apt-get (run `apt-get update` once first); 11-13 min and 5.2 GB peak RSS on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
.venv/bin/python scripts/make_corpus.py "$corpus" --video-only
nice -n 19 .venv/bin/python scripts/fit_default_codebooks.py "$corpus" \
    livetok/codebooks/c0ff5bee45950755.safetensors livetok/codebooks/default.safetensors
