"""A node's workers do not wait on the relays' answer to a result before taking the next job.

Before, each worker published its result and waited for the relays' OK (up to 10 s; with
several relays, up to a second more for the slower ones once one had answered), so a slow
relay, or one a WAN away, held every slot for its round trip. Now the result goes out in the
background, bounded (PUBLISHING_PER_SLOT results a slot), and a job counts as completed when
the relays take its result, as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from fake_relay import FakeRelay
from pylon.daemon.config import NodeConfig
from pylon.daemon.provider import PUBLISHING_PER_SLOT, ProviderNode
from pylon.schemas import kinds
from test_spam_amplification import request

from pylon.keys import NostrKeys
from pylon.nostr import fitting, nip90
from pylon.nostr.event import NostrEvent
from pylon.nostr.filters import Filter
from pylon.nostr.relay_client import RelayPool

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def until(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.02)


@dataclass
class Setup:
    relay: FakeRelay
    node: ProviderNode
    results: list[NostrEvent]  # as the buyer gets them from the relay

    def submit(self, pool: RelayPool, buyer: NostrKeys, jobs: int) -> None:
        for i in range(jobs):
            pool.publish_nowait(request(buyer, self.node.pubkey, i))


@asynccontextmanager
async def one_slot_node_behind_a_relay_that_holds_back_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> AsyncIterator[Setup]:
    """A node with one worker, sent `jobs` requests through a relay that takes results but does
    not answer them until release_oks(). The node's wait for an answer is made endless, so a
    worker that waited would never take its next job."""
    monkeypatch.setenv("PYLON_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fitting, "OK_TIMEOUT_S", 3600.0)
    with FakeRelay(hold_ok_kinds=frozenset({kinds.JOB_RESULT})) as relay:
        node = ProviderNode(NodeConfig(name="n0", relays=[relay.url], max_concurrency=1, heartbeat_s=60))
        buyer = NostrKeys.generate()
        pool = RelayPool([relay.url], keys=buyer)
        setup = Setup(relay, node, [])
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            await pool.start(tg, wait_s=10)
            await pool.subscribe(
                [Filter(kinds=[kinds.JOB_RESULT], p=[buyer.pubkey])], setup.results.append, sub_id="results"
            )
            setup.submit(pool, buyer, jobs)
            yield setup
            tg.cancel_scope.cancel()


async def test_a_worker_runs_its_next_job_while_the_relay_holds_back_the_last_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = 3
    assert jobs <= PUBLISHING_PER_SLOT  # within the bound: nothing waits on the relay
    async with one_slot_node_behind_a_relay_that_holds_back_results(tmp_path, monkeypatch, jobs) as s:
        # One worker, no answer to any result: all three ran and are out, awaiting the relay.
        await until(lambda: len(s.results) == jobs)
        st = s.node.status()
        assert (st.publishing, st.running, st.queued) == (jobs, 0, 0)
        assert st.completed == 0  # not before the relays took it

        s.relay.release_oks()
        await until(lambda: s.node.status().publishing == 0)
        st = s.node.status()
        assert (st.completed, st.failed) == (jobs, 0)
        assert {nip90.result_job_id(ev) for ev in s.results} == {
            ev["id"] for ev in s.relay.events if ev["kind"] == kinds.JOB_REQUEST
        }


async def test_the_workers_wait_once_the_relays_hold_back_a_full_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound = PUBLISHING_PER_SLOT  # one slot
    async with one_slot_node_behind_a_relay_that_holds_back_results(tmp_path, monkeypatch, bound + 2) as s:
        # The bound's worth of results goes out; then one more job runs and waits with its
        # result for room, and the last stays queued: memory stays bounded by the relay.
        await until(lambda: len(s.results) == bound)
        await until(lambda: (s.node.status().publishing, s.node.status().queued) == (bound + 1, 1))
        assert len(s.results) == bound and s.node.status().running == 0

        s.relay.release_oks()
        await until(lambda: s.node.status().completed == bound + 2)
        assert len(s.results) == bound + 2 and s.node.status().publishing == 0
