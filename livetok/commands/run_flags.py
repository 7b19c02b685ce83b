"""``livetok run``'s ad-hoc flags (``--source``, ``--mic``, ``--sink``, ``--password-file``) composed onto a
configuration. Here, not in :mod:`livetok.config`: ``--sink mqtt://`` is parsed by the bus's URL rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from livetok.config import LivetokConfig
from livetok.errors import ConfigError


def source_from_flag(spec: str, index: int) -> dict[str, Any]:
    """``--source`` value -> a source mapping: a V4L2 device, a file played as live, lavfi, or a URL."""
    name = f"src{index}"
    if spec.startswith("/dev/video"):
        return {"kind": "v4l2", "name": name, "device": spec}
    if spec.startswith("lavfi:"):
        return {"kind": "lavfi", "name": name, "graph": spec.removeprefix("lavfi:")}
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return {"kind": "synthetic", "name": "synthetic" if index == 0 else name}
    if "://" in spec:
        return {"kind": "stream", "name": _name_from_url(spec) or name, "url": spec}
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--source {spec}: not a URL, a /dev/video device or an existing file")
    return {"kind": "file", "name": re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)[:64] or name, "path": str(path)}


def _name_from_url(url: str) -> str:
    host_path = url.split("://", 1)[1].split("?", 1)[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", host_path).strip("_")[:64]


def sink_from_flag(spec: str) -> dict[str, Any]:
    kind, _, rest = spec.partition(":")
    if kind == "file" and rest:
        return {"kind": "file", "path": rest}
    raise ConfigError(f"--sink {spec}: expected file:PATH.ltk or mqtt://[USER@]HOST[:PORT] (mqtts:// for TLS)")


def mqtt_from_flag(spec: str) -> dict[str, Any]:
    """``--sink mqtt://[USER@]HOST[:PORT]`` (or ``mqtts://``) -> the mqtt section's broker keys."""
    from livetok.bus.url import parse_broker_url

    try:
        url = parse_broker_url(spec)
    except ConfigError as err:
        raise ConfigError(f"--sink: {err}") from None
    return {"host": url.host, "port": url.port, "username": url.username, "tls_enabled": url.tls}


def compose(cfg: LivetokConfig, sources: list[str], mics: list[str], sinks: list[str],
            password_file: str | None = None, token_fps: float | None = None) -> LivetokConfig:
    """The configuration with the flags' sources and sinks added (names made unique); an
    ``mqtt://`` sink sets the broker of the bus (the ``mqtt:`` section, or the file's sink of kind
    mqtt); ``password_file`` its password; ``token_fps`` (``--token-fps``) the token rate of every
    ``--source`` (not the file's sources, which set their own)."""
    if token_fps is not None and not sources:
        raise ConfigError("--token-fps applies to the --source flags, and none was given (a source of the "
                          "configuration file sets its own token_fps)")
    if not (sources or mics or sinks or password_file):
        return cfg
    data = cfg.model_dump(mode="python")
    taken = {s["name"] for s in data["sources"]}
    for i, spec in enumerate(sources):
        src = source_from_flag(spec, i)
        if token_fps is not None:
            src["token_fps"] = token_fps
        data["sources"].append(_unique(src, taken))
    for i, dev in enumerate(mics):
        device: int | str | None = int(dev) if dev.isdigit() else (None if dev == "default" else dev)
        data["sources"].append(_unique({"kind": "mic", "name": f"mic{i}", "device": device}, taken))
    buses = [s for s in sinks if s.split("://", 1)[0].lower() in ("mqtt", "mqtts")]
    if len(buses) > 1:
        raise ConfigError("--sink: one MQTT broker per daemon (a clustered broker scales further; docs/bus.md)")
    # The bus's keys where the file has them: a sink of kind mqtt, or the mqtt: section.
    bus = next((s for s in data["sinks"] if s["kind"] == "mqtt"), data["mqtt"])
    data["sinks"] += [sink_from_flag(s) for s in sinks if s not in buses]
    if buses:
        broker = mqtt_from_flag(buses[0])
        bus["tls"]["enabled"] = broker.pop("tls_enabled")
        bus.update(broker)
    if password_file is not None:
        if not bus.get("username"):
            raise ConfigError("--password-file needs a user: --sink mqtt://USER@HOST (or mqtt.username)")
        bus["password_file"] = password_file
        bus["password_credential"] = None
    try:
        out = LivetokConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"command-line flags: {key}: {first['msg']}") from err
    out._path, out._lines = cfg._path, cfg._lines  # the file's keys keep their lines in errors
    return out


def _unique(src: dict[str, Any], taken: set[str]) -> dict[str, Any]:
    base, n = src["name"], 1
    while src["name"] in taken:
        n += 1
        src["name"] = f"{base}-{n}"
    taken.add(src["name"])
    return src
