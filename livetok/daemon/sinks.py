"""Where packets go. A sink is written from the tokenizer worker thread, never from the event loop."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from livetok.daemon.config import FileSink
from livetok.errors import LivetokError
from livetok.wire import AlignedStep, LtkWriter, TokenPacket


class Sink(Protocol):
    def write(self, packet: TokenPacket | AlignedStep) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class LtkFileSink:
    """Appends aligned steps and/or per-modality packets to a .ltk file; flushed every ``flush()``."""

    def __init__(self, cfg: FileSink) -> None:
        self.cfg = cfg
        try:
            self._writer = LtkWriter(Path(cfg.path))
        except OSError as err:
            raise LivetokError(f"sink file:{cfg.path}: cannot open for writing ({err.strerror or err})") from err

    def write(self, packet: TokenPacket | AlignedStep) -> None:
        if (self.cfg.aligned if isinstance(packet, AlignedStep) else self.cfg.per_modality):
            self._writer.write(packet)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def open_sink(cfg: FileSink) -> Sink:
    return LtkFileSink(cfg)
