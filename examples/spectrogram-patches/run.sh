#!/usr/bin/env bash
# spectrogram-patches (AST-style audio tokens), live: no model file, a PCA + RVQ of 16 x 16 log-mel
# patches fitted with `livetok fit`, run on an espeak-ng clip into a token file and a private Mosquitto.
#   bash examples/spectrogram-patches/run.sh [OUT_DIR]        (from a set-up checkout: scripts/setup.sh)
source "$(dirname "$0")/../_lib.sh"
example_begin spectrogram-patches "${1:-}"

make_speech "$OUT/speech.wav" "Sixteen bands by sixteen frames. Eight patches every eighty milliseconds."

start_broker
write_config "$(dirname "$0")/config.yaml.in"
"$LIVETOK" fit --tokenizer spec "$OUT/speech.wav" -o "$OUT/spec.safetensors" -c "$OUT/config.yaml"
"$LIVETOK" check-config -c "$OUT/config.yaml"

run_daemon 15
