#!/usr/bin/env bash
# silero-vad, a real pretrained voice activity detector (the ONNX file inside its wheel), live on a speech
# clip made with espeak-ng: one token per 32 ms, the speech probability as one of 8 ordered levels.
#   bash examples/silero-vad/run.sh [OUT_DIR]        (from a set-up checkout: scripts/setup.sh)
source "$(dirname "$0")/../_lib.sh"
example_begin silero-vad "${1:-}"

MODEL=$(silero_file silero_vad.onnx)
[ -f "$MODEL" ] || { echo "example: silero-vad is not installed (scripts/setup.sh installs the lock)" >&2; exit 1; }

# 0.6 s of silence, about 3 s of speech, 0.6 s of silence.
make_speech "$OUT/speech.wav" "Tokens that tell the truth. Live, from the first packet."

start_broker
write_config "$(dirname "$0")/config.yaml.in"
# 8 k-means units over the model's probabilities (scalars: codes come in the order of their values).
"$LIVETOK" fit --tokenizer vad "$OUT/speech.wav" -o "$OUT/vad.safetensors" -c "$OUT/config.yaml"
"$PY" - "$OUT/vad.safetensors" <<'PYEOF'
import sys
from livetok.tokenizers.quantizer_file import load_quantizers
a = load_quantizers(sys.argv[1]).streams["tokens"]
levels = (a.codebooks[0, :, 0] + a.mean[0]).tolist()
print("example: code -> speech probability:", "  ".join(f"{k}: {p:.3f}" for k, p in enumerate(levels)))
PYEOF
"$LIVETOK" check-config -c "$OUT/config.yaml"

run_daemon 15

# The probabilities over time, as a line of codes: 0 is silence, 7 is speech.
echo "example: the vad stream's codes, one per 32 ms:"
"$LIVETOK" probe "$OUT/tokens.ltk" --tokens | "$PY" -c '
import json, sys
rows = [json.loads(line) for line in sys.stdin]
codes = [r["codes"][0][0] for r in rows if r["kind"] == "packet" and r["scale"] == "vad"]
print("".join(str(c) for c in codes))'
