"""A blocking iterator over a :class:`~livetok.client.Subscriber`, for code that is not async.

    with subscribe_blocking("mqtt://broker:1883", "livetok/+/+/steps") as sub:
        for msg in sub:
            model.feed(msg.step)
        print(sub.stats().total.gaps)

The subscriber runs on its own event loop in a daemon thread and hands messages over through a
bounded queue (``max_pending``). Drop policy: the hand-over itself never drops. When the
consumer falls behind, the loop thread stops taking messages from the subscriber, so they wait
in the subscriber's buffer (``buffer_messages``; when that is full the *oldest* is dropped,
counted in ``stats().dropped``, and seen by continuity as a gap) and, for QoS 1/2, at the broker,
whose in-flight window and queue hold them (with a persistent session, across a crash too).
A fatal bus error ends the iteration by raising it in the consuming thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from livetok.client.message import Message, SubscriberStats
from livetok.client.subscriber import Subscriber
from livetok.errors import BusError

_END = object()


class BlockingSubscriber:
    """Iterate messages from a thread (module doc). Build it with :func:`subscribe_blocking`."""

    def __init__(self, url: str, filters: str | Sequence[str] | None = None, *, max_pending: int = 256,
                 start_timeout_s: float = 120.0, **options: Any) -> None:
        self._sub = Subscriber(url, filters, **options)  # configuration errors raise here, in the caller
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, max_pending))
        self._start_timeout_s = start_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._space: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._finished = False
        self._last_stats: SubscriberStats | None = None

    def __repr__(self) -> str:
        return f"BlockingSubscriber({self._sub!r})"

    def start(self) -> BlockingSubscriber:
        """Connect (in the background thread) and return once connected; BusError if that fails."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="livetok-subscriber", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout_s):
            self.close()
            raise BusError(f"no connection to the broker within {self._start_timeout_s:g} s", retryable=True)
        if self._error is not None:
            self._thread.join(5)
            raise self._error
        return self

    def __enter__(self) -> BlockingSubscriber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Message]:
        while True:
            msg = self.get()
            if msg is None:
                return
            yield msg

    def get(self, timeout_s: float | None = None) -> Message | None:
        """The next message.

        Args:
            timeout_s: the longest wait (s); None: until a message comes or the subscription ends.

        Returns:
            The message; None when the subscription ended or ``timeout_s`` passed first.

        Raises:
            BusError: a fatal bus error (a refused login or certificate; unreachable after the
                configured attempts).
        """
        if self._finished:
            self._raise_error()
            return None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            # in slices, so that a loop thread that ended without its end marker is noticed
            left = 0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
            try:
                item = self._queue.get(timeout=left)
                break
            except queue.Empty:
                if self._thread is None or not self._thread.is_alive():
                    self._finished = True
                    self._raise_error()
                    return None
                if deadline is not None and time.monotonic() >= deadline:
                    return None
        self._signal_space()
        if item is _END:
            self._finished = True
            self._raise_error()
            return None
        msg: Message = item
        return msg

    def _raise_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def stats(self) -> SubscriberStats:
        """The subscriber's counters (taken on its loop, so they are consistent)."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                fut = asyncio.run_coroutine_threadsafe(self._snapshot(), loop)
                return fut.result(5)
        return self._last_stats if self._last_stats is not None else self._sub.stats

    @property
    def meta(self) -> dict[tuple[str, str], Any]:
        return self._sub.meta

    def close(self) -> None:
        """Disconnect and stop the thread (bounded wait); safe to call twice."""
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(10)

    # -- the loop thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._task = loop.create_task(self._main())
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._ready.set()

    async def _main(self) -> None:
        self._space = asyncio.Event()
        closing = False
        try:
            async with self._sub as sub:
                self._ready.set()
                async for msg in sub:
                    await self._put(msg)
        except asyncio.CancelledError:
            closing = True  # close(): nobody waits for more, so the end marker must not wait for room
        except BaseException as err:  # handed to the consuming thread, raised there
            self._error = err
        finally:
            self._last_stats = self._sub.stats
            self._ready.set()
            if closing:
                with contextlib.suppress(queue.Full):
                    self._queue.put_nowait(_END)
            else:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._put(_END)

    async def _put(self, item: Any) -> None:
        space = self._space
        assert space is not None
        while True:
            space.clear()  # before looking, so that a get() after the look wakes us
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                await space.wait()

    def _signal_space(self) -> None:
        loop, space = self._loop, self._space
        if loop is not None and space is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(space.set)

    async def _snapshot(self) -> SubscriberStats:
        return self._sub.stats


def subscribe_blocking(url: str, filters: str | Sequence[str] | None = None, *, max_pending: int = 256,
                       **options: Any) -> BlockingSubscriber:
    """A :class:`BlockingSubscriber`; use it as a context manager (``with ... as sub: for msg in sub``).

    Args:
        url: ``mqtt[s]://[USER@]HOST[:PORT]``.
        filters: one topic filter or several; None: every token and step topic.
        max_pending: messages handed over to the consuming thread and not yet taken (bounded; the
            subscriber's own buffer holds the rest).
        **options: :class:`Subscriber`'s keyword arguments.

    Returns:
        The subscriber, not yet started (``with`` starts it).

    Raises:
        ConfigError: a bad URL, filter or option.
    """
    return BlockingSubscriber(url, filters, max_pending=max_pending, **options)
