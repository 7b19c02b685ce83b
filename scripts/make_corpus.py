"""Build the redistributable training corpus for the default codebooks into a folder.

* images: scikit-image's bundled photographs (public domain / CC0, see skimage/data/README.txt);
  ``coffee.png`` is held out for the quality figures and never used for fitting.
* wallpapers and artwork from Debian packages (:data:`DEBIAN_PACKAGES`, each under its own free
  licence, see its ``usr/share/doc/*/copyright``), fetched with ``apt-get download`` into a
  temporary folder (not installed): photographs (landscapes, plants, animals, cities) and digital
  art. ``mate-backgrounds`` is never used: it is the held-out check of docs/performance.md.
* synthetic scenes: a few frames of FFmpeg's ``testsrc2`` and ``mandelbrot`` sources.
* speech: espeak-ng reading our own sentences in several voices, speeds and pitches.
* music: chords, arpeggios and plucked strings synthesized with sox, plus quiet pink noise.

Usage: python scripts/make_corpus.py OUT_DIR [--video-only]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import skimage

PHOTOS = ["astronaut.png", "brick.png", "camera.png", "chelsea.png", "coins.png", "grass.png",
          "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
          "motorcycle_right.png", "retina.jpg", "rocket.jpg"]
HELD_OUT = "coffee.png"

# Debian (bookworm) packages of wallpapers and artwork; the held-out package is refused.
DEBIAN_PACKAGES = ["desktop-base", "gnome-backgrounds", "lomiri-wallpapers", "lomiri-wallpapers-16.04",
                   "lomiri-wallpapers-20.04", "plasma-workspace-wallpapers", "sway-backgrounds", "ukui-wallpapers"]
HELD_OUT_PACKAGE = "mate-backgrounds"
IMAGE_DIRS = ("usr/share/backgrounds", "usr/share/wallpapers", "usr/share/desktop-base", "usr/share/plymouth")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
MIN_BYTES = 100_000  # smaller files are icons, logos and previews
SKIP_NAMES = ("screenshot", "preview")
SIZE_TAG = re.compile(r"\d+x\d+|_portrait", re.IGNORECASE)  # one picture at several resolutions

SENTENCES = [
    "The quick brown fox jumps over the lazy dog while the camera keeps rolling.",
    "Streaming tokens must match the offline result exactly, for any chunking of the input.",
    "Please move the robot arm to the left, then pick up the red cube on the table.",
    "Good morning. The weather today is cloudy with a chance of rain in the afternoon.",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
    "Attention please: the next train to the city centre departs from platform four.",
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood?",
    "Turn on the kitchen lights and set the thermostat to twenty one degrees.",
    "Microphones and cameras share one clock, so every frame knows its sound.",
]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-us+f3", "en-gb+f4", "en-us+m3", "fr", "de", "es", "it"]

NOTES = ["C3", "E3", "G3", "A3", "C4", "D4", "E4", "G4", "A4", "C5", "E5"]


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def images(out: Path) -> None:
    data = Path(skimage.__file__).parent / "data"
    (out / "images").mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        shutil.copy(data / name, out / "images" / name)


def wallpapers(out: Path) -> None:
    """The largest rendition of every picture in :data:`DEBIAN_PACKAGES`, as ``wallpapers/PKG--NAME``."""
    if HELD_OUT_PACKAGE in DEBIAN_PACKAGES:
        raise SystemExit(f"{HELD_OUT_PACKAGE} is the held-out check and must not be fitted on")
    dest = out / "wallpapers"
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        debs = Path(tmp)
        try:
            subprocess.run(["apt-get", "download", *DEBIAN_PACKAGES], cwd=debs, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except subprocess.CalledProcessError as err:
            raise SystemExit(f"apt-get download failed (run apt-get update first?): {err.stderr.strip()}") from err
        for deb in sorted(debs.glob("*.deb")):
            package = deb.name.split("_")[0]
            root = debs / package
            run(["dpkg-deb", "-x", str(deb), str(root)])
            for path in pick_pictures(root):
                rel = path.relative_to(root).as_posix().replace("/", "-")
                shutil.copy(path, dest / f"{package}--{rel}")


def pick_pictures(root: Path) -> list[Path]:
    """Raster pictures of at least MIN_BYTES under IMAGE_DIRS, the largest file of each group of
    renditions (the same path once resolutions like ``5120x2880`` are taken out)."""
    groups: dict[str, Path] = {}
    for sub in IMAGE_DIRS:
        for path in sorted((root / sub).rglob("*")):
            name = path.name.lower()
            if path.suffix.lower() not in IMAGE_SUFFIXES or any(k in name for k in SKIP_NAMES):
                continue
            if not path.is_file() or path.is_symlink() or path.stat().st_size < MIN_BYTES:
                continue
            key = SIZE_TAG.sub("", path.relative_to(root).as_posix())
            if key not in groups or path.stat().st_size > groups[key].stat().st_size:
                groups[key] = path
    return sorted(groups.values())


def synthetic(out: Path) -> None:
    d = out / "synthetic"
    d.mkdir(parents=True, exist_ok=True)
    sources = {"testsrc2": "testsrc2=size=640x480:rate=1", "mandelbrot": "mandelbrot=size=640x480:rate=4"}
    for name, source in sources.items():
        run(["ffmpeg", "-nostdin", "-f", "lavfi", "-i", source, "-frames:v", "4", str(d / f"{name}-%d.png")])


def speech(out: Path) -> None:
    d = out / "speech"
    d.mkdir(parents=True, exist_ok=True)
    for i, voice in enumerate(VOICES):
        for j, sentence in enumerate(SENTENCES):
            speed, pitch = 140 + 15 * ((i + j) % 5), 30 + 10 * ((i * 3 + j) % 5)
            wav = str(d / f"{voice}-{j}.wav")
            run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", wav, sentence])


def music(out: Path) -> None:
    d = out / "music"
    d.mkdir(parents=True, exist_ok=True)
    kinds = ["pluck", "sine", "triangle", "sawtooth", "square"]
    for i in range(20):
        kind = kinds[i % len(kinds)]
        chord = [NOTES[(i + k) % len(NOTES)] for k in (0, 2, 4)]
        synth = ["synth", "0.6"] + [x for n in chord for x in (kind, n)]
        arp = ["synth", "0.15", kind, NOTES[(i * 3) % len(NOTES)]]
        f = d / f"chord-{i}.wav"
        run(["sox", "-n", "-r", "16000", "-c", "1", str(f), *synth, "fade", "0.01", "0.6", "0.2",
             "repeat", "5", "gain", "-12"])
        g = d / f"arp-{i}.wav"
        run(["sox", "-n", "-r", "16000", "-c", "1", str(g), *arp, "fade", "0.005", "0.15", "0.05",
             "repeat", "20", "gain", "-15", "reverb", "30"])
    run(["sox", "-n", "-r", "16000", "-c", "1", str(d / "pink.wav"), "synth", "20", "pinknoise", "gain", "-35"])


def main() -> int:
    args = sys.argv[1:]
    video_only = "--video-only" in args
    args = [a for a in args if a != "--video-only"]
    if len(args) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out = Path(args[0])
    images(out)
    wallpapers(out)
    synthetic(out)
    if not video_only:
        speech(out)
        music(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
