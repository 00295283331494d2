"""A run settles only once every spot check it will get is counted, re-checks included.

When a provider fails its first check, every other result it gave in the open runs is checked
too; those are found in the store by a task of their own. Before, the check that failed ended
(its run's pending count reaching 0) before that task had counted them, so the map could be
written with the liar's other results still in it: seen under a CPU hog in
tests/test_spot_checks.py, where a liar's result overturned 0.16 s before the run finished was
still in repo_map.json.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from pylon.daemon.buyer.spot_check_policy import SpotCheckPolicy
from pylon.daemon.buyer.spot_checks import SpotChecks
from pylon.schemas.telemetry import JobTelemetry

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class SlowStore:
    """Finds a provider's other results only when `found` is set."""

    asked: anyio.Event = field(default_factory=anyio.Event)
    found: anyio.Event = field(default_factory=anyio.Event)

    async def standings(self) -> dict[str, tuple[int, int]]:
        return {}

    def put_standing(self, provider: str, passed: int, failed: int) -> None:
        pass

    async def completed_jobs_of(self, provider: str, run_ids: set[str]) -> list[JobTelemetry]:
        self.asked.set()
        await self.found.wait()
        return []


def buyer_with(store: SlowStore) -> Any:
    entries: dict[str, Any] = {}
    return SimpleNamespace(
        config=SimpleNamespace(distrusted="exclude"),
        store=store,
        scheduler=SimpleNamespace(runs={"run": object()}),
        registry=SimpleNamespace(
            entry=lambda pk: entries.setdefault(pk, SimpleNamespace(checks=(0, 0), banned=False))
        ),
    )


async def test_a_run_does_not_settle_while_a_failed_providers_rechecks_are_being_found() -> None:
    store = SlowStore()
    checks = SpotChecks(buyer_with(store), SpotCheckPolicy(0.05, distrust_after=2, rng=random.Random(0)))
    settled = anyio.Event()

    async def settle() -> None:
        await checks.settle("run")
        settled.set()

    async with anyio.create_task_group() as tg:
        await checks.start(tg)
        checks._record("liar", False)  # its first failed check: its other results are to be re-checked
        tg.start_soon(settle)
        with anyio.fail_after(10):
            await store.asked.wait()  # the re-check task is looking them up
        await anyio.wait_all_tasks_blocked()
        assert not settled.is_set()  # the run waits for them

        store.found.set()
        with anyio.fail_after(10):
            await settled.wait()  # none found: the run settles
