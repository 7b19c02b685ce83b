#!/usr/bin/env bash
# The project's test command (README Quick start, CI): lint, type-check, then the test suite on two
# workers (pytest-xdist, `--dist worksteal`; a test marked `exclusive` runs with nothing beside it,
# tests/conftest.py). Arguments go to pytest:
#   bash scripts/test.sh                       # everything
#   bash scripts/test.sh -m "not slow"         # the inner loop: the fast subset (under a minute on 2 cores)
#   bash scripts/test.sh tests/test_wire.py    # one file
# LIVETOK_TEST_WORKERS=N sets the number of workers (0: none, in this process). Without CI=true a
# test whose tool is missing is skipped, saying so; with CI=true it fails (tests/requires.py).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"; .venv/bin/ruff check livetok tests bench scripts
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/python -m pytest -n "${LIVETOK_TEST_WORKERS:-2}" --dist worksteal "$@"
