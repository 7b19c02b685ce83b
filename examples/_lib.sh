# Shared by examples/*/run.sh (sourced, not run): a private Mosquitto on a free loopback port, the
# daemon into a token file and that broker, a recorder that takes back from the bus what the daemon
# published, and `livetok probe` of both files. Everything it starts is stopped on exit, whatever happens.
#
#   example_begin NAME [OUT_DIR]   # OUT_DIR default: ./livetok-example-NAME (made; kept afterwards)
#   start_broker                   # sets PORT
#   run_daemon SECONDS             # livetok run -c $OUT/config.yaml, then the bus recording, then probe
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${LIVETOK_PYTHON:-$ROOT/.venv/bin/python}
LIVETOK=${LIVETOK_BIN:-$ROOT/.venv/bin/livetok}
[ -x "$PY" ] && [ -x "$LIVETOK" ] || { echo "example: no $ROOT/.venv: run scripts/setup.sh first" >&2; exit 1; }
CLIENT_ID=livetok-example-$$
BROKER_PID=""

cleanup() {
  if [ -n "$BROKER_PID" ]; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

example_begin() {
  NAME=$1
  OUT=$(mkdir -p "${2:-livetok-example-$NAME}" && cd "${2:-livetok-example-$NAME}" && pwd)
  rm -f "$OUT"/*.ltk
  echo "example $NAME: writing into $OUT"
}

start_broker() {
  command -v mosquitto >/dev/null || { echo "example: mosquitto is not installed (scripts/setup.sh)" >&2; exit 1; }
  PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # No persistence file; the recorder's session keeps every message the daemon sends while it is away.
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n' \
    "$PORT" > "$OUT/mosquitto.conf"
  mosquitto -c "$OUT/mosquitto.conf" > "$OUT/mosquitto.log" 2>&1 &
  BROKER_PID=$!
  # Ready when it accepts a connection (at most 5 s).
  "$PY" - "$PORT" <<'PYEOF' || { echo "example: mosquitto did not start (see $OUT/mosquitto.log)" >&2; exit 1; }
import socket, sys, time
deadline = time.monotonic() + 5
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.05)
PYEOF
  echo "example: private broker on 127.0.0.1:$PORT"
}

# The token and step topics only (meta, availability and stats are left out, so that counts compare).
DATA_FILTERS=("livetok/+/+/+/+" "livetok/+/+/steps")

run_daemon() {
  local seconds=$1
  # A persistent session first: the broker keeps for it every message published from now on.
  "$LIVETOK" record "mqtt://127.0.0.1:$PORT" "${DATA_FILTERS[@]}" --persistent --client-id "$CLIENT_ID" \
    --duration 0.1 -o "$OUT/bus.ltk" 2>/dev/null
  echo "example: livetok run -c $OUT/config.yaml --duration $seconds"
  # stderr: the log lines, then the books and metrics as JSON
  "$LIVETOK" run -c "$OUT/config.yaml" --duration "$seconds" > "$OUT/run.out" 2> "$OUT/run.log" \
    || { cat "$OUT/run.log" >&2; exit 1; }
  grep -E "^livetok: (ready|run)" "$OUT/run.log" || true
  # Take back exactly what the daemon published (its books say how many); the session queued it all.
  local sent
  sent=$("$PY" -c 'import json, sys; t = open(sys.argv[1]).read()
b = json.JSONDecoder().raw_decode(t[t.index("\n{") + 1:])[0]["accounting"]["sinks"]["mqtt"]
print(sum(s["written"] for s in b["streams"].values()))' "$OUT/run.log")
  "$LIVETOK" record "mqtt://127.0.0.1:$PORT" "${DATA_FILTERS[@]}" --persistent --client-id "$CLIENT_ID" \
    --count "$sent" --duration 20 -o "$OUT/bus.ltk"
  echo "example: the token file"
  "$LIVETOK" probe "$OUT/tokens.ltk"
  echo "example: what came back from the bus"
  "$LIVETOK" probe "$OUT/bus.ltk"
}

# make_speech FILE TEXT: espeak-ng's voice with 0.6 s of silence before and after (22.05 kHz mono WAV).
make_speech() {
  command -v espeak-ng >/dev/null && command -v sox >/dev/null \
    || { echo "example: needs espeak-ng and sox (scripts/setup.sh)" >&2; exit 1; }
  espeak-ng -w "$1.voice.wav" "$2"
  sox -q "$1.voice.wav" "$1" pad 0.6 0.6
  rm -f "$1.voice.wav"
}

# write_config TEMPLATE: OUT/config.yaml from the example's config.yaml.in (@OUT@, @PORT@, @MODEL@ filled in).
write_config() {
  sed -e "s|@OUT@|$OUT|g" -e "s|@PORT@|$PORT|g" -e "s|@MODEL@|${MODEL:-}|g" "$1" > "$OUT/config.yaml"
}

# The model files of the silero-vad wheel (importlib.resources: nothing is downloaded).
silero_file() {
  "$PY" -c 'import importlib.resources as r, sys; print(r.files("silero_vad") / "data" / sys.argv[1])' "$1"
}
