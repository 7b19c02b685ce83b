"""Picture per bit on photographs the codebooks never saw: `livetok eval` per image, for several
codebook sets in one run, next to WebP and JPEG at each scale's bit budget.

    .venv/bin/python bench/bench_picture.py [--codebooks LABEL=FILE|ID|default ...] [--mate DIR]
                                            [--json OUT.json]

Inputs (never fitted on by any packaged codebooks; scripts/make_corpus.py refuses them):

* ``mate-backgrounds`` (Debian), fetched with ``apt-get download`` into a temporary folder unless
  ``--mate DIR`` gives its extracted tree: its 12 photographs (``nature/``) are the "12 held-out
  photographs" of issue 16; its other pictures (``abstract/``, ``desktop/``: digital art) are
  reported separately.
* scikit-image's ``coffee.png`` (held out of every fit).

Each (image, codebooks) pair is one ``livetok eval --json`` process (the command a user runs) with
a configuration whose ``tokenizer.codebooks`` names the set (a file, a packaged id, or ``default``),
and ``@beam=F/C`` the encoder's beams (``tokenizer.video.{fine,coarse}.beam``); by default v1
``c0ff5bee45950755`` and v2 greedy (as they shipped), v2 with the default encoder, and v2 with
beams 2/2 and 8/8 (``DEFAULT_SETS``);
the reference codecs are taken from the first set's run (they do not depend on the codebooks).
Per image: fine PSNR (16 px, 4 levels, 7840 bits) per set, WebP and JPEG at <= the fine budget;
coarse PSNR (32 px, 2 levels, 980 bits) per set, JPEG and WebP at <= the coarse budget.
quality.py defines the budgets and what the codecs' bytes count.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import skimage
from _common import REPO, machine_line

from livetok.tokenizers.codebooks import load_codebooks, make_set, save_codebooks

PICTURE_SUFFIXES = {".jpg", ".jpeg", ".png"}
RENDITION = re.compile(r"_\d+x\d+$")  # Elephants_3840x2160.jpg: Elephants.jpg at another size


def mate_pictures(root: Path) -> dict[str, list[Path]]:
    """``{"photographs": [...], "art": [...]}`` from an extracted mate-backgrounds tree; of a
    picture at several resolutions (``Elephants_3840x2160.jpg``) only the plain name is kept."""
    base = root / "usr/share/backgrounds/mate"
    pics = sorted(p for p in base.rglob("*")
                  if p.suffix.lower() in PICTURE_SUFFIXES and p.is_file() and not RENDITION.search(p.stem))
    return {"photographs": [p for p in pics if p.parent.name == "nature"],
            "art": [p for p in pics if p.parent.name != "nature"]}


def fetch_mate(tmp: Path) -> Path:
    subprocess.run(["apt-get", "download", "mate-backgrounds"], cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deb = next(tmp.glob("mate-backgrounds_*.deb"))
    root = tmp / "mate"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def run_eval(image: Path, config: Path, compare: bool) -> dict[str, Any]:
    cmd = ["nice", "-n", "19", str(REPO / ".venv/bin/livetok"), "eval", str(image), "--json", "-c", str(config)]
    if not compare:
        cmd.append("--no-compare")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out)["video"])


def config_for(tmp: Path, label: str, spec: str) -> Path:
    """A configuration naming ``codebooks``: a file, a packaged id, ``default``, or
    ``default-no-deblock`` (the default's arrays without its decoder metadata, written to ``tmp``);
    ``@beam=F/C`` after it sets the encoder's ``tokenizer.video.fine.beam`` and ``coarse.beam``
    (without it: the configuration's defaults)."""
    path = tmp / f"{label}.yaml"
    codebooks, _, beam = spec.partition("@beam=")
    video = ""
    if beam:
        fine, coarse = (int(b) for b in beam.split("/"))
        video = f"  video:\n    fine: {{beam: {fine}}}\n    coarse: {{beam: {coarse}}}\n"
    if codebooks == "default-no-deblock":
        cbs = load_codebooks(None)
        codebooks = str(tmp / "default-no-deblock.safetensors")
        save_codebooks(make_set(cbs.frontend, cbs.scales), Path(codebooks))
    value = "null" if codebooks == "default" else json.dumps(codebooks)
    path.write_text(f"tokenizer:\n  codebooks: {value}\n{video}")
    return path


# v1 and v2 as they shipped (greedy encoder), v2 with today's default encoder (coarse beam 4), and
# beams of 2 and 8 on both scales, for the cost/benefit of docs/performance.md, section 12.
DEFAULT_SETS = ["v1=c0ff5bee45950755@beam=1/1", "v2-greedy=default@beam=1/1", "v2=default",
                "v2-beam2=default@beam=2/2", "v2-beam8=default@beam=8/8"]
FLAT_DB = 99.0  # a codec that reconstructs the picture exactly at 980 bits: one flat colour


def measure(images: list[Path], sets: dict[str, Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Per image, every figure; and the images left out because the tokenizer sees one flat
    colour (the centre square of a wallpaper with a transparent or plain middle): their PSNR is
    the 148 dB cap for the codecs and says nothing."""
    rows, flat = [], []
    for image in images:
        row: dict[str, Any] = {"image": image.stem}
        for i, (label, config) in enumerate(sets.items()):
            report = run_eval(image, config, compare=i == 0)
            if i == 0 and min(e["psnr_db"] for e in report["reference_coarse"].values()) > FLAT_DB:
                flat.append(image.stem)
                break
            if i == 0:
                for key, scale in (("reference", "fine"), ("reference_coarse", "coarse")):
                    for codec, e in report[key].items():
                        row[f"{codec}@{scale}"] = e["psnr_db"]
                        row[f"{codec}@{scale}_bpp"] = e["bits_per_pixel"]
            for scale in ("fine", "coarse"):
                row[f"{label}.{scale}"] = report[scale]["psnr_db"][-1]
                row[f"{scale}_bpp"] = report[scale]["bits_per_pixel"]
        else:
            rows.append(row)
            print(f"  {image.stem}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()
                                                 if isinstance(v, float) and not k.endswith("bpp")),
                  file=sys.stderr, flush=True)
    return rows, flat


def print_group(title: str, rows: list[dict[str, Any]], flat: list[str], labels: list[str]) -> None:
    fine = [f"{lb}.fine" for lb in labels]
    coarse = [f"{lb}.coarse" for lb in labels]
    cols = [*fine, "webp@fine", "jpeg@fine", *coarse, "jpeg@coarse", "webp@coarse"]
    print(f"\n{title}\n")
    print("| image | " + " | ".join(f"{c} dB" for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for r in rows:
        print(f"| {r['image']} | " + " | ".join(f"{r[c]:.2f}" for c in cols) + " |")
    means = {c: sum(r[c] for r in rows) / len(rows) for c in cols}
    print("| **mean** | " + " | ".join(f"**{means[c]:.2f}**" for c in cols) + " |")
    bpp = {k: sum(r[k] for r in rows) / len(rows) for k in ("fine_bpp", "webp@fine_bpp", "jpeg@fine_bpp",
                                                             "coarse_bpp", "jpeg@coarse_bpp", "webp@coarse_bpp")}
    print("\nmean bits/pixel: " + ", ".join(f"{k.removesuffix('_bpp')} {v:.4f}" for k, v in bpp.items()))
    if flat:
        print(f"left out, one flat colour as the tokenizer sees them: {', '.join(flat)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codebooks", action="append", metavar="LABEL=FILE|ID|default|default-no-deblock[@beam=F/C]",
                    help="a codebook set and encoder to measure (repeat); default: " + ", ".join(DEFAULT_SETS))
    ap.add_argument("--mate", type=Path, help="an extracted mate-backgrounds package (default: apt-get download it)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args()
    specs = args.codebooks or DEFAULT_SETS
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sets = {label: config_for(tmp, label, value) for label, value in (s.split("=", 1) for s in specs)}
        mate = mate_pictures(args.mate or fetch_mate(tmp))
        coffee = Path(skimage.__file__).parent / "data" / "coffee.png"
        groups = {"mate-backgrounds photographs (nature/): the 12 held-out photographs": mate["photographs"],
                  "mate-backgrounds art (abstract/, desktop/)": mate["art"],
                  "scikit-image coffee.png": [coffee]}
        results, flats = {}, {}
        for title, images in groups.items():
            print(f"{title}: {len(images)} images", file=sys.stderr)
            results[title], flats[title] = measure(images, sets)
    for title, rows in results.items():
        print_group(title, rows, flats[title], list(sets))
    if args.json:
        args.json.write_text(json.dumps({"codebooks": specs, "groups": results, "flat": flats}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
