"""Wire packets, steps and meta to publish in bus tests, and a plain publisher that sends them
exactly as docs/bus.md says (topics, payload bytes, v5 content type and run id), so the consumer
side can be tested before and apart from the daemon's publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

import aiomqtt
import numpy as np

from livetok.bus import topics
from livetok.bus.meta import SourceMeta, StreamDescription, new_run_id
from livetok.bus.properties import packet_properties
from livetok.vocab import Vocabulary
from livetok.wire import AlignedStep, Clock, Flag, Modality, Scale, StepFlag, TokenPacket, encode_packet

VOCAB = Vocabulary.from_codebook_file()
CODEBOOK_ID = VOCAB.codebook_id
T0 = 1_700_000_000_000_000_000
LEVELS = {(Modality.AUDIO, Scale.FINE): 4, (Modality.AUDIO, Scale.COARSE): 2,
          (Modality.VIDEO, Scale.FINE): 4, (Modality.VIDEO, Scale.COARSE): 2}


def grid_of(modality: Modality, scale: Scale) -> tuple[int, int]:
    return (1, 1) if modality is Modality.AUDIO else ((14, 14) if scale is Scale.FINE else (7, 7))


def packet(seq: int, source: str = "cam0", modality: Modality = Modality.AUDIO, scale: Scale = Scale.FINE,
           flags: Flag = Flag.KEYFRAME, seed: int | None = None) -> TokenPacket:
    """A full-grid packet of real shape with codes drawn from ``seed`` (default: the seq)."""
    rows, cols = grid_of(modality, scale)
    rng = np.random.default_rng(seq if seed is None else seed)
    codes = rng.integers(0, 1024, size=(rows * cols, LEVELS[(modality, scale)]), dtype=np.uint16)
    step_ns = 20_000_000 if modality is Modality.AUDIO else 33_333_333
    return TokenPacket(source, modality, scale, seq, T0 + seq * step_ns, T0 + (seq + 1) * step_ns, Clock.UNIX,
                       CODEBOOK_ID, flags, (rows, cols), codes)


def step(seq: int, group: str = "g0", source: str = "cam0") -> AlignedStep:
    """An 80 ms step holding 4 fine + 1 coarse audio packets and one video frame of each scale."""
    pkts = [packet(seq * 4 + k, source, Modality.AUDIO, Scale.FINE) for k in range(4)]
    pkts.append(packet(seq, source, Modality.AUDIO, Scale.COARSE))
    pkts += [packet(seq, source, Modality.VIDEO, Scale.FINE), packet(seq, source, Modality.VIDEO, Scale.COARSE)]
    start = T0 + seq * 80_000_000
    return AlignedStep(group, seq, start, start + 80_000_000, Clock.UNIX, None, StepFlag.NONE, tuple(pkts))


def meta(run_id: str, instance: str = "host1", source: str = "cam0") -> SourceMeta:
    return SourceMeta.build(run_id=run_id, instance=instance, source=source, vocab=VOCAB, streams=[
        StreamDescription(Modality.AUDIO, Scale.FINE, 4, 50.0),
        StreamDescription(Modality.AUDIO, Scale.COARSE, 2, 12.5),
        StreamDescription(Modality.VIDEO, Scale.FINE, 4, None, 30.0),
        StreamDescription(Modality.VIDEO, Scale.COARSE, 2, None, 30.0)])


def topic_of(item: TokenPacket | AlignedStep, instance: str = "host1", prefix: str = "livetok") -> str:
    if isinstance(item, AlignedStep):
        return topics.steps_topic(prefix, instance, item.group)
    return topics.token_topic(prefix, instance, item.source, item.modality, item.stream_name)


class TestPublisher:
    """Publishes like the daemon will: ``async with TestPublisher(url, run_id=...) as pub: await pub.send(p)``."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, url: str, run_id: str | None = None, instance: str = "host1", qos: int = 1,
                 v5: bool = True, **client_kw: Any) -> None:
        from livetok.bus.url import parse_broker_url

        self.url = parse_broker_url(url)
        self.run_id = run_id or new_run_id()
        self.instance = instance
        self.qos = qos
        self.v5 = v5
        self._kw = client_kw
        self._client: aiomqtt.Client | None = None

    async def __aenter__(self) -> TestPublisher:
        proto = aiomqtt.ProtocolVersion.V5 if self.v5 else aiomqtt.ProtocolVersion.V311
        self._client = aiomqtt.Client(self.url.host, self.url.port, protocol=proto, **self._kw)
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.__aexit__(None, None, None)

    async def send(self, item: TokenPacket | AlignedStep, run_id: str | None = None) -> None:
        assert self._client is not None
        props = packet_properties(run_id or self.run_id) if self.v5 else None
        await self._client.publish(topic_of(item, self.instance), encode_packet(item), qos=self.qos,
                                   properties=props)

    async def send_all(self, items: Sequence[TokenPacket | AlignedStep]) -> None:
        for item in items:
            await self.send(item)

    async def send_many(self, items: Sequence[TokenPacket | AlignedStep], window: int = 500) -> None:
        """Publish ``items`` in order with up to ``window`` awaiting their acks (a fast backlog; the
        client needs ``max_inflight_messages`` at least ``window``)."""
        for i in range(0, len(items), window):
            await asyncio.gather(*(self.send(item) for item in items[i:i + window]))

    async def send_meta(self, source: str = "cam0", run_id: str | None = None) -> None:
        assert self._client is not None
        doc = meta(run_id or self.run_id, self.instance, source)
        await self._client.publish(topics.meta_topic("livetok", self.instance, source), doc.to_json().encode(),
                                   qos=1, retain=True)

    async def send_available(self, state: str = "online") -> None:
        assert self._client is not None
        await self._client.publish(topics.available_topic("livetok", self.instance), state.encode(), qos=1,
                                   retain=True)

    async def send_raw(self, topic: str, payload: bytes, retain: bool = False) -> None:
        assert self._client is not None
        await self._client.publish(topic, payload, qos=self.qos, retain=retain)


def publish(url: str, items: Sequence[TokenPacket | AlignedStep], **kw: Any) -> str:
    """Publish ``items`` from a fresh connection (blocking); returns the run id used."""
    async def go() -> str:
        async with TestPublisher(url, **kw) as pub:
            await pub.send_meta()
            await pub.send_all(items)
            return pub.run_id
    return asyncio.run(go())


def wait_for(predicate: Any, timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll until ``predicate()`` is true (bounded); the final value either way."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.strip():
            yield json.loads(line)


def run_cli(*args: str, timeout_s: float = 30.0, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``.venv/bin/livetok ARGS`` as a subprocess (the installed entry point), output captured."""
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("livetok")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout_s, **kw)
