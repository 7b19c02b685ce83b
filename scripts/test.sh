#!/usr/bin/env bash
# The project's test command (README Quick start, CI): lint, type-check, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"; .venv/bin/ruff check livetok tests bench scripts
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/python -m pytest "$@"
