"""End-to-end file tokenization vs. the FFmpeg decode floor, on a 720p30 H.264 + AAC clip.

    .venv/bin/python bench/bench_tokenize.py [--seconds 10] [--repeat 3] [--baseline DIR] [--token-fps 30,5]

Makes the clip in a temporary folder (lavfi testsrc2 + sine, libx264 preset veryfast), then times
(wall clock, subprocesses, best of ``--repeat``; the commands take turns, one of each per round, so
that load from others on a shared machine hits them alike):

* ``ffmpeg -threads 0 -i clip.mp4 -f null -``: decode floor (video + audio decode, no output);
* ``livetok tokenize clip.mp4 -o out.ltk``: the CLI, including interpreter start-up, torch import
  and codebook loading;
* the start-up alone (imports + ``Tokenizers.from_config``), with the installed bytecode and without
  any (``PYTHONPYCACHEPREFIX`` set to an empty folder under ``PYTHONDONTWRITEBYTECODE``: what every
  start cost before scripts/setup.sh compiled the .venv's bytecode);
* ``tokenize_files`` in-process (what the CLI does after start-up), its wall and CPU seconds.

``--baseline DIR``: DIR holds another livetok tree (``git archive main | tar -x -C DIR``); its CLI
and in-process run are timed in the same rounds (``PYTHONPATH=DIR`` with this .venv), for before /
after figures from one run. ``--token-fps 30,5``: the CLI and the in-process run again with
``--token-fps`` at each rate, in the same rounds (30: the clip's own rate, every frame kept through the
rate's code path). CPU seconds (user + sys of the child) are shown beside the wall times.
Target: CLI wall time minus start-up <= 3 x the decode floor. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_header, table

VENV_BIN = Path(sys.executable).parent
STARTUP = (
    "from livetok.config import load_config; from livetok.commands.tokenize import tokenize_files; "
    "from livetok.tokenizers import Tokenizers; Tokenizers.from_config(load_config(None).tokenizer)"
)
CLI = "import sys; from livetok.cli import main; sys.argv[0] = 'livetok'; sys.exit(main())"
IN_PROCESS = """
import sys, time
from pathlib import Path
from livetok.config import load_config
from livetok.commands.tokenize import tokenize_files
from livetok.tokenizers import Tokenizers
toks = Tokenizers.from_config(load_config(None).tokenizer)
rate = {"token_fps": float(sys.argv[3])} if len(sys.argv) > 3 else {}
t, c = time.perf_counter(), time.process_time()
r = tokenize_files([Path(sys.argv[1])], toks, Path(sys.argv[2]), **rate)
print(dict(getattr(r, "rate", None) or {}) or "", time.perf_counter() - t, time.process_time() - c)
"""


def make_clip(path: Path, seconds: float) -> None:
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-shortest", str(path),
    ]
    subprocess.run(cmd, check=True)


def run_timed(cmd: list[str], env: dict[str, str] | None, cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, child CPU seconds and stdout of one run, in ``cwd`` (not the repository: ``-c``
    puts the working folder first on sys.path, before a baseline's PYTHONPATH)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                         text=True, cwd=cwd)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), res.stdout


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="another livetok tree, timed in the same rounds")
    ap.add_argument("--token-fps", default="", metavar="FPS,...", help="also time tokenize --token-fps at these rates")
    args = ap.parse_args()
    cont = print_header("bench_tokenize: livetok tokenize vs ffmpeg decode, 720p30 H.264 + AAC")
    if not shutil.which("ffmpeg"):
        print("ffmpeg not found: skipped")
        return
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        clip, out = Path(tmp) / "clip.mp4", Path(tmp) / "out.ltk"
        nopyc = Path(tmp) / "no-bytecode"
        nopyc.mkdir()
        make_clip(clip, args.seconds)
        mb = clip.stat().st_size / 1e6
        print(f"clip: {args.seconds:g} s 1280x720 30 fps libx264 veryfast + AAC 48 kHz, {mb:.1f} MB")
        ffmpeg = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-threads", "0", "-i", str(clip), "-f", "null", "-"]
        tokenize = ["tokenize", str(clip), "-o", str(out)]
        runs: dict[str, tuple[list[str], dict[str, str] | None]] = {
            "floor": (ffmpeg, None),
            "cli": ([py, "-c", CLI, *tokenize], None),
            "startup": ([py, "-c", STARTUP], None),
            "startup, no bytecode": ([py, "-c", STARTUP],
                                     env_with(PYTHONPYCACHEPREFIX=str(nopyc), PYTHONDONTWRITEBYTECODE="1")),
            "in-process": ([py, "-c", IN_PROCESS, str(clip), str(out)], None),
        }
        if args.baseline:
            base_env = env_with(PYTHONPATH=str(args.baseline.resolve()))
            subprocess.run([py, "-m", "compileall", "-q", str(args.baseline / "livetok")], check=True)
            runs["cli, baseline"] = ([py, "-c", CLI, *tokenize], base_env)
            runs["in-process, baseline"] = ([py, "-c", IN_PROCESS, str(clip), str(out)], base_env)
        for fps in [f for f in args.token_fps.split(",") if f]:
            runs[f"cli @ {fps} fps"] = ([py, "-c", CLI, *tokenize, "--token-fps", fps], None)
            runs[f"in-process @ {fps} fps"] = ([py, "-c", IN_PROCESS, str(clip), str(out), fps], None)
        books: dict[str, str] = {}
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):
            for name, (cmd, env) in runs.items():
                wall, cpu, stdout = run_timed(cmd, env, Path(tmp))
                if name.startswith("in-process"):  # the child's own figures, after its start-up
                    wall, cpu = (float(v) for v in stdout.split()[-2:])
                    books[name] = stdout.rsplit(" ", 2)[0].strip()
                best[name] = min(best.get(name, (float("inf"), 0.0)), (wall, cpu))
        probe = subprocess.run([str(VENV_BIN / "livetok"), "probe", str(out)], capture_output=True, text=True)
    floor = best["floor"][0]
    labels = {
        "floor": "ffmpeg -threads 0 -i clip.mp4 -f null - (floor)",
        "cli": "livetok tokenize clip.mp4 -o out.ltk",
        "cli, baseline": "  same, baseline tree",
        "startup": "start-up only (imports + codebooks)",
        "startup, no bytecode": "  same, without bytecode (every import compiled)",
        "in-process": "tokenize_files in-process (no start-up)",
        "in-process, baseline": "  same, baseline tree",
    }
    for name in best:
        if "@" in name:
            labels[name] = f"  {name} (--token-fps)"
    rows = [[labels[k], best[k][0], best[k][1], best[k][0] / floor] for k in labels if k in best]
    print(f"\nwall seconds, best of {args.repeat}, interleaved (target: CLI minus start-up <= 3 x floor)")
    print(table(["command", "wall s", "CPU s", "x floor"], rows))
    work = best["cli"][0] - best["startup"][0]
    print(f"CLI minus start-up: {work:.2f} s = {work / floor:.2f} x floor -> "
          f"{'pass' if work <= 3 * floor else 'miss'}; in-process: {best['in-process'][0] / floor:.2f} x floor")
    print(f"CLI / floor = {best['cli'][0] / floor:.2f}; real-time factor of the CLI: "
          f"{args.seconds / best['cli'][0]:.1f}x; load average at the end: {os.getloadavg()}")
    for name, line in books.items():
        if line:
            print(f"{name}: video frames {line}")
    if probe.returncode == 0:
        print("\nlivetok probe out.ltk:\n" + probe.stdout.strip())
    print(cont.report())


if __name__ == "__main__":
    main()
