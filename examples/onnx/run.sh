#!/usr/bin/env bash
# Your own ONNX image encoder, live: a small random-weight patch encoder made by make_model.py (its
# contract in the file's metadata), a PCA + 2-level RVQ of its patch embeddings fitted with `livetok fit`,
# run on a 3 s test clip, into a token file and a private Mosquitto.
#   bash examples/onnx/run.sh [OUT_DIR]        (from a set-up checkout: scripts/setup.sh)
source "$(dirname "$0")/../_lib.sh"
example_begin onnx "${1:-}"

MODEL=$OUT/encoder.onnx
"$PY" "$(dirname "$0")/make_model.py" "$MODEL"
command -v ffmpeg >/dev/null || { echo "example: needs ffmpeg (scripts/setup.sh)" >&2; exit 1; }
ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x240:rate=10:duration=3 -c:v libx264 -preset ultrafast \
  -pix_fmt yuv420p "$OUT/clip.mp4"

start_broker
write_config "$(dirname "$0")/config.yaml.in"
"$LIVETOK" fit --tokenizer patches "$OUT/clip.mp4" -o "$OUT/patches.safetensors" -c "$OUT/config.yaml"
"$LIVETOK" check-config -c "$OUT/config.yaml"

run_daemon 15
