"""The buyer's durable record of every job (DESIGN §4), in SQLite through aiosqlite.

Rows are written behind the hot path in batches (`flush`), so a burst of results costs one
transaction, not one fsync each. `pylon stats --replay` rebuilds the same rows from the relay
into a fresh file with the same code.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import msgspec

from pylon.logs import get_logger
from pylon.schemas.errors import ErrorCode
from pylon.schemas.telemetry import JobState, JobTelemetry

log = get_logger("pylon.telemetry")

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


# A statement that fails with one of these fails every time: drop it (counted), keep the rest.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    OverflowError,
    TypeError,
    ValueError,
)


@dataclass
class BatchOutcome:
    done: int  # statements [0, done) are settled: committed, or dropped as bad
    bad: list[tuple[int, str, Exception]] = field(default_factory=list)
    error: Exception | None = None  # an operational error that stopped at `done`: retry later


async def commit_isolated(
    db: aiosqlite.Connection, stmts: list[tuple[str, tuple[Any, ...]]], *, fast_many: int = 0
) -> BatchOutcome:
    """Commit `stmts` as one transaction; if that fails, one by one, so one bad row costs one row.

    The first `fast_many` statements share one SQL text and go through executemany on the fast
    path. A statement refused for good (a duplicate key, an unbindable value) is reported in
    `bad`; an operational error (locked, disk full) stops the batch there for the next flush.
    """
    try:
        if fast_many:
            await db.executemany(stmts[0][0], [p for _, p in stmts[:fast_many]])
        for sql, params in stmts[fast_many:]:
            await db.execute(sql, params)
        await db.commit()
        return BatchOutcome(done=len(stmts))
    except (sqlite3.Error, *PERMANENT_ERRORS):
        await db.rollback()
    out = BatchOutcome(done=0)
    for i, (sql, params) in enumerate(stmts):
        try:
            await db.execute(sql, params)
            await db.commit()
        except PERMANENT_ERRORS as exc:
            await db.rollback()
            out.bad.append((i, sql, exc))
        except sqlite3.Error as exc:
            await db.rollback()
            out.error = exc
            return out
        out.done = i + 1
    return out


class TelemetryDB:
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self._dirty: dict[str, JobTelemetry] = {}
        self._side: list[tuple[str, tuple[Any, ...]]] = []
        # One batch at a time: interleaved batches on one connection would share a transaction,
        # and a crash between them could keep a job's row but lose its result.
        self._flush_lock = anyio.Lock()
        self._gen = 0
        self._dirty_gen: dict[str, int] = {}
        self.bad_rows = 0  # rows refused by SQLite (constraint, type): dropped, logged, counted
        self.flush_errors = 0  # flushes that hit an operational error and kept their batch

    @classmethod
    async def open(cls, path: Path) -> TelemetryDB:
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.executescript(SCHEMA)
        await db.commit()
        return cls(db, path)

    def put(self, t: JobTelemetry) -> None:
        # The buyer mutates a job's telemetry in place and puts it again: the generation, not
        # the object, says whether a put came after the rows a flush is writing.
        self._gen += 1
        self._dirty[t.job_id] = t
        self._dirty_gen[t.job_id] = self._gen

    def write(self, sql: str, params: tuple[Any, ...]) -> None:
        """A side-table write that rides in the next batch."""
        self._side.append((sql, params))

    async def flush(self) -> int:
        async with self._flush_lock:
            return await self._flush()

    async def _flush(self) -> int:
        if not self._dirty and not self._side:
            return 0
        # The batch stays where it is until it is committed: a failed transaction loses nothing,
        # and puts made while this flush awaits the disk are not mistaken for flushed ones.
        taken = dict(self._dirty)
        gens = dict(self._dirty_gen)
        side = list(self._side)
        rows = [row_of(t) for t in taken.values()]
        stmts = [(UPSERT, r) for r in rows] + side
        outcome = await commit_isolated(self.db, stmts, fast_many=len(rows))
        done = outcome.done
        for job_id in list(taken)[: min(done, len(taken))]:
            if self._dirty_gen.get(job_id) == gens[job_id]:  # not put again while we wrote
                del self._dirty[job_id]
                del self._dirty_gen[job_id]
        side_done = max(0, done - len(taken))
        del self._side[:side_done]
        if outcome.bad:
            self.bad_rows += len(outcome.bad)
            for _, sql, exc in outcome.bad:
                log.error("telemetry_row_dropped", sql=sql[:60], error=f"{type(exc).__name__}: {exc}"[:200])
        if outcome.error is not None:
            self.flush_errors += 1
            log.warning("telemetry_flush_deferred", error=str(outcome.error)[:200], pending=len(stmts) - done)
        return min(done, len(rows))

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
