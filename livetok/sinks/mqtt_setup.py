"""The MQTT sink's settings made concrete: the connection (password, TLS, client id), the outbound
buffer's bounds, the sources' retained meta, the size of a PUBLISH packet. Also what ``check-config``
and ``doctor`` check of the bus before anything connects."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from livetok.bus.connect import ConnectOptions, Protocol
from livetok.bus.meta import SourceMeta, StreamDescription, StreamSpecMeta, with_named_streams
from livetok.bus.secret import Secret, read_secret_file
from livetok.bus.tls import TlsOptions, make_ssl_context
from livetok.bus.url import BrokerUrl
from livetok.config import FileSource, LavfiSource, LivetokConfig, Mqtt, Source
from livetok.errors import ConfigError, DecodeError
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


def buffer_bounds(cfg: LivetokConfig, plugins: dict[str, Any] | None = None) -> tuple[int, int]:
    """(messages, bytes) of the outbound buffer: ``mqtt.buffer_s`` of the configured streams, estimated
    from the configuration (frame rate 30 when a camera does not say) and the plug-in tokenizers' specs
    (``plugins``: the loaded ones), unless given explicitly."""
    m, tok = cfg.bus_settings(), cfg.tokenizer
    v, a = tok.video, tok.audio
    cells = {sc: (v.size // p) ** 2 for sc, p in (("fine", v.fine_patch), ("coarse", v.coarse_patch))}
    frame_bytes = sum(cells[sc] * getattr(v, sc).levels * 2 + 96 for sc in cells)
    if v.vectors:
        frame_bytes += sum(cells[sc] * getattr(v, sc).dim * 2 for sc in cells)
    audio_rate = 1000 / (a.fine_frames * a.hop_ms) + 1000 / (a.coarse_frames * a.hop_ms)
    by_name = {s.name: s for s in cfg.sources}
    specs = stream_specs_of(cfg, plugins or {})
    msgs = nbytes = 0.0
    for g in cfg.effective_groups():
        group_bytes = 0.0
        if g.video is not None:
            cam = by_name[g.video]
            fps = getattr(cam, "fps", None) or 30.0
            fps = min(fps, getattr(cam, "token_fps", None) or fps)  # the token rate, where it is lower
            if ("video", "fine") in specs.get(g.video, {}):
                msgs += 2 * fps
                group_bytes += fps * frame_bytes
        if g.audio is not None and ("audio", "fine") in specs.get(g.audio, {}):
            msgs += audio_rate
            group_bytes += audio_rate * 100
        for src, modality in ((g.video, "video"), (g.audio, "audio")):
            for (mod, name), spec in specs.get(src or "", {}).items():
                if mod == modality and name not in ("fine", "coarse"):
                    rate = (getattr(by_name[src or ""], "fps", None) or 30.0) if spec.step_ns is None else (
                        1e9 / float(spec.step_ns))
                    n = spec.grid[0] * spec.grid[1]
                    msgs += rate
                    group_bytes += rate * (n * spec.levels * 2 + n * (spec.vector_size or 0) * 2 + 96)
        msgs += 1000 / cfg.alignment.step_ms
        nbytes += 2 * group_bytes  # the packets, and their copies inside the steps
    messages = m.buffer_messages or max(1_000, int(msgs * m.buffer_s))
    size = int(m.buffer_mb * 1e6) if m.buffer_mb else max(1_000_000, int(nbytes * m.buffer_s * 1.25))
    return messages, size


def stream_specs_of(cfg: LivetokConfig, plugins: dict[str, Any]) -> dict[str, dict[tuple[str, str], Any]]:
    """Per source, its streams' specs by (modality, stream name)."""
    from livetok.tokenizers.registry import stream_specs

    return {src: {(spec.modality, spec.name): spec for _, _, spec in streams}
            for src, streams in stream_specs(cfg, plugins).items()}


def stream_spec_metas(cfg: LivetokConfig, vocab: Vocabulary,
                      plugins: dict[str, Any]) -> dict[str, list[StreamSpecMeta]]:
    """Per source, the ``specs`` of its meta: every stream it sends as its tokenizer declares it."""
    from livetok.tokenizers.registry import stream_specs

    return {source: [_spec_meta(tokenizer, kind, spec, vocab, plugins) for tokenizer, kind, spec in streams]
            for source, streams in stream_specs(cfg, plugins).items()}


