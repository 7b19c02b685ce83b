"""End to end with a plug-in stream (issue 15 §3): ``livetok fit --tokenizer`` learns a
spectrogram-patches tokenizer's codebooks on a clip, the daemon runs live from that clip (played as
live) into a file and a real Mosquitto, livetok.client takes the steps off the bus, the meta's
vocabulary flattens each step and gives it back exactly, and the bus's steps equal the file's."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from broker import Mosquitto
from mediagen import ffmpeg
from test_bus_publisher import DaemonThread

from livetok.cli import main
from livetok.client import Subscriber
from livetok.config import load_config
from livetok.wire import AlignedStep, TokenPacket, read_ltk

CONFIG = """\
tokenizers:
  - {{name: audio, kind: logmel-rvq}}
  - name: spec
    kind: spectrogram-patches
    modality: audio
    codebooks: {books}
    quantizer: {{kind: rvq, levels: 2, codebook_size: 16, dim: 8}}
sources:
  - {{kind: file, name: clip, path: {clip}}}
sinks:
  - {{kind: file, path: {out}}}
mqtt: {{host: 127.0.0.1, port: {port}, instance: h, keepalive_s: 2, connect_timeout_s: 2}}
"""


def collect_steps(url: str, daemon: DaemonThread) -> tuple[list[AlignedStep], Subscriber]:
    """Every step of group ``clip`` the bus delivers while the daemon runs (and after, until quiet)."""
    steps: list[AlignedStep] = []
    ready = threading.Event()
    box: list[Subscriber] = []

    async def main_() -> None:
        async with Subscriber(url, "livetok/h/clip/steps") as sub:
            box.append(sub)
            ready.set()
            while True:
                msg = await sub.get(timeout_s=1.0)
                if msg is not None and msg.step is not None:
                    steps.append(msg.step)
                elif msg is None and not daemon.thread.is_alive():
                    return

    thread = threading.Thread(target=lambda: asyncio.run(main_()), daemon=True)
    thread.start()
    assert ready.wait(30), "subscriber did not connect"
    daemon.start().join()
    thread.join(30)
    return steps, box[0]


@pytest.mark.slow
def test_fit_run_bus_client_flatten_and_back(tmp_path: Path, mosquitto: Mosquitto) -> None:
    clip, books, out = tmp_path / "clip.wav", tmp_path / "spec.safetensors", tmp_path / "out.ltk"
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=duration=2.5:seed=3:amplitude=0.3", "-ar", "16000", str(clip))
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(CONFIG.format(books=books, clip=clip, out=out, port=mosquitto.port))
    assert main(["fit", "--tokenizer", "spec", str(clip), "-o", str(books), "-c", str(cfg_path), "--iters", "3"]) == 0
    steps, sub = collect_steps(mosquitto.url, DaemonThread(load_config(cfg_path), 4.0))
    meta = sub.meta[("h", "clip")]
    spec = meta.spec("audio", "spec")
    assert spec is not None and spec.kind == "spectrogram-patches"
    vocab = meta.vocab
    named = [p for s in steps for p in s.packets if isinstance(p, TokenPacket) and p.stream_name == "spec"]
    assert len(steps) > 15 and len(named) > 15
    assert all(p.codebook_id == spec.codebook_id and p.codes.shape[1] == 2 for p in named)
    # the file's steps are the bus's, and each flattens and comes back exactly
    filed = [p for p in read_ltk(out).packets if isinstance(p, AlignedStep)]
    assert [s.seq for s in steps] == [s.seq for s in filed[: len(steps)]]
    ids = vocab.flatten_steps(steps)
    back = vocab.unflatten_steps(ids)
    assert len(back) == len(steps)
    for got, sent, on_file in zip(back, steps, filed, strict=False):
        assert got.flags == sent.flags and len(got.packets) == len(sent.packets) == len(on_file.packets)
        for g, p, f in zip(got.packets, sent.packets, on_file.packets, strict=True):
            assert isinstance(p, TokenPacket) and isinstance(f, TokenPacket)
            assert (g.modality, g.stream_name, g.flags) == (p.modality, p.stream_name, p.flags)
            assert g.codes.tolist() == p.codes.tolist() == f.codes.tolist()
    assert int(ids.max()) < vocab.size
