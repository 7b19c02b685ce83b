"""config.yaml: validation with key paths and line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from livetok.config import load_config
from livetok.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_shipped_config_is_valid_and_equals_defaults() -> None:
    assert load_config(ROOT / "config.yaml") == load_config(None)


def test_unknown_key_names_key_and_line(tmp_path: Path) -> None:
    p = write(tmp_path, "tokenizer:\n  audio:\n    sample_rate: 16000\n    n_melz: 80\n")
    with pytest.raises(ConfigError, match=r"config.yaml:4: tokenizer\.audio\.n_melz: unknown key"):
        load_config(p)


def test_out_of_bounds_value(tmp_path: Path) -> None:
    p = write(tmp_path, "tokenizer:\n  video:\n    size: 20\n")
    with pytest.raises(ConfigError, match=r":3: tokenizer\.video\.size: .*greater than or equal to 32"):
        load_config(p)


def test_cross_field_rule(tmp_path: Path) -> None:
    p = write(tmp_path, "tokenizer:\n  video:\n    size: 200\n")
    with pytest.raises(ConfigError, match="multiple of fine_patch"):
        load_config(p)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config.yaml:[23]: not valid YAML"):
        load_config(write(tmp_path, "tokenizer:\n  audio: [1, 2\n"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_sources_and_groups(tmp_path: Path) -> None:
    p = write(tmp_path, "sources:\n  - kind: synthetic\n    name: syn\n  - kind: stream\n    name: cam\n"
                        "    url: udp://127.0.0.1:5000\n    read_timeout_s: 0\n")
    with pytest.raises(ConfigError, match=r"config.yaml:7: sources\.1\.read_timeout_s: .*greater than 0"):
        load_config(p)
    p = write(tmp_path, "sources:\n  - kind: webcam\n    name: x\n")
    with pytest.raises(ConfigError, match=r"config.yaml:2: sources\.0: .*'webcam'"):
        load_config(p)
    p = write(tmp_path, "sources:\n  - {kind: mic, name: m}\n  - {kind: mic, name: m}\n")
    with pytest.raises(ConfigError, match="unique: m"):
        load_config(p)
    p = write(tmp_path, "sources:\n  - {kind: mic, name: m}\ngroups:\n  - {name: g, video: m}\n")
    with pytest.raises(ConfigError, match="video source 'm' is not a defined camera"):
        load_config(p)


def test_default_groups_pair_cameras_with_microphones(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "sources:\n  - {kind: synthetic, name: a}\n  - {kind: mic, name: m}\n"
                                      "  - {kind: lavfi, name: b, graph: testsrc2}\n  - {kind: mic, name: n}\n"
                                      "  - {kind: mic, name: o}\n"))
    groups = [(g.name, g.video, g.audio) for g in cfg.effective_groups()]
    assert groups == [("a", "a", "m"), ("b", "b", "n"), ("o", None, "o")]


@pytest.mark.parametrize("key", ["sources.0.token_fps", "mqtt.stats_interval_s"])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_a_number_that_is_not_finite_is_named_so(tmp_path: Path, key: str, value: str) -> None:
    """YAML's ``.nan`` and ``.inf`` are floats: refused as "a finite number", not as out of a bound
    they do not break (``.nan`` was "less than or equal to 1000")."""
    if key.startswith("sources"):
        text, line = f"sources:\n  - kind: synthetic\n    name: s\n    token_fps: {value}\n", 4
    else:
        text, line = f"mqtt:\n  host: 127.0.0.1\n  stats_interval_s: {value}\n", 3
    where = key.replace(".", "[.]")
    with pytest.raises(ConfigError, match=rf"config.yaml:{line}: {where}: Input should be a finite number"):
        load_config(write(tmp_path, text))


def test_token_fps_bounds_and_refusals(tmp_path: Path) -> None:
    """``token_fps`` on any video source: frames/s from 0.01 to 1000; null (default) keeps every frame;
    a microphone has none. Each refusal is one line naming the file's line."""
    cfg = load_config(write(tmp_path, "sources:\n  - kind: stream\n    name: cam\n    url: rtsp://h/x\n"
                                      "    token_fps: 5\n  - {kind: synthetic, name: syn, token_fps: 0.5}\n"
                                      "  - {kind: lavfi, name: all, graph: testsrc2}\n"))
    assert [getattr(s, "token_fps", None) for s in cfg.sources] == [5.0, 0.5, None]
    p = write(tmp_path, "sources:\n  - kind: stream\n    name: cam\n    url: rtsp://h/x\n    token_fps: 0\n")
    with pytest.raises(ConfigError, match=r"config.yaml:5: sources\.0\.token_fps: .*greater than or equal to 0.01"):
        load_config(p)
    p = write(tmp_path, "sources:\n  - {kind: v4l2, name: cam}\n  - {kind: file, name: f, path: /x.mp4,\n"
                        "     token_fps: 5000}\n")
    with pytest.raises(ConfigError, match=r"config.yaml:4: sources\.1\.token_fps: .*less than or equal to 1000"):
        load_config(p)
    p = write(tmp_path, "sources:\n  - kind: mic\n    name: m\n    token_fps: 5\n")
    with pytest.raises(ConfigError, match=r"config.yaml:4: sources\.0\.token_fps: unknown key"):
        load_config(p)
    p = write(tmp_path, "sources:\n  - {kind: synthetic, name: s, token_fps: fast}\n")
    with pytest.raises(ConfigError, match=r"config.yaml:2: sources\.0\.token_fps: .*number"):
        load_config(p)
