"""The ``queues:`` and ``metrics:`` sections: the capture hand-over's bounds, the Prometheus endpoint."""

from __future__ import annotations

from pydantic import Field, field_validator

from livetok.config.base import Strict


class Queues(Strict):
    video_frames: int = Field(
        8, ge=1, le=1024, description="frames held per source before the tokenizer (count); oldest dropped when full")
    audio_blocks: int = Field(
        64, ge=1, le=4096, description="audio blocks held per source (count); oldest dropped when full")
    batch_wait_ms: float = Field(5.0, ge=0, le=1000, description="wait this long for more frames to fill a batch (ms)")


class MetricsEndpoint(Strict):
    """The Prometheus endpoint (docs/service.md)."""

    listen: str | None = Field(
        None, pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$",
        description="HOST:PORT to serve /metrics on, e.g. 127.0.0.1:9464; null = off")

    @field_validator("listen")
    @classmethod
    def _port(cls, listen: str | None) -> str | None:
        # the pattern lets 0 and 99999 through; checked here so that check-config refuses them, not the start
        if listen is not None and not 0 < int(listen.rpartition(":")[2]) < 65536:
            raise ValueError(f"{listen}: the port must be from 1 to 65535")
        return listen
