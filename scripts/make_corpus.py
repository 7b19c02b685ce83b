"""Build the redistributable training corpus for the default codebooks into a folder.

* images: scikit-image's bundled photographs (public domain / CC0, see skimage/data/README.txt);
  ``coffee.png`` is held out for the quality figures and never used for fitting.
* speech: espeak-ng reading our own sentences in several voices, speeds and pitches.
* music: chords, arpeggios and plucked strings synthesized with sox, plus quiet pink noise.

Usage: python scripts/make_corpus.py OUT_DIR
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import skimage

PHOTOS = ["astronaut.png", "brick.png", "camera.png", "chelsea.png", "coins.png", "grass.png",
          "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
          "motorcycle_right.png", "retina.jpg", "rocket.jpg"]
HELD_OUT = "coffee.png"

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
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    images(out)
    speech(out)
    music(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
