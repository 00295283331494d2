"""Issue 10 item 7: one bad SQLite write costs one row, not the batch, and never the buyer.

On the old code the batch was cleared before the transaction, so a duplicate key rolled back
(and lost) every other job's telemetry and payment rows, and the exception ended the flush
loop. These tests fail there: flush raises, and the good rows are gone.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pylon.daemon.node_store import NodeStore
from pylon.schemas.rpc import NodeJob
from pylon.schemas.telemetry import JobState, JobTelemetry

from pylon.stats.telemetry_db import TelemetryDB

pytestmark = pytest.mark.anyio

PAY = (
    "INSERT INTO payments (job_id, payment_id, provider, amount_msats, paid, proofs, state) "
    "VALUES (?,?,?,?,?,?,?)"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_duplicate_key_drops_one_row_and_keeps_the_batch(tmp_path: Path) -> None:
    db = await TelemetryDB.open(tmp_path / "buyer.db")
    try:
        db.put(JobTelemetry(job_id="a", state=JobState.COMPLETED))
        db.put(JobTelemetry(job_id="b", state=JobState.FAILED))
        db.write(PAY, ("a", "pa", "node", 2000, 1.0, "[]", "sent"))
        db.write(PAY, ("a", "pa2", "node", 2000, 1.0, "[]", "sent"))  # the duplicate key
        db.write(PAY, ("b", "pb", "node", 3000, 1.0, "[]", "sent"))
        await db.flush()  # does not raise: the flush loop keeps running
        assert db.bad_rows == 1
        assert {t.job_id for t in await db.all_jobs()} == {"a", "b"}
        pays = await db.fetch("SELECT job_id, payment_id FROM payments ORDER BY job_id")
        assert pays == [("a", "pa"), ("b", "pb")]
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
        db.write(PAY, ("a", "pa", "node", 2000, 1.0, "[]", "sent"))
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock: "database is locked"
        await db.db.execute("PRAGMA busy_timeout = 0")
        await db.flush()
        assert db.flush_errors == 1 and db.bad_rows == 0
        other.rollback()
        await db.flush()
        assert [t.job_id for t in await db.all_jobs()] == ["a"]
        assert await db.fetch("SELECT payment_id FROM payments") == [("pa",)]
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
        real = db.db.executemany

        async def racing(sql: str, rows: object) -> object:
            t.state = JobState.COMPLETED  # same object, new state, put mid-flush
            db.put(t)
            return await real(sql, rows)  # type: ignore[arg-type]

        db.db.executemany = racing  # type: ignore[method-assign]
        await db.flush()
        db.db.executemany = real  # type: ignore[method-assign]
        await db.flush()
        assert [j.state for j in await db.all_jobs()] == [JobState.COMPLETED]
    finally:
        await db.close()
