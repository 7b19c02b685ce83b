"""Listing capture devices: V4L2 cameras (from /dev and sysfs) and PortAudio input devices.

Works on a machine with neither: no /dev/video*, no sysfs class, no PortAudio library, no sound
server — each part is simply empty (with the reason kept in ``DeviceList.notes``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DEV = Path("/dev")
SYSFS_V4L = Path("/sys/class/video4linux")


@dataclass(frozen=True)
class Camera:
    """One V4L2 device node (a camera often has several: capture and metadata)."""

    path: str  # /dev/videoN, the URL for AvSource
    name: str  # from sysfs (the driver's card name); "" when unknown
    index: int  # N


@dataclass(frozen=True)
class Microphone:
    """One PortAudio device with input channels."""

    index: int  # PortAudio device index (MicOptions.device)
    name: str
    channels: int  # maximum input channels (count)
    default_rate: int  # Hz
    host_api: str  # ALSA, JACK, ...


@dataclass(frozen=True)
class DeviceList:
    cameras: list[Camera] = field(default_factory=list)
    microphones: list[Microphone] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why a part may be empty


def list_cameras(dev: Path = DEV, sysfs: Path = SYSFS_V4L) -> list[Camera]:
    """V4L2 device nodes ``/dev/videoN``, with their sysfs names, in index order."""
    out: list[Camera] = []
    try:
        nodes = list(dev.glob("video*"))
    except OSError:
        return out
    for node in nodes:
        m = re.fullmatch(r"video(\d+)", node.name)
        if m is None:
            continue
        try:
            name = (sysfs / node.name / "name").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            name = ""
        out.append(Camera(path=str(node), name=name, index=int(m.group(1))))
    return sorted(out, key=lambda c: c.index)


def list_microphones() -> tuple[list[Microphone], str]:
    """PortAudio input devices, and a note when PortAudio is not usable."""
    try:
        import sounddevice as sd  # raises OSError when the PortAudio library is not installed
    except OSError as err:
        return [], f"PortAudio is not available ({err})"
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
    except sd.PortAudioError as err:
        return [], f"PortAudio cannot list devices ({err})"
    out: list[Microphone] = []
    for info in devices:
        if info["max_input_channels"] < 1:
            continue
        api = apis[info["hostapi"]]["name"] if 0 <= info["hostapi"] < len(apis) else "?"
        out.append(Microphone(index=int(info["index"]), name=str(info["name"]),
                              channels=int(info["max_input_channels"]),
                              default_rate=int(info["default_samplerate"]), host_api=str(api)))
    return out, ""


def list_devices() -> DeviceList:
    """Every camera and microphone this machine offers (either list may be empty)."""
    notes: list[str] = []
    cameras = list_cameras()
    mics, note = list_microphones()
    if note:
        notes.append(note)
    return DeviceList(cameras=cameras, microphones=mics, notes=notes)


def format_devices(devices: DeviceList) -> str:
    """A readable table of both kinds; "none" where there are none."""
    lines = ["cameras (V4L2):"]
    if devices.cameras:
        w = max(len(c.path) for c in devices.cameras)
        lines += [f"  {c.path:<{w}}  {c.name or '(no name)'}" for c in devices.cameras]
    else:
        lines.append("  none")
    lines.append("microphones (PortAudio):")
    if devices.microphones:
        w = max(len(m.name) for m in devices.microphones)
        lines.append(f"  {'#':>3}  {'name':<{w}}  {'ch':>3}  {'rate':>6}  host API")
        lines += [f"  {m.index:>3}  {m.name:<{w}}  {m.channels:>3}  {m.default_rate:>6}  {m.host_api}"
                  for m in devices.microphones]
    else:
        lines.append("  none")
    lines += [f"note: {n}" for n in devices.notes]
    return "\n".join(lines)
