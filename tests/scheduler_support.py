"""Stand-ins for a Scheduler's surroundings in unit tests: a relay and nodes heard from."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from pylon.daemon.buyer.registry import NodeEntry, NodeRegistry
from pylon.daemon.buyer.scheduler import ActiveJob, RunTracker, Scheduler
from pylon.daemon.buyer.store import BuyerStore
from pylon.daemon.config import BuyerConfig
from pylon.schemas.events import Announce, Heartbeat, NodeState

from pylon.keys import NostrKeys
from pylon.nostr.budget import DEFAULT as DEFAULT_BUDGET
from pylon.nostr.event import NostrEvent
from pylon.nostr.relay_client import PublishResult, RelayOutcome


class QuietRelay:
    """A relay that takes every event and says nothing back: the nodes never answer here."""

    def __init__(self) -> None:
        self.published: list[NostrEvent] = []

    def budget(self):
        return DEFAULT_BUDGET

    def is_connected(self) -> bool:
        return True

    def uncharted(self, ev: NostrEvent) -> bool:
        return False

    def publish_nowait(self, ev: NostrEvent, **_: object) -> bool:
        self.published.append(ev)
        return True

    async def publish_checked(self, ev: NostrEvent, timeout: float) -> PublishResult:
        self.published.append(ev)
        return PublishResult(event_id=ev.id, outcomes={"ws://r": RelayOutcome(relay="ws://r", accepted=True)})


def idle_heartbeat(interval_s: float = 1.0, **fields: object) -> Heartbeat:
    """What an online node with nothing to do says every `interval_s` seconds."""
    return Heartbeat(
        state=NodeState.ONLINE,
        queue_depth=0,
        running=0,
        completed=0,
        failed=0,
        uptime_s=1.0,
        interval_s=interval_s,
        **fields,  # type: ignore[arg-type]
    )


def online(registry: NodeRegistry, name: str, *, delivered: int = 0) -> NodeEntry:
    e = registry.entry(NostrKeys.generate().pubkey)
    e.announce = Announce(name=name, version="t", executors=["deterministic"], max_concurrency=1)
    e.heartbeat = idle_heartbeat()
    e.last_heartbeat = time.time()
    e.completed_for_us = delivered  # a node that has delivered gets one job prefetched
    return e


@asynccontextmanager
async def quiet_scheduler(
    tmp_path: Path, registry: NodeRegistry, relay: QuietRelay
) -> AsyncIterator[Scheduler]:
    """A buyer's scheduler on `relay`, its store in `tmp_path`, its loops not started."""
    store = await BuyerStore.open(tmp_path / "telemetry.db")
    try:
        yield Scheduler(
            BuyerConfig(relays=["ws://r"]),
            keys=NostrKeys.generate(),
            pool=relay,
            registry=registry,
            store=store,
        )  # type: ignore[arg-type]
    finally:
        await store.close()


async def submit_run(sched: Scheduler, total: int, *paths: str) -> tuple[RunTracker, list[ActiveJob]]:
    """A run of `total` files, the first ones (`paths`, tiny Python files) submitted in order."""
    run = sched.track_run("r" * 64, total)
    with anyio.fail_after(10):
        jobs = [
            await sched.submit(p, f"x = {i}\n", language="python", run_id=run.run_id)
            for i, p in enumerate(paths)
        ]
    return run, jobs
