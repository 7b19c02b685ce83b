"""One vocabulary for the daemon: a group joins a video source and an audio source that feed
different plug-in tokenizers; every source's meta carries the same layout-2 vocabulary (every
plug-in tokenizer's named stream, in ``tokenizers:`` order), so a subscriber flattens every step of
the group with any one meta's vocabulary and unflattens it exactly. A live daemon (in a thread),
a real Mosquitto, livetok.client; small random-weight models exported here."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from broker import Mosquitto
from plugin_models import stateful_io, stateful_model, video_model
from test_bus_publisher import DaemonThread

from livetok.client import Subscriber
from livetok.config import LivetokConfig
from livetok.wire import AlignedStep, Modality, TokenPacket


def config(tmp: Path, port: int) -> LivetokConfig:
    gru = stateful_model(tmp, "torchscript")
    vq = video_model(tmp, "onnx", "codes")
    return LivetokConfig.model_validate({
        "tokenizers": [
            {"name": "audio", "kind": "logmel-rvq"}, {"name": "video", "kind": "patch-rvq"},
            {"name": "vq", "kind": "onnx", "modality": "video", "model": {"path": str(vq)}},
            {"name": "gru", "kind": "torchscript", "modality": "audio",
             "model": {"path": str(gru), "io": stateful_io("torchscript", "codes")}}],
        "sources": [{"kind": "synthetic", "name": "cam", "size": "160x120", "fps": 10, "tokenizers": ["vq"]},
                    {"kind": "synthetic", "name": "mic", "size": "160x120", "fps": 10,
                     "tokenizers": ["audio", "gru"]}],
        "groups": [{"name": "g", "video": "cam", "audio": "mic"}],
        "sinks": [{"kind": "file", "path": str(tmp / "out.ltk")}],
        "mqtt": {"host": "127.0.0.1", "port": port, "instance": "h", "keepalive_s": 2, "connect_timeout_s": 2}})


@pytest.mark.slow
def test_a_groups_steps_flatten_with_one_metas_vocabulary(tmp_path: Path, mosquitto: Mosquitto) -> None:
    cfg = config(tmp_path, mosquitto.port)
    steps: list[AlignedStep] = []
    ready, done = threading.Event(), threading.Event()
    sub_box: list[Subscriber] = []

    async def collect() -> None:
        async with Subscriber(mosquitto.url, "livetok/h/g/steps") as sub:
            sub_box.append(sub)
            ready.set()
            while not (done.is_set() and len(steps) >= 10):
                msg = await sub.get(timeout_s=0.2)
                if msg is not None and msg.step is not None:
                    steps.append(msg.step)
                elif done.is_set():
                    break

    thread = threading.Thread(target=lambda: asyncio.run(collect()), daemon=True)
    thread.start()
    assert ready.wait(30), "subscriber did not connect"
    report = DaemonThread(cfg, 3.0).start().join()
    done.set()
    thread.join(30)
    assert report.stopped_by == "duration"
    sub = sub_box[0]
    cam, mic = sub.meta[("h", "cam")], sub.meta[("h", "mic")]
    # one vocabulary: the codebooks' blocks, then vq's and gru's in the order of tokenizers:
    assert cam.vocab == mic.vocab and cam.vocab.to_dict()["layout"] == "livetok-vocab/2"
    assert [s.shape.key for s in cam.vocab.streams][-2:] == ["video/vq", "audio/gru"]
    assert {s.name for s in cam.specs} == {"vq"} and {s.name for s in mic.specs} == {"fine", "coarse", "gru"}
    assert cam.wire_version == mic.wire_version == 2
    joined = [s for s in steps if {(p.source, p.stream_name) for p in s.packets} >= {("cam", "vq"), ("mic", "gru")}]
    assert len(joined) >= 5, [sorted({(p.source, p.stream_name) for p in s.packets}) for s in steps]
    for meta in (cam, mic):
        vocab = meta.vocab
        for step in steps:
            back = vocab.unflatten(vocab.flatten(step))
            assert back.flags == step.flags and len(back.packets) == len(step.packets)
            for got, sent in zip(back.packets, step.packets, strict=True):
                assert isinstance(sent, TokenPacket)
                assert (got.modality, got.stream_name, got.flags) == (sent.modality, sent.stream_name, sent.flags)
                assert got.codes.tolist() == sent.codes.tolist()
    assert any(p.modality == Modality.VIDEO and p.stream_name == "vq" for s in joined for p in s.packets)
