"""A blocking lane keeps nothing of a job once it is done: the caller owns what the job touched.

Otherwise the lane's daemon thread can hold the last reference to a large object (the pipeline,
through a bound method it ran, and the tokenizers' tensors behind it) and free it while the
interpreter finalizes: a torch tensor freed then aborts the process (``terminate called without an
active exception``: exit 134 after a clean stop, seen as a flaky ``livetok run`` exit)."""

from __future__ import annotations

import asyncio
import time
import weakref

from livetok.runtime.lane import BlockingLane


class Owner:
    """Stands for the pipeline: the job is one of its bound methods, its result a fresh object."""

    def __init__(self) -> None:
        self.payload = bytearray(1 << 20)

    def job(self, n: int) -> list[int]:
        return [n] * 3


def test_a_finished_job_leaves_no_reference_in_the_lane() -> None:
    async def go() -> tuple[weakref.ref[Owner], list[int]]:
        lane = BlockingLane("test-lane")
        try:
            owner = Owner()
            ref = weakref.ref(owner)
            result = await lane.run(owner.job, 7)
            del owner
            # The lane's thread lets go right after handing the result over; bounded wait for that
            # (before: never, it held the bound method until its next job).
            end = time.monotonic() + 5.0
            while ref() is not None and time.monotonic() < end:
                await asyncio.sleep(0.01)
            return ref, result
        finally:
            lane.close()

    ref, result = asyncio.run(go())
    assert result == [7, 7, 7]
    assert ref() is None, "the lane's thread still holds the job's owner"
