#!/usr/bin/env bash
# Run every livetok benchmark; each prints its tables (figures only, nothing asserts on speed) and
# keeps under about 3 minutes on a 2-core CPU machine. docs/performance.md explains the figures.
#
#   bench/run_all.sh 2>&1 | tee bench-results.txt
#
# bench_compare.py needs the comparison packages. Install them with --no-deps, ALWAYS: their
# declared requirements (moshi: torch<2.10) would otherwise make pip replace the pinned torch 2.11:
#   .venv/bin/pip install --no-deps -r bench/requirements-bench.txt
# Without them bench_compare.py still measures livetok and says what it could not run.
#
# Environment: PYTHON (default .venv/bin/python); BENCH_NO_WAIT=1 skips the short wait (at most
# 30 s per bench) for other processes to leave the CPU idle before timing.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
status=0
# bench_soak.py (memory over a 10-minute run with a dying source) is left out: run it on its own; so
# is bench_picture.py (picture per bit, about 12 min, fetches mate-backgrounds with apt-get download).
for bench in bench_video bench_audio bench_delta bench_tokenize bench_compare bench_sync bench_live; do
    echo
    echo "################ bench/$bench.py"
    start=$(date +%s)
    "$PY" "bench/$bench.py" || { echo "bench/$bench.py failed"; status=1; }
    echo "(bench/$bench.py took $(( $(date +%s) - start )) s)"
done
exit $status
