"""The MQTT sink's settings made concrete: the connection (password, TLS, client id), the outbound
buffer's bounds, the sources' retained meta, the size of a PUBLISH packet. Also what ``check-config``
and ``doctor`` check of the bus before anything connects."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from livetok.bus.connect import ConnectOptions, Protocol
from livetok.bus.meta import SourceMeta, StreamDescription
from livetok.bus.secret import Secret, read_secret_file
from livetok.bus.tls import TlsOptions, make_ssl_context
from livetok.bus.url import BrokerUrl
from livetok.config import LivetokConfig, Mqtt
from livetok.errors import ConfigError
from livetok.vocab import Vocabulary
from livetok.wire import Modality, Scale

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


def default_client_id(instance: str) -> str:
    """``livetok-{instance}`` (the instance defaults to the host name): two daemons on one broker need
    different instances anyway, and then get different client ids (one id twice would make the broker
    throw each one out in turn)."""
    return f"livetok-{instance}"[:128]


def default_instance() -> str:
    name = "".join(c if c.isalnum() or c in "_.-" else "-" for c in socket.gethostname())
    return (name or "livetok")[:64]


def load_password(cfg: Mqtt, section: str = "mqtt") -> Secret | None:
    """The password from ``password_file`` or the systemd credential; ConfigError naming the key
    (under ``section``: ``mqtt``, or ``sinks.N`` for the bus spelled as a sink)."""
    if cfg.password_file is not None:
        return read_secret_file(cfg.password_file, f"{section}.password_file")
    if cfg.password_credential is not None:
        directory = os.environ.get(CREDENTIALS_ENV)
        if not directory:
            raise ConfigError(f"{section}.password_credential {cfg.password_credential}: ${CREDENTIALS_ENV} is not "
                              f"set (run under systemd with LoadCredential=, or use {section}.password_file)")
        return read_secret_file(Path(directory) / cfg.password_credential, f"{section}.password_credential")
    return None


def connect_options(cfg: Mqtt, password: Secret | None, instance: str) -> ConnectOptions:
    """The connection the configuration describes (checked: TLS files load, the password is there)."""
    assert cfg.host is not None
    scheme = "mqtts" if cfg.tls.enabled else "mqtt"
    url = BrokerUrl(scheme, cfg.host, cfg.port or (8883 if cfg.tls.enabled else 1883), cfg.username)
    tls = None
    if cfg.tls.enabled:
        tls = TlsOptions(cfg.tls.ca_file, cfg.tls.cert_file, cfg.tls.key_file, cfg.tls.min_version)
        make_ssl_context(tls)  # unreadable or invalid files: one line now, not at the first connect
    return ConnectOptions(url=url, client_id=cfg.client_id or default_client_id(instance),
                          protocol=Protocol.V5 if cfg.protocol == "5" else Protocol.V311,
                          keepalive_s=cfg.keepalive_s, password=password, tls=tls,
                          timeout_s=cfg.connect_timeout_s)


def buffer_bounds(cfg: LivetokConfig) -> tuple[int, int]:
    """(messages, bytes) of the outbound buffer: ``mqtt.buffer_s`` of the configured streams, estimated
    from the configuration (frame rate 30 when a camera does not say), unless given explicitly."""
    m, tok = cfg.bus_settings(), cfg.tokenizer
    v, a = tok.video, tok.audio
    cells = {sc: (v.size // p) ** 2 for sc, p in (("fine", v.fine_patch), ("coarse", v.coarse_patch))}
    frame_bytes = sum(cells[sc] * getattr(v, sc).levels * 2 + 96 for sc in cells)
    if v.vectors:
        frame_bytes += sum(cells[sc] * getattr(v, sc).dim * 2 for sc in cells)
    audio_rate = 1000 / (a.fine_frames * a.hop_ms) + 1000 / (a.coarse_frames * a.hop_ms)
    by_name = {s.name: s for s in cfg.sources}
    msgs = nbytes = 0.0
    for g in cfg.effective_groups():
        group_bytes = 0.0
        if g.video is not None:
            src = by_name[g.video]
            fps = getattr(src, "fps", None) or 30.0
            fps = min(fps, getattr(src, "token_fps", None) or fps)  # the token rate, where it is lower
            msgs += 2 * fps
            group_bytes += fps * frame_bytes
        if g.audio is not None:
            msgs += audio_rate
            group_bytes += audio_rate * 100
        msgs += 1000 / cfg.alignment.step_ms
        nbytes += 2 * group_bytes  # the packets, and their copies inside the steps
    messages = m.buffer_messages or max(1_000, int(msgs * m.buffer_s))
    size = int(m.buffer_mb * 1e6) if m.buffer_mb else max(1_000_000, int(nbytes * m.buffer_s * 1.25))
    return messages, size


def source_metas(cfg: LivetokConfig, vocab: Vocabulary, run_id: str, instance: str) -> list[SourceMeta]:
    """The retained meta of every source a group uses: its streams' rates, grids, levels, vocabulary
    (``vocab``: the codebooks' joint vocabulary)."""
    tok = cfg.tokenizer
    a = tok.audio
    rate = {Scale.FINE: 1000 / (a.fine_frames * a.hop_ms), Scale.COARSE: 1000 / (a.coarse_frames * a.hop_ms)}
    groups = cfg.effective_groups()
    video = {g.video for g in groups if g.video}
    audio = {g.audio for g in groups if g.audio}
    started = time.time_ns()
    out = []
    for src in cfg.sources:
        streams = []
        if src.name in video:
            fps, token_fps = getattr(src, "fps", None), getattr(src, "token_fps", None)
            streams += [StreamDescription(Modality.VIDEO, sc, getattr(tok.video, sc.name.lower()).levels, None,
                                          fps, token_fps) for sc in Scale]
        if src.name in audio:
            streams += [StreamDescription(Modality.AUDIO, sc, getattr(a, sc.name.lower()).levels, rate[sc])
                        for sc in Scale]
        if streams:
            out.append(SourceMeta.build(run_id=run_id, instance=instance, source=src.name, vocab=vocab,
                                        streams=streams, started_unix_ns=started))
    return out


def packet_size(topic: bytes, payload_len: int, qos: int, props_len: int) -> int:
    """Bytes of an MQTT PUBLISH packet: fixed header, topic, packet id, properties, payload."""
    remaining = 2 + len(topic) + (2 if qos else 0) + props_len + payload_len
    return 1 + _varint_len(remaining) + remaining


def _varint_len(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4
