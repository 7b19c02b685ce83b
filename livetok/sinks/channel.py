"""A sink's bounded input channel: the runner puts, the sink's task takes; both on the event loop.

Bounded by messages *and* bytes. Drop policy: when either bound would be exceeded, the *oldest*
messages are dropped (live data: the newest is the one worth delivering) and each is reported to
``on_drop`` so that it is counted where the sink keeps its books. Nothing is ever dropped silently:
what is still in the channel when it is abandoned is handed back by :meth:`abandon` to be counted.

Beside the messages, the channel carries the run's latest stats document (:meth:`post_stats`): a
one-slot board that a newer document replaces, never queued and never in the books. The runner posts
one per metrics interval; a sink that publishes it (the bus) takes each new one with :meth:`next_stats`.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from livetok.sinks.message import Outgoing


class SinkChannel:
    """Bounded, drop-oldest, single consumer; not thread-safe (event loop only)."""

    def __init__(self, max_messages: int, max_bytes: int, on_drop: Callable[[Outgoing], None]) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("a channel holds at least one message and one byte")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._on_drop = on_drop
        self._items: deque[Outgoing] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self._closed = False
        self._closed_event = asyncio.Event()
        self.max_depth = 0
        self.dropped = 0
        self._listeners: list[Callable[[], None]] = []
        self._stats: dict[str, Any] | None = None  # the latest stats document (module doc)
        self._stats_posted = asyncio.Event()

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the loop) whenever a message arrives or the channel closes."""
        self._listeners.append(callback)

    def put(self, item: Outgoing) -> None:
        """Add a message, dropping the oldest while a bound would be exceeded (a message larger than
        ``max_bytes`` alone still goes in, alone)."""
        if self._closed:
            raise RuntimeError("put on a closed channel")
        size = len(item.data)
        while self._items and (len(self._items) >= self.max_messages or self._bytes + size > self.max_bytes):
            old = self._items.popleft()
            self._bytes -= len(old.data)
            self.dropped += 1
            self._on_drop(old)
        self._items.append(item)
        self._bytes += size
        self.max_depth = max(self.max_depth, len(self._items))
        self._ready.set()
        for cb in self._listeners:
            cb()

    def close(self) -> None:
        """Nothing more will come: :meth:`get_batch` returns [] once the channel is empty."""
        self._closed = True
        self._closed_event.set()
        self._ready.set()
        for cb in self._listeners:
            cb()

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_closed(self) -> None:
        """Until :meth:`close` (a sink waiting out a backoff learns of the stop at once)."""
        await self._closed_event.wait()

    async def get_batch(self, limit: int) -> list[Outgoing]:
        """Up to ``limit`` messages in order, waiting for the first; [] when closed and empty."""
        while not self._items:
            if self._closed:
                return []
            self._ready.clear()
            await self._ready.wait()
        n = min(limit, len(self._items))
        out = [self._items.popleft() for _ in range(n)]
        self._bytes -= sum(len(o.data) for o in out)
        return out

    def take(self) -> Outgoing:
        """The oldest message, without waiting (IndexError when empty)."""
        item = self._items.popleft()
        self._bytes -= len(item.data)
        return item

    def abandon(self) -> list[Outgoing]:
        """Take everything still queued (shutdown deadline passed): for the caller to count."""
        out = list(self._items)
        self._items.clear()
        self._bytes = 0
        return out

    def post_stats(self, doc: dict[str, Any]) -> None:
        """The run's latest stats document (JSON-ready); replaces the one before, taken or not."""
        self._stats = doc
        self._stats_posted.set()

    async def next_stats(self) -> dict[str, Any]:
        """The stats document posted since the last one taken (waits for one)."""
        await self._stats_posted.wait()
        self._stats_posted.clear()
        assert self._stats is not None
        return self._stats

    def held_by(self) -> Counter[tuple[str, str]]:
        """What the channel holds, per accounting key (the books' ``queued``)."""
        return Counter(it.key for it in self._items)

    @property
    def depth(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes
