"""Coverage-guided fuzzing of the wire decoder and the .ltk reader with atheris (libFuzzer).

Not part of pytest (tests/test_wire_fuzz.py is the hypothesis fuzzing that always runs).

    .venv/bin/pip install atheris
    mkdir -p /tmp/ltk-corpus
    .venv/bin/python bench/fuzz_wire.py /tmp/ltk-corpus -max_total_time=60

An empty corpus directory given on the command line is first seeded with valid packets.
An input starting with ``F`` is the body of a .ltk file (after its header); any other input
is one packet. Only DecodeError is allowed out of the decoder; a decoded packet must survive
encode/decode unchanged. Anything else is a crash, and libFuzzer saves the input.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris
import numpy as np

with atheris.instrument_imports():
    from livetok.errors import DecodeError
    from livetok.wire import (
        FILE_HEADER,
        AlignedStep,
        Clock,
        Flag,
        LtkWriter,
        Modality,
        Scale,
        StepFlag,
        TokenPacket,
        decode_packet,
        encode_packet,
        read_ltk,
    )

_FILE = os.path.join(tempfile.mkdtemp(prefix="fuzz-ltk-"), "input.ltk")


def seed_packets() -> list[TokenPacket | AlignedStep]:
    """A few valid packets of each shape, to start the fuzzer deep in the decoder."""
    audio = TokenPacket(
        "mic0", Modality.AUDIO, Scale.FINE, 1, 0, 20_000_000, Clock.UNIX, "0123456789abcdef",
        Flag.KEYFRAME, (1, 1), np.arange(8, dtype=np.uint16).reshape(1, 8),
    )  # fmt: skip
    video = TokenPacket(
        "cam0", Modality.VIDEO, Scale.COARSE, 2, 0, 33_000_000, Clock.UNIX, "fedcba9876543210",
        Flag.DELTA, (7, 7), np.arange(6, dtype=np.uint16).reshape(3, 2),
        positions=np.array([0, 9, 48], dtype=np.uint16),
        vectors=np.linspace(-1, 1, 12).astype(np.float16).reshape(3, 4),
    )  # fmt: skip
    step = AlignedStep("room", 3, 0, 33_000_000, Clock.UNIX, -5, StepFlag.LATE, (audio, video))
    return [audio, video, step]


def seed_corpus(directory: str) -> None:
    items = seed_packets()
    for i, item in enumerate(items):
        with open(os.path.join(directory, f"packet{i}"), "wb") as f:
            f.write(encode_packet(item))
    with LtkWriter(_FILE) as writer:
        for item in items:
            writer.write(item)
    with open(_FILE, "rb") as src, open(os.path.join(directory, "file0"), "wb") as f:
        f.write(b"F" + src.read()[len(FILE_HEADER) :])


def test_one_input(data: bytes) -> None:
    if data[:1] == b"F":
        with open(_FILE, "wb") as f:
            f.write(FILE_HEADER + data[1:])
        result = read_ltk(_FILE)
        for item in result.packets:
            assert decode_packet(encode_packet(item)) == item
        return
    try:
        packet = decode_packet(data)
    except DecodeError:
        return
    assert decode_packet(encode_packet(packet)) == packet


def main() -> None:
    for arg in sys.argv[1:]:
        if not arg.startswith("-") and os.path.isdir(arg) and not os.listdir(arg):
            seed_corpus(arg)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
