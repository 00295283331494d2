"""Deadlines stretch while the relays bring heartbeats in late (daemon/buyer/scheduler.py
`_expire`): the request and its acknowledgement travel through the same backlog, and an
assignment re-issued over it is no node's fault and only adds to the backlog."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from pylon.daemon.buyer.registry import NodeRegistry
from scheduler_support import QuietRelay, online, quiet_scheduler

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_an_unacknowledged_job_waits_out_the_relays_lag_then_times_out(tmp_path: Path) -> None:
    registry = NodeRegistry(heartbeat_s=1.0)
    node = online(registry, "n")
    async with quiet_scheduler(tmp_path, registry, QuietRelay()) as sched:
        store = sched.store
        with anyio.fail_after(10):
            job = await sched.submit("a.py", "a = 1\n", language="python")
        att = job.current
        assert att is not None and not att.picked_up
        later = att.deadline + 1.0  # no acknowledgement by its deadline

        def heard(at: float, newest_sent: float) -> None:
            node.last_heartbeat = node.heard_at = at  # the node itself is alive throughout
            registry.news.note(newest_sent, at, 1.0)

        # The freshest heartbeat read is 6 s old: the relay is 5 s behind, so is the ack.
        heard(later, later - 6.0)
        assert registry.news_lag(later) == pytest.approx(5.0)
        sched._expire(later)
        assert not att.closed and job.current is att

        # The backlog clears and still no acknowledgement: now it is the node's.
        heard(later + 0.5, later + 0.5)
        sched._expire(later + 0.5)
        assert att.closed and job.current is not att
        rows = await store._fetch("SELECT error FROM attempts WHERE request_id = ?", (att.request_id,))
        assert rows == [("timeout",)]
        assert node.missed_acks == 1


async def test_a_lag_no_longer_measured_grants_nothing(tmp_path: Path) -> None:
    """News stopped coming in long ago: there is no lag to grant, the deadline holds."""
    registry = NodeRegistry(heartbeat_s=1.0)
    node = online(registry, "n")
    registry.news.note(time.time() - 60.0, time.time() - 30.0, 1.0)
    async with quiet_scheduler(tmp_path, registry, QuietRelay()) as sched:
        with anyio.fail_after(10):
            job = await sched.submit("a.py", "a = 1\n", language="python")
        att = job.current
        assert att is not None
        later = att.deadline + 1.0
        node.last_heartbeat = node.heard_at = later
        assert registry.news_lag(later) == 0.0
        sched._expire(later)
        assert att.closed
