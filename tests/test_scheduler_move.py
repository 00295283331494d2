"""At a run's end a job still queued behind another node's work moves to an idle node (issue 11):
prefetching hides the round trip while there is work to spare, but with nothing left to hand
out it leaves the run waiting on a busy node while another sits idle."""

from __future__ import annotations

from pathlib import Path

import pytest
from faults_support import SUPERSEDED
from pylon.daemon.buyer.registry import NodeRegistry
from scheduler_support import QuietRelay, online, quiet_scheduler, submit_run

from pylon.nostr import nip90

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_job_queued_behind_a_busy_node_moves_to_an_idle_one(tmp_path: Path) -> None:
    registry = NodeRegistry(heartbeat_s=1.0)
    busy = online(registry, "busy", delivered=1)
    relay = QuietRelay()
    async with quiet_scheduler(tmp_path, registry, relay) as sched:
        store = sched.store
        _, [running, queued] = await submit_run(sched, 2, "a.py", "b.py")
        # One slot and one prefetched: the second job waits in the busy node's queue.
        assert running.current and queued.current
        assert running.current.node == queued.current.node == busy.pubkey
        old = queued.current

        await sched._move_queued([running, queued])
        assert sched.backups["moved"] == 0  # no idle node: nothing moves

        idle = online(registry, "idle")
        await sched._move_queued([running, queued])
        assert sched.backups["moved"] == 1
        assert queued.current is not old and queued.current.node == idle.pubkey and not queued.current.closed
        assert queued.tele.provider_pubkey == idle.pubkey
        assert old.closed and running.current.node == busy.pubkey and not running.current.closed
        assert (busy.assigned_now, idle.assigned_now) == (1, 1)
        # The busy node is told to drop it; the idle one got a request of its own.
        cancels = [ev for ev in relay.published if nip90.is_cancel(ev)]
        assert [ev.tag("p") for ev in cancels] == [["p", busy.pubkey]]
        requests = [
            ev for ev in relay.published if ev.tag("p") == ["p", idle.pubkey] and not nip90.is_cancel(ev)
        ]
        assert [nip90.parse_request(ev).path for ev in requests] == ["b.py"]
        # The moved attempt is on the record as superseded, not as the busy node's failure.
        rows = await store.attempts_of(queued.tele.job_id)
        assert [(node, outcome) for _, node, _, outcome in rows] == [
            (busy.pubkey, "failed"),
            (idle.pubkey, None),
        ]
        assert busy.failed_for_us == 0
        assert SUPERSEDED in {r[0] for r in await store._fetch("SELECT error FROM attempts", ())}

        # The job the busy node is running stays there, however many idle nodes turn up.
        online(registry, "another")
        await sched._move_queued([running, queued])
        assert sched.backups["moved"] == 1 and running.current.node == busy.pubkey