def _spec_meta(tokenizer: str, kind: str, spec: Any, vocab: Vocabulary, plugins: dict[str, Any]) -> StreamSpecMeta:
    step = None if spec.step_ns is None else f"{spec.step_ns.numerator}/{spec.step_ns.denominator}"
    cid = plugins[tokenizer].codebook_id if tokenizer in plugins else vocab.codebook_id
    return StreamSpecMeta(tokenizer, kind, spec.name, spec.modality, step, spec.grid, spec.levels,
                          spec.codebook_size, spec.vector_size, cid)


def daemon_vocabulary(cfg: LivetokConfig, vocab: Vocabulary, plugins: dict[str, Any]) -> Vocabulary:
    """The one vocabulary every source's meta carries: the codebooks' (``vocab``) with a block for
    each plug-in tokenizer's named stream, in the order of ``tokenizers:`` (layout 2), whichever
    source feeds it; ``vocab`` itself (layout 1, byte for byte) when there is none. A group joins
    sources with different named streams: its steps flatten with any one source's meta."""
    named = [_spec_meta(e.name, e.kind, plugins[e.name].spec, vocab, plugins)
             for _, e in cfg.plugin_entries() if e.name in plugins]
    try:
        return with_named_streams(vocab, named)
    except (DecodeError, ValueError) as err:
        raise ConfigError(f"the daemon's vocabulary: {err}") from None


def source_metas(cfg: LivetokConfig, vocab: Vocabulary, run_id: str, instance: str,
                 plugins: dict[str, Any] | None = None, started_unix_ns: int | None = None) -> list[SourceMeta]:
    """The retained meta of every source a group uses: its streams' rates, grids, levels, the
    daemon's vocabulary (:func:`daemon_vocabulary` of ``vocab``, the codebooks' joint vocabulary),
    and every stream's spec (``plugins``: the loaded plug-in tokenizers). ``started_unix_ns``: when
    the run started (None: now; a reload gives the run's)."""
    specs = stream_spec_metas(cfg, vocab, plugins or {})
    vocab = daemon_vocabulary(cfg, vocab, plugins or {})
    tok = cfg.tokenizer
    a = tok.audio
    rate = {Scale.FINE: 1000 / (a.fine_frames * a.hop_ms), Scale.COARSE: 1000 / (a.coarse_frames * a.hop_ms)}
    groups = cfg.effective_groups()
    video = {g.video for g in groups if g.video}
    audio = {g.audio for g in groups if g.audio}
    started = time.time_ns() if started_unix_ns is None else started_unix_ns
    out = []
    for src in cfg.sources:
        streams = []
        builtin = {(s.modality, s.name) for s in specs.get(src.name, ())}
        if src.name in video and ("video", "fine") in builtin:
            fps = nominal_fps(src)
            streams += [StreamDescription(Modality.VIDEO, sc, getattr(tok.video, sc.name.lower()).levels, None,
                                          fps, token_fps=getattr(src, "token_fps", None)) for sc in Scale]
        if src.name in audio and ("audio", "fine") in builtin:
            streams += [StreamDescription(Modality.AUDIO, sc, getattr(a, sc.name.lower()).levels, rate[sc])
                        for sc in Scale]
        if streams or specs.get(src.name):
            out.append(SourceMeta.build(run_id=run_id, instance=instance, source=src.name, vocab=vocab,
                                        streams=streams, started_unix_ns=started, specs=specs.get(src.name, ())))
    return out


def nominal_fps(src: Source) -> float | None:
    """A video source's nominal frame rate for its meta: the configured ``fps`` (a camera, the
    synthetic source), else what a file or lavfi graph states in its header. A network stream's or
    a camera's own rate is not known before it opens: None (meta says null)."""
    fps: float | None = getattr(src, "fps", None)
    if fps is not None or not isinstance(src, FileSource | LavfiSource):
        return fps
    from livetok.media.decode import nominal_fps as stated_fps  # PyAV: only for a file or lavfi source

    return stated_fps(src.path) if isinstance(src, FileSource) else stated_fps(src.graph, "lavfi")


def packet_size(topic: bytes, payload_len: int, qos: int, props_len: int) -> int:
    """Bytes of an MQTT PUBLISH packet: fixed header, topic, packet id, properties, payload."""
    remaining = 2 + len(topic) + (2 if qos else 0) + props_len + payload_len
    return 1 + _varint_len(remaining) + remaining


def _varint_len(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4
