"""The built-in tokenizers before and after a change, in one interleaved run (issue 15 §5).

    git worktree add /tmp/before 7ce72ab && (cd /tmp/before && bash scripts/setup.sh)
    .venv/bin/python bench/bench_before_after.py --before /tmp/before [--rounds 5]

Each round runs, for the ``--before`` checkout and this one in turn (which goes first alternates
round by round, so load from other processes hits both alike), each with its own ``.venv``:

* **audio**: the built-in ``AudioStream`` (log-mel, fine and coarse RVQ) on 20 s of 16 kHz noise
  pushed in 20 ms chunks, then flushed: CPU ms (``time.process_time``) per second of audio, best of 3,
  one torch thread;
* **video**: ``VideoTokenizer.encode`` of batches of 8 frames at 224 x 224 (fine + coarse codes):
  frames/s, best of 15 batches, one torch thread;
* **tokenize**: ``livetok tokenize clip.mp4 -o out.ltk`` on a fixed 10 s 640 x 480 30 fps H.264 +
  AAC clip made here: wall seconds and CPU seconds (user + sys) of the process, start-up included.

The token files of both checkouts are then compared packet for packet (seq, times, flags, codes).
Best and median over the rounds; the ratio after / before of the bests (above 1 for audio CPU
and tokenize times is slower; below 1 for video frames/s is slower).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, print_header, table

from livetok.wire import TokenPacket, read_ltk

AUDIO = """
import time, numpy as np, torch
from livetok.tokenizers import TokenizerConfig, Tokenizers
torch.set_num_threads(1)
toks = Tokenizers.from_config(TokenizerConfig(device="cpu"))
x = np.random.default_rng(0).standard_normal(16000 * 20) * 0.1
best = 1e9
for _ in range(4):
    st = toks.audio.stream("mic")
    t = time.process_time()
    for i in range(0, x.size, 320):
        st.push_samples(x[i : i + 320])
    st.flush()
    best = min(best, time.process_time() - t)
print(best * 1000 / 20)
"""

VIDEO = """
import time, numpy as np, torch
from livetok.tokenizers import TokenizerConfig, Tokenizers
torch.set_num_threads(1)
toks = Tokenizers.from_config(TokenizerConfig(device="cpu"))
imgs = np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
toks.video.encode(imgs)
best = 1e9
for _ in range(15):
    t = time.perf_counter()
    toks.video.encode(imgs)
    best = min(best, time.perf_counter() - t)
print(8 / best)
"""


def python_of(tree: Path) -> str:
    return str(tree / ".venv" / "bin" / "python")


def measure(tree: Path, code: str) -> float:
    out = subprocess.run([python_of(tree), "-c", code], cwd=tree, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def tokenize(tree: Path, clip: Path, out: Path) -> tuple[float, float]:
    """(wall s, CPU s) of ``livetok tokenize`` as a user runs it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([str(tree / ".venv" / "bin" / "livetok"), "tokenize", str(clip), "-o", str(out)],
                   cwd=tree, capture_output=True, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def same_tokens(a: Path, b: Path) -> str:
    def key(path: Path) -> list[tuple[object, ...]]:
        return [(p.source, p.modality, p.stream_name, p.seq, p.start_ns, p.end_ns, int(p.flags), p.codes.tobytes())
                for p in read_ltk(path).packets if isinstance(p, TokenPacket)]

    ka, kb = key(a), key(b)
    return f"{len(ka)} packets, identical" if ka == kb else f"DIFFER: {len(ka)} vs {len(kb)} packets"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="a checkout with its own .venv (scripts/setup.sh)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    trees = {"before": args.before.resolve(), "after": REPO}
    for name, tree in trees.items():
        commit = subprocess.run(["git", "-C", str(tree), "log", "--oneline", "-1"], capture_output=True, text=True)
        print(f"{name}: {tree} at {commit.stdout.strip()}")
    cont = print_header("bench_before_after: built-in tokenizers, before and after, interleaved")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=640x480:rate=30:duration=10", "-f", "lavfi", "-i",
                        "sine=frequency=440:duration=10", "-c:v", "libx264", "-preset", "veryfast",
                        "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(clip)], check=True)
        got: dict[str, dict[str, list[float]]] = {n: {"audio": [], "video": [], "wall": [], "cpu": []} for n in trees}
        for r in range(args.rounds):
            for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
                tree = trees[name]
                got[name]["audio"].append(measure(tree, AUDIO))
                got[name]["video"].append(measure(tree, VIDEO))
                wall, cpu = tokenize(tree, clip, Path(tmp) / f"{name}.ltk")
                got[name]["wall"].append(wall)
                got[name]["cpu"].append(cpu)
            print(f"round {r + 1}/{args.rounds} done; {cont.report()}", flush=True)
        tokens = same_tokens(Path(tmp) / "before.ltk", Path(tmp) / "after.ltk")
    rows = []
    for what, unit, better in (("audio", "CPU ms per s of audio", min), ("video", "frames/s (batch 8)", max),
                               ("wall", "tokenize wall s", min), ("cpu", "tokenize CPU s", min)):
        b, a = better(got["before"][what]), better(got["after"][what])
        rows.append([unit, b, statistics.median(got["before"][what]), a, statistics.median(got["after"][what]),
                     a / b])
    print(table(["measure", "before best", "before median", "after best", "after median", "after / before"], rows))
    print(f"tokens of the clip, before and after: {tokens}")
    print(cont.report())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
