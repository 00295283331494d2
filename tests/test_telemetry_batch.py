"""Issue 10 item 7: one bad SQLite write costs one row, not the batch, and never the buyer.

On the old code the batch was cleared before the transaction, so a duplicate key rolled back
(and lost) every other job's telemetry and payment rows, and the exception ended the flush
loop. These tests fail there: flush raises, and the good rows are gone.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pylon.daemon.buyer.store import BuyerStore as TelemetryDB
from pylon.daemon.node_store import NodeStore
from pylon.schemas.rpc import NodeJob
from pylon.schemas.telemetry import JobState, JobTelemetry

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_duplicate_key_drops_one_row_and_keeps_the_batch(tmp_path: Path) -> None:
    db = await TelemetryDB.open(tmp_path / "buyer.db")
    try:
        db.put(JobTelemetry(job_id="a", state=JobState.COMPLETED))
        db.put(JobTelemetry(job_id="b", state=JobState.FAILED))
        db.insert_payment(job_id="a", provider="node", amount_msats=2000, paid=1.0, proofs="[1]")
        db.insert_payment(job_id="a", provider="node", amount_msats=2000, paid=1.0, proofs="[2]")  # dup key
        db.insert_payment(job_id="b", provider="node", amount_msats=3000, paid=1.0, proofs="[3]")
        await db.flush()  # does not raise: the flush loop keeps running
        assert db.bad_rows == 1
        assert {t.job_id for t in await db.all_jobs()} == {"a", "b"}
        assert [(await db.payment_of(j) or ())[2:4] for j in ("a", "b")] == [("[1]", 2000), ("[3]", 3000)]
        # Later writes still go through, and the file is sound.
        db.put(JobTelemetry(job_id="c"))
        assert {t.job_id for t in await db.all_jobs()} == {"a", "b", "c"}
        assert await db.integrity_ok()
    finally:
        await db.close()


async def test_an_operational_error_keeps_the_batch_for_the_next_flush(tmp_path: Path) -> None:
    path = tmp_path / "buyer.db"
    db = await TelemetryDB.open(path)
    other = sqlite3.connect(path, timeout=0)
    try:
        db.put(JobTelemetry(job_id="a"))
        db.insert_payment(job_id="a", provider="node", amount_msats=2000, paid=1.0, proofs="[1]")
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock: "database is locked"
        await db._conn.execute("PRAGMA busy_timeout = 0")
        await db.flush()
        assert db.flush_errors == 1 and db.bad_rows == 0
        other.rollback()
        await db.flush()
        assert [t.job_id for t in await db.all_jobs()] == ["a"]
        assert (await db.payment_of("a") or ())[2] == "[1]"
        assert await db.integrity_ok()
    finally:
        other.close()
        await db.close()


async def test_node_store_keeps_good_rows_when_one_is_unbindable(tmp_path: Path) -> None:
    store = await NodeStore.open(tmp_path / "node.db")
    try:
        store.record(NodeJob(job_id="ok", buyer="b", path="a.py", state="completed", received=1.0))
        store.record(
            NodeJob(job_id="bad", buyer="b", path="a.py", state="failed", received=1.0, paid_msats=2**70)
        )
        await store.flush()
        assert store.bad_rows == 1
        assert [j.job_id for j in await store.recent(10)] == ["ok"]
    finally:
        await store.close()


async def test_a_put_during_a_flush_is_not_lost(tmp_path: Path) -> None:
    """The buyer mutates a job's telemetry in place and puts it again while a flush awaits disk."""
    db = await TelemetryDB.open(tmp_path / "buyer.db")
    try:
        t = JobTelemetry(job_id="a", state=JobState.SUBMITTED)
        db.put(t)
        real = db._conn.executemany

        async def racing(sql: str, rows: object) -> object:
            t.state = JobState.COMPLETED  # same object, new state, put mid-flush
            db.put(t)
            return await real(sql, rows)  # type: ignore[arg-type]

        db._conn.executemany = racing  # type: ignore[method-assign]
        await db.flush()
        db._conn.executemany = real  # type: ignore[method-assign]
        await db.flush()
        assert [j.state for j in await db.all_jobs()] == [JobState.COMPLETED]
    finally:
        await db.close()
