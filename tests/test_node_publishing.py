"""A node's workers do not wait on the relays' answer to a result before taking the next job.

Before, each worker published its result and waited for the relays' OK (up to 10 s; with
several relays, up to a second more for the slower ones once one had answered), so a slow
relay, or one a WAN away, held every slot for its round trip. Now the result goes out in the
background, bounded (PUBLISHING_PER_SLOT results a slot), and a job counts as completed when
the relays take its result, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from fake_relay import FakeRelay
from pylon.daemon.config import NodeConfig
from pylon.daemon.provider import PUBLISHING_PER_SLOT, ProviderNode
from pylon.schemas import kinds

from pylon.keys import NostrKeys
from pylon.nostr import fitting, nip90
from pylon.nostr.event import NostrEvent
from pylon.nostr.filters import Filter
from pylon.nostr.relay_client import RelayPool

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def request(keys: NostrKeys, node: str, i: int) -> NostrEvent:
    text = f"def f{i}():\n    return {i}\n"
    return nip90.build_request(
        keys,
        path=f"f{i}.py",
        language="python",
        text=text,
        sha256=nip90.sha256_hex(text.encode()),
        size=len(text),
        node=node,
        run_id=None,
    )


async def until(what: str, cond: Callable[[], bool], timeout: float = 60.0) -> None:
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.02)


async def test_a_worker_runs_its_next_job_while_the_relay_holds_back_the_last_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYLON_HOME", str(tmp_path / "home"))
    # A relay that takes results but does not answer them until told to. The node's wait for
    # an answer is made endless, so a worker that waited would never take its next job.
    monkeypatch.setattr(fitting, "OK_TIMEOUT_S", 3600.0)
    jobs = 3
    with FakeRelay(hold_ok_kinds=frozenset({kinds.JOB_RESULT})) as relay:
        node = ProviderNode(NodeConfig(name="n0", relays=[relay.url], max_concurrency=1, heartbeat_s=60))
        buyer = NostrKeys.generate()
        pool = RelayPool([relay.url], keys=buyer)
        results: list[NostrEvent] = []
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            await pool.start(tg, wait_s=10)
            await pool.subscribe(
                [Filter(kinds=[kinds.JOB_RESULT], p=[buyer.pubkey])], results.append, sub_id="results"
            )
            for i in range(jobs):
                pool.publish_nowait(request(buyer, node.pubkey, i))

            # One worker, no answer to any result: all three ran and are out, awaiting the relay.
            await until("every result published", lambda: len(results) == jobs)
            st = node.status()
            assert st.publishing == jobs and st.running == 0 and st.queued == 0
            assert st.completed == 0  # not before the relays took it
            assert jobs <= PUBLISHING_PER_SLOT  # within the bound: nothing waited on the relay

            relay.release_oks()
            await until("every result answered", lambda: node.status().publishing == 0)
            st = node.status()
            assert (st.completed, st.failed) == (jobs, 0)
            assert {nip90.result_job_id(ev) for ev in results} == {
                ev["id"] for ev in relay.events if ev["kind"] == kinds.JOB_REQUEST
            }
            tg.cancel_scope.cancel()


async def test_the_workers_wait_once_the_relays_hold_back_a_full_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYLON_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fitting, "OK_TIMEOUT_S", 3600.0)
    bound = PUBLISHING_PER_SLOT  # one slot
    with FakeRelay(hold_ok_kinds=frozenset({kinds.JOB_RESULT})) as relay:
        node = ProviderNode(NodeConfig(name="n0", relays=[relay.url], max_concurrency=1, heartbeat_s=60))
        buyer = NostrKeys.generate()
        pool = RelayPool([relay.url], keys=buyer)
        results: list[NostrEvent] = []
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            await pool.start(tg, wait_s=10)
            await pool.subscribe(
                [Filter(kinds=[kinds.JOB_RESULT], p=[buyer.pubkey])], results.append, sub_id="results"
            )
            for i in range(bound + 2):
                pool.publish_nowait(request(buyer, node.pubkey, i))

            # The bound's worth of results goes out; then one more job runs and waits with its
            # result for room, and the last stays queued: memory stays bounded by the relay.
            await until("the bound published", lambda: len(results) == bound)
            await until(
                "one more run, waiting",
                lambda: (node.status().publishing, node.status().queued) == (bound + 1, 1),
            )
            assert len(results) == bound and node.status().running == 0

            relay.release_oks()
            await until("all answered", lambda: node.status().completed == bound + 2)
            assert len(results) == bound + 2 and node.status().publishing == 0
            tg.cancel_scope.cancel()
