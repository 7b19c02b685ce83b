"""End-to-end file tokenization vs. the FFmpeg decode floor, on a 720p30 H.264 + AAC clip.

    .venv/bin/python bench/bench_tokenize.py [--seconds 10] [--repeat 3]

Makes the clip in a temporary folder (lavfi testsrc2 + sine, libx264 preset veryfast), then times,
best of ``--repeat`` (wall clock, subprocesses):

* ``ffmpeg -threads 0 -i clip.mp4 -f null -``: decode floor (video + audio decode, no output);
* ``livetok tokenize clip.mp4 -o out.ltk``: the CLI, including interpreter start-up, torch import
  and codebook loading;
* the start-up alone (imports + ``Tokenizers.from_config``), and ``tokenize_files`` in-process
  (what the CLI does after start-up), to show how much of the ratio is fixed cost;
* the CLI again with torch on its default thread count (``torch.set_num_threads`` made a no-op
  before ``livetok.cli.main`` runs): what ``tokenize_files`` did before it left a core to the
  reader thread (torch threads = cores - 1 on CPU), to show what that change is worth.

CPU seconds (user + sys of the child) are shown beside the wall times. Target: CLI wall time
<= 3 x the decode floor. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, print_header, table

VENV_BIN = Path(sys.executable).parent
STARTUP = (
    "from livetok.config import load_config; from livetok.commands.tokenize import tokenize_files; "
    "from livetok.tokenizers import Tokenizers; Tokenizers.from_config(load_config(None).tokenizer)"
)
ALL_CORES_CLI = (
    "import sys, torch; torch.set_num_threads = lambda n: None; "
    "from livetok.cli import main; sys.argv[0] = 'livetok'; sys.exit(main())"
)
IN_PROCESS = """
import sys, time
from pathlib import Path
from livetok.config import load_config
from livetok.commands.tokenize import tokenize_files
from livetok.tokenizers import Tokenizers
toks = Tokenizers.from_config(load_config(None).tokenizer)
best = float("inf")
for i in range({repeat}):
    t = time.perf_counter()
    tokenize_files([Path(sys.argv[1])], toks, Path(sys.argv[2]))
    best = min(best, time.perf_counter() - t)
print(best)
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


def timed(cmd: list[str], repeat: int, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Best wall seconds of ``repeat`` runs, and the child CPU seconds of that run."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best = min(best, (wall, cpu))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cont = print_header("bench_tokenize: livetok tokenize vs ffmpeg decode, 720p30 H.264 + AAC")
    if not shutil.which("ffmpeg"):
        print("ffmpeg not found: skipped")
        return
    livetok = str(VENV_BIN / "livetok") if (VENV_BIN / "livetok").exists() else "livetok"
    with tempfile.TemporaryDirectory() as tmp:
        clip, out = Path(tmp) / "clip.mp4", Path(tmp) / "out.ltk"
        make_clip(clip, args.seconds)
        mb = clip.stat().st_size / 1e6
        print(f"clip: {args.seconds:g} s 1280x720 30 fps libx264 veryfast + AAC 48 kHz, {mb:.1f} MB")
        r = args.repeat
        ffmpeg = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-threads", "0"]
        floor = timed([*ffmpeg, "-i", str(clip), "-f", "null", "-"], r)
        tokenize = [livetok, "tokenize", str(clip), "-o", str(out)]
        cli = timed(tokenize, r)
        all_cores = timed([sys.executable, "-c", ALL_CORES_CLI, *tokenize[1:]], r)
        startup = timed([sys.executable, "-c", STARTUP], r)
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", IN_PROCESS.format(repeat=r), str(clip), str(out)],
                             check=True, capture_output=True, text=True, cwd=REPO)
        in_proc = float(res.stdout.strip().splitlines()[-1])
        wall_all = time.perf_counter() - t
        probe = subprocess.run([livetok, "probe", str(out)], capture_output=True, text=True)
        rows = [
            ["ffmpeg -threads 0 -i clip.mp4 -f null - (floor)", floor[0], floor[1], 1.0],
            ["livetok tokenize clip.mp4 -o out.ltk", cli[0], cli[1], cli[0] / floor[0]],
            ["  same, torch on its default threads (before 86ea8fa)", all_cores[0], all_cores[1],
             all_cores[0] / floor[0]],
            ["  start-up only (imports + codebooks)", startup[0], startup[1], startup[0] / floor[0]],
            ["  tokenize_files in-process (no start-up)", in_proc, float("nan"), in_proc / floor[0]],
        ]
        print(f"\nwall seconds, best of {r} (target: CLI <= 3 x floor)")
        print(table(["command", "wall s", "CPU s", "x floor"], rows))
        print(f"(in-process run: {wall_all:.1f} s for start-up + {r} tokenizations; CPU s not separable)")
        work = cli[0] - startup[0]
        print(f"CLI minus start-up: {work:.2f} s = {work / floor[0]:.2f} x floor")
        verdict = "pass" if cli[0] <= 3 * floor[0] else "miss"
        print(f"CLI / floor = {cli[0] / floor[0]:.2f} -> {verdict}; "
              f"real-time factor of the CLI: {args.seconds / cli[0]:.1f}x")
        if probe.returncode == 0:
            print("\nlivetok probe out.ltk:\n" + probe.stdout.strip())
    print(cont.report())


if __name__ == "__main__":
    main()
