"""``livetok devices``: the V4L2 cameras and PortAudio inputs this machine has."""

from __future__ import annotations

import argparse

from livetok.streams.devices import format_devices, list_devices


def command(args: argparse.Namespace) -> int:
    print(format_devices(list_devices()))
    return 0
