#!/usr/bin/env bash
# Set up livetok on a fresh Debian/Ubuntu machine: system packages and a .venv installed from the hashed lock.
# Idempotent: a second run checks a stamp and returns at once. Nothing off requirements.lock gets into .venv:
# uv (itself installed by pip from the lock, hash-checked) installs the lock with --require-hashes; if uv
# fails, pip does the same with --require-hashes. Then `pip check` and an import smoke test of the native
# parts; "ready" is printed only when both pass.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

DEB_PACKAGES=(ffmpeg mosquitto mosquitto-clients libportaudio2 pulseaudio pulseaudio-utils
  libasound2-plugins rtsp-server-perl espeak-ng sox systemd tmux)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian mosquitto package enables its system broker; livetok starts its own private brokers
# (tests, demo) on free loopback ports and never needs or touches that one.

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi

# Run a command quietly; on failure show its output (less pip's noise about absent local indexes).
quiet() {
  local log; log=$(mktemp)
  if "$@" >"$log" 2>&1; then rm -f "$log"; return 0; fi
  grep -v "is ignored: it is neither" "$log" >&2 || true; rm -f "$log"; return 1
}
stamp=.venv/.livetok-setup
# The stamp covers the lock, pyproject and this script's install steps (bump SETUP_STEPS when they change).
SETUP_STEPS=2
want=$( (cat requirements.lock pyproject.toml; echo "steps $SETUP_STEPS") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -f "$stamp"
  echo "setup: installing Python dependencies from requirements.lock (hashes required)"
  start=$(date +%s)
  # uv first, from its own hashed entry in the lock.
  uvreq=$(mktemp)
  awk '/^uv==/{p=1} p{print} p&&!/\\$/{exit}' requirements.lock > "$uvreq"
  installed=""
  # LIVETOK_INSTALLER=pip skips uv (the fallback on its own; also how its time was measured).
  if [ "${LIVETOK_INSTALLER:-uv}" = uv ] && [ -s "$uvreq" ] \
      && quiet .venv/bin/python -m pip install --require-hashes --no-deps -r "$uvreq"; then
    if quiet .venv/bin/uv pip install --python .venv/bin/python --require-hashes -r requirements.lock; then
      installed=uv
    else
      echo "setup: uv could not install the lock (above); trying pip" >&2
    fi
  fi
  rm -f "$uvreq"
  if [ -z "$installed" ]; then
    quiet .venv/bin/python -m pip install --require-hashes -r requirements.lock \
      || { echo "setup: FAILED: pip could not install requirements.lock (output above)" >&2; exit 1; }
    installed=pip
  fi
  # The project itself, editable, built with the locked setuptools (no isolated build env off the lock).
  quiet .venv/bin/python -m pip install --no-deps --no-build-isolation -e . \
    || { echo "setup: FAILED: could not install livetok itself in editable mode (output above)" >&2; exit 1; }
  # Bytecode now, once: uv does not compile it, and a service user (DynamicUser=) cannot write it into a
  # root-owned .venv, nor can anyone under PYTHONDONTWRITEBYTECODE, so without this every start compiles
  # torch's sources again: 4.1 s of CPU instead of 1.7 s to start `livetok tokenize` (docs/performance.md).
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  quiet .venv/bin/python -m compileall -q -j 0 "$site" livetok \
    || { echo "setup: FAILED: could not compile the installed packages' bytecode (output above)" >&2; exit 1; }
  echo "setup: installed with $installed in $(( $(date +%s) - start )) s"
  quiet .venv/bin/python -m pip check \
    || { echo "setup: FAILED: pip check found inconsistent packages (above): rerun with a clean .venv: rm -rf .venv && bash scripts/setup.sh" >&2; exit 1; }
  # The native parts must load, not just be present (torchaudio 2.11.1 once installed fine and did not load).
  .venv/bin/python -m livetok.commands.doctor --native || { echo "setup: FAILED: see the line above" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
echo "setup: ready (.venv/bin/livetok)"
