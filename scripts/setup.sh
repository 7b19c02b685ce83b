#!/usr/bin/env bash
# Set up livetok on a fresh Debian/Ubuntu machine: system packages and a pinned .venv.
# Idempotent: a second run checks what is there and returns quickly.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

DEB_PACKAGES=(ffmpeg mosquitto mosquitto-clients libportaudio2 pulseaudio pulseaudio-utils
  libasound2-plugins rtsp-server-perl espeak-ng sox systemd)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
# pip, quiet unless it fails (then its output, less the noise about absent local indexes).
pipq() {
  local log; log=$(mktemp)
  if ! .venv/bin/python -m pip install -q "$@" >"$log" 2>&1; then
    grep -v "is ignored" "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
}
stamp=.venv/.livetok-setup
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies (torch is large: about a minute)"
  pipq --upgrade pip
  # From the registry, not a local wheel: torchaudio 2.11 needs the CUDA build of torch (runs on CPU).
  pipq -r requirements.lock
  pipq --no-deps -e .
  echo "$want" > "$stamp"
fi
echo "setup: ready (.venv/bin/livetok)"
