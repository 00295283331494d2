"""The loop watch counts the times a daemon's event loop was held up, and by how much."""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest

from pylon.loopwatch import STALL_MS, LoopWatch

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def hold_the_loop(seconds: float) -> None:
    """CPU-bound work on the event loop, as a careless handler would do it: the stall under test."""
    time.sleep(seconds)


async def test_a_blocking_call_on_the_loop_is_counted_as_a_stall() -> None:
    watch = LoopWatch("test")
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch.run)
        await anyio.lowlevel.checkpoint()  # the watch is now asleep on its tick
        hold_the_loop(3 * STALL_MS / 1000)
        with anyio.fail_after(10):
            while watch.stalls == 0:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert watch.stalls >= 1
    assert watch.max_ms >= 2 * STALL_MS - 60  # blocked 3x; the watch asked for a 50 ms tick
