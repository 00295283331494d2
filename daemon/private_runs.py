"""The buyer's side of private (NIP-44) runs: which runs are private, and sealed requests.

A run is private for its whole life: its file jobs, their re-issues and its reduce job are
all sealed to the node they are assigned to. The set of private runs is kept in the buyer's
SQLite `meta` table so a restarted buyer keeps re-issuing them sealed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pylon.nostr import private_jobs
from pylon.nostr.event import NostrEvent
from pylon.stats.telemetry_db import TelemetryDB

if TYPE_CHECKING:
    from pylon.daemon.buyer import ActiveJob, BuyerDaemon

_META_PREFIX = "private_run:"


async def load(db: TelemetryDB) -> set[str]:
    rows = await db.fetch("SELECT key FROM meta WHERE key LIKE ?", (_META_PREFIX + "%",))
    return {k[len(_META_PREFIX) :] for (k,) in rows}


def mark(buyer: BuyerDaemon, run_id: str) -> None:
    buyer.private_runs.add(run_id)
    assert buyer.db is not None
    buyer.db.write("INSERT OR REPLACE INTO meta VALUES (?,?)", (_META_PREFIX + run_id, "1"))


async def sealed_request(
    buyer: BuyerDaemon,
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
) -> NostrEvent:
    """A request sealed to `node`; its chunk events (sealed too) are published first."""
    req, chunks = private_jobs.build_request(
        buyer.keys,
        buyer.sealer,
        node=node,
        path=path,
        language=language,
        text=text,
        sha256=sha256,
        size=size,
        run_id=run_id,
        bid_msats=buyer.config.bid_msats,
        tasks=tasks,
        attempt=attempt,
        retry_of=retry_of,
        pow_bits=buyer.config.pow_bits,
    )
    for ch in chunks:
        await buyer.pool.publish(ch, wait_ok=10)
    return req


async def reseal(buyer: BuyerDaemon, job: ActiveJob, node: str) -> NostrEvent:
    """The next attempt of a private job, sealed for its new node (chunks re-encrypted too)."""
    return await sealed_request(
        buyer,
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
    )
