"""The buyer's side of private (NIP-44) runs: which runs are private, and sealed requests.

A run is private for its whole life: its file jobs, their re-issues and its reduce job are
all sealed to the node they are assigned to. The set of private runs is kept in the buyer's
SQLite `meta` table (BuyerStore.private_runs) so a restarted buyer keeps re-issuing them sealed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pylon.nostr import fitting, private_jobs
from pylon.nostr.budget import Budget
from pylon.nostr.event import NostrEvent

if TYPE_CHECKING:
    from pylon.daemon.buyer.scheduler import ActiveJob, Scheduler


def mark(sched: Scheduler, run_id: str) -> None:
    """From now on (and after a restart: the store keeps it) the run's jobs are sealed."""
    sched.private_runs.add(run_id)
    sched.store.mark_private_run(run_id)


async def sealed_request(
    sched: Scheduler,
    *,
    node: str,
    path: str,
    language: str,
    text: str,
    sha256: str,
    size: int,
    run_id: str | None,
    tasks: Sequence[str],
    attempt: int = 1,
    retry_of: str | None = None,
    check_of: str | None = None,
) -> NostrEvent:
    """A request sealed to `node`; its chunk events (sealed too, fitted to the relays' limits)
    are published first. Raises PublishError when the relays take no fitting of them."""

    def build(budget: Budget) -> tuple[NostrEvent, list[NostrEvent]]:
        return private_jobs.build_request(
            sched.keys,
            sched.sealer,
            node=node,
            path=path,
            language=language,
            text=text,
            sha256=sha256,
            size=size,
            run_id=run_id,
            bid_msats=sched.config.bid_msats,
            tasks=tasks,
            attempt=attempt,
            retry_of=retry_of,
            check_of=check_of,
            pow_bits=sched.config.pow_bits,
            budget=budget,
        )

    return await fitting.publish_sealed_request(sched.pool, build)


async def reseal(sched: Scheduler, job: ActiveJob, node: str) -> NostrEvent:
    """The next attempt of a private job, sealed for its new node (chunks re-encrypted too)."""
    return await sealed_request(
        sched,
        node=node,
        path=job.tele.path,
        language=job.tele.language,
        text=job.text,
        sha256=job.sha256,
        size=job.size,
        run_id=job.tele.run_id,
        tasks=job.tasks,
        attempt=job.tele.attempts + 1,
        retry_of=job.tele.job_id,
        check_of=job.check_of,
    )
