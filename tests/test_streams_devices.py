"""Listing cameras and microphones: on this machine, from fake /dev + sysfs trees, and through PulseAudio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streamgen import PulseAudio, pulse

from livetok.streams.devices import (
    DEV,
    Camera,
    DeviceList,
    Microphone,
    format_devices,
    list_cameras,
    list_devices,
)

__all__ = ["pulse"]  # the fixture, imported from streamgen


def test_this_machine_lists_and_says_none_where_there_are_none() -> None:
    devices = list_devices()
    text = format_devices(devices)
    assert text.startswith("cameras (V4L2):")
    if not list(DEV.glob("video*")):
        assert devices.cameras == [] and "cameras (V4L2):\n  none" in text
    if not devices.microphones:
        assert "microphones (PortAudio):\n  none" in text
    for c in devices.cameras:
        assert c.path in text


def test_cameras_from_dev_and_sysfs(tmp_path: Path) -> None:
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    dev.mkdir()
    for name in ("video10", "video2", "video0", "videox", "vbi0"):
        (dev / name).touch()
    for name, card in (("video0", "HD Webcam C270\n"), ("video2", "Integrated Camera")):
        (sysfs / name).mkdir(parents=True)
        (sysfs / name / "name").write_text(card)
    cams = list_cameras(dev, sysfs)
    assert cams == [Camera(str(dev / "video0"), "HD Webcam C270", 0),
                    Camera(str(dev / "video2"), "Integrated Camera", 2),
                    Camera(str(dev / "video10"), "", 10)]
    assert list_cameras(tmp_path / "absent", sysfs) == []


def test_format_table() -> None:
    text = format_devices(DeviceList(cameras=[Camera("/dev/video0", "HD Webcam C270", 0)],
                                     microphones=[Microphone(3, "USB Audio", 2, 48000, "ALSA")],
                                     notes=["hello"]))
    lines = text.splitlines()
    assert lines[1] == "  /dev/video0  HD Webcam C270"
    assert lines[2] == "microphones (PortAudio):"
    assert lines[4].split() == ["3", "USB", "Audio", "2", "48000", "ALSA"]
    assert lines[-1] == "note: hello"


def test_pulseaudio_input_is_listed(pulse: PulseAudio) -> None:
    code = "from livetok.streams.devices import list_devices, format_devices; print(format_devices(list_devices()))"
    out = subprocess.run([sys.executable, "-c", code], env=pulse.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    mics = out.stdout.split("microphones (PortAudio):\n", 1)[1]
    assert "pulse" in mics and "ALSA" in mics and "none" not in mics.splitlines()[0]
