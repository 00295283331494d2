"""The buyer's durable record of every job (DESIGN §4), in SQLite through aiosqlite.

Rows are written behind the hot path in batches (`flush`), so a burst of results costs one
transaction, not one fsync each. `pylon stats --replay` rebuilds the same rows from the relay
into a fresh file with the same code.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import msgspec

from pylon.schemas.errors import ErrorCode
from pylon.schemas.telemetry import JobState, JobTelemetry

FIELDS = [f for f in JobTelemetry.__struct_fields__]

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    {", ".join(f"{f}" for f in FIELDS if f != "job_id")}
);
CREATE INDEX IF NOT EXISTS jobs_run ON jobs(run_id);
CREATE INDEX IF NOT EXISTS jobs_provider ON jobs(provider_pubkey);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS attempts (
    request_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, node TEXT, issued REAL NOT NULL,
    outcome TEXT, error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_job ON attempts(job_id);
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT PRIMARY KEY, result_id TEXT NOT NULL, provider TEXT NOT NULL, content TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS inputs (
    job_id TEXT PRIMARY KEY, path TEXT NOT NULL, language TEXT NOT NULL, text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, repo TEXT NOT NULL, root TEXT NOT NULL, files INTEGER NOT NULL,
    started REAL NOT NULL, finished REAL, out_dir TEXT, snapshot TEXT, state TEXT NOT NULL DEFAULT 'running'
);
CREATE TABLE IF NOT EXISTS payments (
    job_id TEXT PRIMARY KEY, payment_id TEXT NOT NULL, provider TEXT NOT NULL, amount_msats INTEGER NOT NULL,
    paid REAL NOT NULL, proofs TEXT, state TEXT NOT NULL DEFAULT 'sent'
);
CREATE TABLE IF NOT EXISTS receipts (
    receipt_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, payment_id TEXT, provider TEXT NOT NULL,
    amount_msats INTEGER NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Failed attempts of a provider, less the last attempt of a job that failed for good (that
# one counts as the job's failure).
FAILURES_BY_ATTEMPT_SQL = (
    "SELECT a.error, count(*) FROM attempts a JOIN jobs j ON a.job_id = j.job_id "
    "WHERE a.node = ? AND a.outcome = 'failed' AND NOT (j.state = 'failed' AND j.provider_pubkey = ? "
    "AND a.request_id = (SELECT max(request_id) FROM attempts WHERE job_id = j.job_id AND node = ?)) "
    "GROUP BY a.error"
)

_placeholders = ",".join("?" for _ in FIELDS)
_update = ",".join(f"{f}=excluded.{f}" for f in FIELDS if f != "job_id")
UPSERT = (
    f"INSERT INTO jobs ({','.join(FIELDS)}) VALUES ({_placeholders}) "
    f"ON CONFLICT(job_id) DO UPDATE SET {_update}"
)


def row_of(t: JobTelemetry) -> tuple[Any, ...]:
    out = []
    for f in FIELDS:
        v = getattr(t, f)
        if isinstance(v, bool):
            v = int(v)
        elif isinstance(v, (JobState, ErrorCode)):
            v = v.value
        out.append(v)
    return tuple(out)


def telemetry_of(row: sqlite3.Row | tuple[Any, ...]) -> JobTelemetry:
    data = dict(zip(FIELDS, row, strict=True))
    data["is_paid"] = bool(data["is_paid"])
    return msgspec.convert(data, JobTelemetry)


class TelemetryDB:
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self._dirty: dict[str, JobTelemetry] = {}
        self._side: list[tuple[str, tuple[Any, ...]]] = []
        # One batch at a time: interleaved batches on one connection would share a transaction,
        # and a crash between them could keep a job's row but lose its result.
        self._flush_lock = anyio.Lock()

    @classmethod
    async def open(cls, path: Path) -> TelemetryDB:
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.executescript(SCHEMA)
        await db.commit()
        return cls(db, path)

    def put(self, t: JobTelemetry) -> None:
        self._dirty[t.job_id] = t

    def write(self, sql: str, params: tuple[Any, ...]) -> None:
        """A side-table write that rides in the next batch."""
        self._side.append((sql, params))

    async def flush(self) -> int:
        async with self._flush_lock:
            return await self._flush()

    async def _flush(self) -> int:
        if not self._dirty and not self._side:
            return 0
        rows = [row_of(t) for t in self._dirty.values()]
        side = self._side
        self._dirty = {}
        self._side = []
        try:
            if rows:
                await self.db.executemany(UPSERT, rows)
            for sql, params in side:
                await self.db.execute(sql, params)
            await self.db.commit()
        except sqlite3.Error:
            await self.db.rollback()
            raise
        return len(rows)

    async def all_jobs(self, run_id: str | None = None) -> list[JobTelemetry]:
        await self.flush()
        sql = f"SELECT {','.join(FIELDS)} FROM jobs"
        params: tuple[Any, ...] = ()
        if run_id:
            sql += " WHERE run_id = ?"
            params = (run_id,)
        sql += " ORDER BY submitted"
        async with self.db.execute(sql, params) as cur:
            return [telemetry_of(r) for r in await cur.fetchall()]

    async def job(self, job_id: str) -> JobTelemetry | None:
        if job_id in self._dirty:
            return self._dirty[job_id]
        async with self.db.execute(f"SELECT {','.join(FIELDS)} FROM jobs WHERE job_id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return telemetry_of(row) if row else None

    async def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        await self.flush()
        async with self.db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def integrity_ok(self) -> bool:
        rows = await self.fetch("PRAGMA integrity_check")
        return bool(rows) and rows[0][0] == "ok"

    async def close(self) -> None:
        await self.flush()
        await self.db.close()
