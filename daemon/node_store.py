"""A node's durable memory: its counters and recent jobs survive a restart."""

from __future__ import annotations

import time
from pathlib import Path

import aiosqlite
import anyio
from pylon.schemas.rpc import NodeJob

from pylon.logs import get_logger
from pylon.sqlite_batch import commit_isolated

log = get_logger("pylon.node_store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, buyer TEXT NOT NULL, path TEXT NOT NULL, state TEXT NOT NULL,
    received REAL NOT NULL, started REAL, finished REAL, error TEXT, paid_msats INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_received ON jobs(received);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class NodeStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self._dirty: dict[str, NodeJob] = {}
        self._flush_lock = anyio.Lock()  # batches must not interleave on one connection
        self._gen = 0
        self._dirty_gen: dict[str, int] = {}
        self._became_dirty: anyio.Event | None = None
        self.bad_rows = 0

    @classmethod
    async def open(cls, path: Path) -> NodeStore:
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.executescript(SCHEMA)
        await db.commit()
        return cls(db)

    async def counters(self) -> dict[str, int]:
        out = {"completed": 0, "failed": 0}
        async with self.db.execute("SELECT state, count(*) FROM jobs GROUP BY state") as cur:
            async for state, n in cur:
                if state == "completed":
                    out["completed"] = n
                elif state in ("failed", "aborted"):
                    out["failed"] += n
        return out

    async def failures(self) -> dict[str, int]:
        out: dict[str, int] = {}
        async with self.db.execute(
            "SELECT error, count(*) FROM jobs WHERE state IN ('failed','aborted') GROUP BY error"
        ) as cur:
            async for err, n in cur:
                out[err or "unknown"] = n
        return out

    async def earned(self) -> int:
        async with self.db.execute("SELECT coalesce(sum(paid_msats), 0) FROM jobs") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def known(self, job_id: str) -> bool:
        if job_id in self._dirty:
            return True
        async with self.db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)) as cur:
            return await cur.fetchone() is not None

    async def finished_since(self, since: float) -> list[str]:
        """Jobs received since `since` (our clock) that reached an end state."""
        async with self.db.execute(
            "SELECT job_id FROM jobs WHERE received >= ? AND state IN ('completed','failed','aborted')",
            (since,),
        ) as cur:
            return [r[0] for r in await cur.fetchall()]

    def record(self, job: NodeJob) -> None:
        """Write-behind: flushed in batches by flush() so the hot path never waits on disk."""
        self._gen += 1
        self._dirty[job.job_id] = job
        self._dirty_gen[job.job_id] = self._gen
        if self._became_dirty is not None:
            self._became_dirty.set()

    async def wait_dirty(self) -> None:
        """Until a record waits to be written: an idle node's flush loop sleeps instead of waking
        four times a second (each wake-up of twenty idle nodes on one host is CPU the busy ones lack)."""
        while not self._dirty:
            self._became_dirty = anyio.Event()
            await self._became_dirty.wait()
        self._became_dirty = None

    async def add_payment(self, job_id: str, msats: int) -> None:
        await self.flush()
        await self.db.execute("UPDATE jobs SET paid_msats = paid_msats + ? WHERE job_id = ?", (msats, job_id))
        await self.db.commit()

    async def flush(self) -> None:
        async with self._flush_lock:
            await self._flush()

    async def _flush(self) -> None:
        if not self._dirty:
            return
        taken = dict(self._dirty)  # kept until committed: a failed write loses nothing
        gens = dict(self._dirty_gen)
        stmts = [
            (
                "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(job_id) DO UPDATE SET "
                "state=excluded.state, started=excluded.started, finished=excluded.finished, "
                "error=excluded.error",
                (
                    j.job_id,
                    j.buyer,
                    j.path,
                    j.state,
                    j.received,
                    j.started,
                    j.finished,
                    j.error,
                    j.paid_msats,
                ),
            )
            for j in taken.values()
        ]
        outcome = await commit_isolated(self.db, [(stmts[0][0], [p for _, p in stmts])])
        for job_id in list(taken)[: outcome.done]:
            if self._dirty_gen.get(job_id) == gens[job_id]:  # not recorded again while we wrote
                del self._dirty[job_id]
                del self._dirty_gen[job_id]
        self.bad_rows += len(outcome.bad)
        for _, _, exc in outcome.bad:
            log.error("node_row_dropped", error=f"{type(exc).__name__}: {exc}"[:200])
        if outcome.error is not None:
            log.warning("node_flush_deferred", error=str(outcome.error)[:200])

    async def recent(self, limit: int) -> list[NodeJob]:
        await self.flush()
        async with self.db.execute(
            "SELECT job_id, buyer, path, state, received, started, finished, error, paid_msats "
            "FROM jobs ORDER BY received DESC LIMIT ?",
            (limit,),
        ) as cur:
            rows = await cur.fetchall()
        return [
            NodeJob(
                job_id=r[0],
                buyer=r[1],
                path=r[2],
                state=r[3],
                received=r[4],
                started=r[5],
                finished=r[6],
                error=r[7],
                paid_msats=r[8],
            )
            for r in rows
        ]

    async def get_meta(self, key: str) -> str | None:
        async with self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        await self.db.commit()

    async def close(self) -> None:
        await self.flush()
        await self.db.close()


def now() -> float:
    return time.time()
