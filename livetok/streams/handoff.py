"""A bounded hand-over from capture threads to the event loop.

Drop policy: when full, the *oldest* item is dropped (live data: the newest frame is the one worth
tokenizing) and counted in ``dropped``; the consumer learns of it through ``take_dropped()`` so the
next packet can carry a GAP flag. ``put`` is safe from any thread and from PortAudio callbacks (a
lock held for a deque append, no allocation beyond it, no waiting). A producer whose input is
buffered upstream anyway (a network stream: a socket, FFmpeg's receive FIFO) may pass ``wait_s``
to wait that long for room before dropping: a burst the consumer can absorb (a stream's start,
delivered in one go after probing) is then not cut, and the wait bounds how far the producer
falls behind.

Books: ``put_count = dropped + taken + depth`` at every moment; nothing leaves by another way (a
``put`` after :meth:`close` is queued like any other, for the final drain or the final count).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    """Bounded, drop-oldest queue: threads ``put``, one asyncio task ``await get()``."""

    def __init__(self, capacity: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified when the consumer takes items
        self._loop = loop
        self._ready = asyncio.Event() if loop is not None else None
        self.put_count = 0
        self.dropped = 0
        self.taken = 0
        self._dropped_unseen = 0
        self.max_depth = 0
        self._closed = False

    def bind(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Event | None = None) -> None:
        """Attach to the consumer's event loop (call from that loop). Several handoffs may share
        one ``ready`` event, so that one task can wait for any of them."""
        self._loop = loop
        self._ready = ready if ready is not None else asyncio.Event()

    def put(self, item: T, wait_s: float = 0.0, cancel: threading.Event | None = None) -> bool:
        """Add an item; returns False when an older item had to be dropped to make room.

        ``wait_s`` (s): when full, first wait up to that long for the consumer to make room (never
        after :meth:`close`, and no longer once ``cancel`` is set); 0: never wait.
        """
        with self._lock:
            if wait_s > 0 and len(self._items) >= self.capacity:
                self._wait_for_room(time.monotonic() + wait_s, cancel)
            ok = True
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
                self._dropped_unseen += 1
                ok = False
            self._items.append(item)
            self.put_count += 1
            self.max_depth = max(self.max_depth, len(self._items))
        self._wake()
        return ok

    def _wait_for_room(self, deadline: float, cancel: threading.Event | None) -> None:
        # Called with the lock held; Condition.wait releases it while waiting.
        while len(self._items) >= self.capacity and not self._closed and not (cancel is not None and cancel.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._room.wait(min(left, 0.05))  # a slice: ``cancel`` is an Event, it cannot notify us

    def _wake(self) -> None:
        loop, ready = self._loop, self._ready
        if loop is not None and ready is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(ready.set)

    def close(self) -> None:
        """No more items will come: ``get`` returns None once the queue is empty."""
        with self._lock:
            self._closed = True
            self._room.notify_all()
        self._wake()

    def get_nowait(self) -> T | None:
        with self._lock:
            if not self._items:
                return None
            self.taken += 1
            self._room.notify_all()
            return self._items.popleft()

    def drain(self, limit: int | None = None) -> list[T]:
        """Take up to ``limit`` items (all when None) without waiting."""
        with self._lock:
            n = len(self._items) if limit is None else min(limit, len(self._items))
            self.taken += n
            if n:
                self._room.notify_all()
            return [self._items.popleft() for _ in range(n)]

    async def get(self) -> T | None:
        """The next item, waiting for one; None after ``close()`` once empty."""
        assert self._ready is not None, "bind() the handoff to the event loop first"
        while True:
            with self._lock:
                if self._items:
                    self.taken += 1
                    self._room.notify_all()
                    return self._items.popleft()
                if self._closed:
                    return None
                self._ready.clear()
            await self._ready.wait()

    def take_dropped(self) -> int:
        """Drops since the last call (for flagging a gap on the next packet)."""
        with self._lock:
            n, self._dropped_unseen = self._dropped_unseen, 0
            return n

    def counts(self) -> tuple[int, int, int, int]:
        """``(put_count, dropped, taken, depth)`` at one moment (the books' equation holds among them)."""
        with self._lock:
            return self.put_count, self.dropped, self.taken, len(self._items)

    @property
    def depth(self) -> int:
        return len(self._items)
