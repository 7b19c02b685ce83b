"""A blocking lane: one daemon thread that runs a sink's blocking calls (file writes) in order;
a :class:`LanePool`: a few lanes for blocking calls that run side by side (stopping sources).

Not the default executor and not a ThreadPoolExecutor: those threads are joined when the
interpreter exits, so a write stuck on a dead disk or NFS mount would hang the daemon's exit. A
lane's thread is a daemon thread; a call still running at the shutdown deadline is abandoned, and
counted by its caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_STOP = object()


class BlockingLane:
    """Runs callables one at a time in its own daemon thread; :meth:`run` awaits the result."""

    def __init__(self, name: str, nice: int = 0) -> None:
        self.nice = nice  # > 0: this thread yields the CPU to the others (Linux: per thread)
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.busy_since_ns = 0  # monotonic ns at which the running job started; 0 while idle
        self.done = 0  # jobs finished
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, fut, fn, args))
        return await fut

    def stuck_for_s(self) -> float:
        """How long the running job has been running (s); 0 while idle. The watchdog reads it."""
        since = self.busy_since_ns
        return (time.monotonic_ns() - since) / 1e9 if since else 0.0

    def close(self) -> None:
        """Let the thread end after the jobs already queued (never waits for it)."""
        self._jobs.put(_STOP)

    def _main(self) -> None:
        if self.nice:
            with contextlib.suppress(OSError, AttributeError):
                me = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, me, os.getpriority(os.PRIO_PROCESS, 0) + self.nice)
        while (job := self._jobs.get()) is not _STOP:
            loop, fut, fn, args = job
            self.busy_since_ns = time.monotonic_ns()
            try:
                result, error = fn(*args), None
            except BaseException as err:  # handed to the awaiting task
                result, error = None, err
            self.busy_since_ns = 0
            self.done += 1
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, fut, result, error)
            # Nothing of the job stays referenced here (the caller has it): the last reference to a
            # large object (a bound method's owner holding the tokenizers' tensors) must not drop in
            # this daemon thread while the interpreter finalizes: a torch tensor freed then aborts the
            # process ("terminate called without an active exception", pthread_exit's unwinding).
            del job, loop, fut, fn, args, result, error


class LanePool:
    """At most ``size`` lanes, made when first needed: :meth:`run_each` runs calls side by side, the
    i-th on lane ``i % size``. The daemon's executor for blocking calls that are not a sink's: the
    default executor's threads are joined at exit, so one stuck call would hang the process."""

    def __init__(self, name: str, size: int) -> None:
        if size < 1:
            raise ValueError("a pool has at least one lane")
        self.name = name
        self.size = size
        self._lanes: list[BlockingLane] = []

    async def run_each(self, calls: list[Callable[[], Any]]) -> list[Any]:
        """Every call's result or exception, in order (the caller bounds the wait)."""
        while len(self._lanes) < min(self.size, len(calls)):
            self._lanes.append(BlockingLane(f"{self.name}-{len(self._lanes)}"))
        jobs = [self._lanes[i % self.size].run(fn) for i, fn in enumerate(calls)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()
        self._lanes = []


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():  # the awaiting task gave up (deadline): nothing to deliver
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
