"""A node that answers before the relay's OK reaches the buyer (issue 9: relays that publish no
limits get every request published and its OK awaited before the attempt is recorded).

The relay pool here is a stand-in that delivers the node's result *inside* publish_checked, the
order a fast node and a busy buyer produce on a real relay now and then. Before the fix that
result was dropped as `unknown_job` and the job waited for its ack timeout, then ran again.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from pylon.daemon.buyer.registry import NodeRegistry
from pylon.daemon.buyer.scheduler import Scheduler
from pylon.daemon.buyer.store import BuyerStore
from pylon.daemon.config import BuyerConfig
from pylon.schemas.events import Announce, FileResult, Heartbeat, NodeState, ResultTiming
from pylon.schemas.telemetry import JobState
from scheduler_support import QuietRelay

from pylon.keys import NostrKeys
from pylon.nostr import nip90
from pylon.nostr.event import NostrEvent
from pylon.nostr.relay_client import PublishResult, RelayOutcome

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class AnswerBeforeOk(QuietRelay):
    """Relays that publish no limits; the node's answer to a request lands before the OK."""

    def __init__(self, node: NostrKeys, answers: int) -> None:
        super().__init__()
        self.node = node
        self.answers = answers  # how many of the node's events (feedback, result) come early
        self.scheduler: Scheduler | None = None

    def uncharted(self, ev: NostrEvent) -> bool:
        return True

    async def publish_checked(self, ev: NostrEvent, timeout: float) -> PublishResult:
        assert self.scheduler is not None
        req = nip90.parse_request(ev)
        now_ms = int(time.time() * 1000)
        result = FileResult(path=req.path, language="python", lines=1, symbols=[], imports=[], summary="")
        timing = ResultTiming(
            received_ms=now_ms, started_ms=now_ms, finished_ms=now_ms + 1, published_ms=now_ms + 2
        )
        early = [nip90.build_result(self.node, request=req, result=result, timing=timing)]
        for answer in early * self.answers:
            self.scheduler.on_job_event(answer)
        return PublishResult(event_id=ev.id, outcomes={"ws://r": RelayOutcome(relay="ws://r", accepted=True)})


async def _scheduler(tmp_path: Path, pool: AnswerBeforeOk) -> tuple[Scheduler, BuyerStore]:
    registry = NodeRegistry(heartbeat_s=1.0)
    e = registry.entry(pool.node.pubkey)
    e.announce = Announce(name="fast", version="t", executors=["deterministic"], max_concurrency=2)
    e.heartbeat = Heartbeat(
        state=NodeState.ONLINE, queue_depth=0, running=0, completed=0, failed=0, uptime_s=1.0, interval_s=1.0
    )
    e.last_heartbeat = time.time()
    store = await BuyerStore.open(tmp_path / "telemetry.db")
    sched = Scheduler(
        BuyerConfig(relays=["ws://r"]), keys=NostrKeys.generate(), pool=pool, registry=registry, store=store
    )  # type: ignore[arg-type]
    pool.scheduler = sched
    return sched, store


@pytest.mark.parametrize(("answers", "flood_dropped"), [(1, 0), (100, 100 - 16)])
async def test_an_answer_that_beats_the_ok_is_held_and_taken(
    tmp_path: Path, answers: int, flood_dropped: int
) -> None:
    """One early answer is taken once the attempt exists; a node flooding a request before its
    OK has at most 16 events held, the rest counted as dropped."""
    pool = AnswerBeforeOk(NostrKeys.generate(), answers=answers)
    sched, store = await _scheduler(tmp_path, pool)
    try:
        job = await sched.submit("a.py", "x = 1\n", language="python")
        with anyio.fail_after(5):
            await job.done.wait()
        assert job.tele.state == JobState.COMPLETED
        assert job.tele.provider_pubkey == pool.node.pubkey and job.tele.attempts == 1
        assert sched.dropped["unknown_job"] == 0
        assert sched.dropped["early_flood"] == flood_dropped
        assert not sched._early  # nothing left held
    finally:
        await store.close()


class OriginalWinsDuringTheCopy(AnswerBeforeOk):
    """The first request goes out without waiting; while the straggler's copy awaits its OK, the
    original's result and then the copy's own result arrive."""

    def __init__(self, node: NostrKeys, copier: NostrKeys) -> None:
        super().__init__(node, answers=0)
        self.copier = copier
        self.first: NostrEvent | None = None
        self.checked = 0

    def uncharted(self, ev: NostrEvent) -> bool:
        return self.first is not None  # the copy waits for its OK, the first request does not

    def publish_nowait(self, ev: NostrEvent, **_: object) -> bool:
        if self.first is None:
            self.first = ev
        return super().publish_nowait(ev)

    def _result(self, signer: NostrKeys, ev: NostrEvent) -> NostrEvent:
        req = nip90.parse_request(ev)
        now_ms = int(time.time() * 1000)
        result = FileResult(path=req.path, language="python", lines=1, symbols=[], imports=[], summary="")
        timing = ResultTiming(received_ms=now_ms, started_ms=now_ms, finished_ms=now_ms, published_ms=now_ms)
        return nip90.build_result(signer, request=req, result=result, timing=timing)

    async def publish_checked(self, ev: NostrEvent, timeout: float) -> PublishResult:
        assert self.scheduler is not None and self.first is not None
        self.checked += 1
        self.scheduler.on_job_event(self._result(self.node, self.first))
        self.scheduler.on_job_event(self._result(self.copier, ev))
        return PublishResult(event_id=ev.id, outcomes={"ws://r": RelayOutcome(relay="ws://r", accepted=True)})


async def test_a_job_that_finishes_while_its_copy_awaits_the_ok_ends_once(tmp_path: Path) -> None:
    """The straggler's copy was recorded after the original had won: the job came back to life,
    the copy's result finished it a second time and its run counted one file twice, so a map
    ended with a file still open (CI, a relay that never answers OK)."""
    copier = NostrKeys.generate()
    pool = OriginalWinsDuringTheCopy(NostrKeys.generate(), copier)
    sched, store = await _scheduler(tmp_path, pool)
    try:
        run = sched.track_run("r" * 64, 2)
        job = await sched.submit("a.py", "x = 1\n", language="python", run_id=run.run_id)
        e = sched.registry.entry(copier.pubkey)
        e.announce = Announce(name="copier", version="t", executors=["deterministic"], max_concurrency=2)
        sched._reserve(copier.pubkey)
        copy = await sched._publish_attempt(job, copier.pubkey, backup=True)
        assert pool.checked == 1
        assert copy is None  # the job had ended: no attempt recorded
        assert job.tele.state == JobState.COMPLETED and job.tele.provider_pubkey == pool.node.pubkey
        assert job.tele.job_id not in sched.active
        assert (run.completed, run.done.is_set()) == (1, False)  # one of two files, counted once
        assert e.assigned_now == 0  # the copy's slot is free again
        cancels = [ev for ev in pool.published if nip90.is_cancel(ev)]
        assert [ev.tag("p") for ev in cancels][-1:] == [["p", copier.pubkey]]  # told to drop it
        assert not sched._early
    finally:
        await store.close()
