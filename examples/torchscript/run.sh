#!/usr/bin/env bash
# Your own TorchScript audio encoder, live: a small random-weight model made by make_model.py (its
# contract inside the file), 32 k-means units of its 20 ms embeddings fitted with `livetok fit`, run beside
# the built-in log-mel RVQ on an espeak-ng clip, into a token file and a private Mosquitto.
#   bash examples/torchscript/run.sh [OUT_DIR]        (from a set-up checkout: scripts/setup.sh)
source "$(dirname "$0")/../_lib.sh"
example_begin torchscript "${1:-}"

MODEL=$OUT/encoder.pt
"$PY" "$(dirname "$0")/make_model.py" "$MODEL"
make_speech "$OUT/speech.wav" "Bring your own tokenizer. Any model, on one clock."

start_broker
write_config "$(dirname "$0")/config.yaml.in"
"$LIVETOK" fit --tokenizer units "$OUT/speech.wav" -o "$OUT/units.safetensors" -c "$OUT/config.yaml"
"$LIVETOK" check-config -c "$OUT/config.yaml"

run_daemon 15
