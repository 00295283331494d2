"""The buyer's store: its durable record of every job (DESIGN §4), in SQLite through aiosqlite.

This module owns every SQL statement of the buyer's schema; the scheduler, the coordinator,
the payer and `pylon stats --replay` call its methods and never write SQL of their own.
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

from pylon.logs import get_logger
from pylon.sqlite_batch import commit_isolated

log = get_logger("pylon.buyer.store")

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
CREATE TABLE IF NOT EXISTS checks (
    check_job_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, run_id TEXT, subject TEXT NOT NULL,
    checker TEXT, verdict TEXT NOT NULL, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS checks_job ON checks(job_id);
CREATE TABLE IF NOT EXISTS check_outcomes (
    job_id TEXT PRIMARY KEY, run_id TEXT, path TEXT NOT NULL, outcome TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS standing (
    provider TEXT PRIMARY KEY, passed INTEGER NOT NULL, failed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS result_cache (
    sha256 TEXT NOT NULL, path TEXT NOT NULL, language TEXT NOT NULL, executor TEXT NOT NULL,
    executor_version TEXT NOT NULL, model TEXT NOT NULL, content BLOB NOT NULL, provider TEXT NOT NULL,
    result_id TEXT NOT NULL, stored REAL NOT NULL,
    PRIMARY KEY (sha256, path, language, executor, executor_version)
);
"""

# Failed attempts of a provider, less the last attempt of a job that failed for good (that
# one counts as the job's failure).
_FAILURES_BY_ATTEMPT = (
    "SELECT a.error, count(*) FROM attempts a JOIN jobs j ON a.job_id = j.job_id "
    "WHERE a.node = ? AND a.outcome = 'failed' AND NOT (j.state = 'failed' AND j.provider_pubkey = ? "
    "AND a.request_id = (SELECT max(request_id) FROM attempts WHERE job_id = j.job_id AND node = ?)) "
    "GROUP BY a.error"
)

_ATTEMPT_INSERT = "INSERT OR REPLACE INTO attempts VALUES (?,?,?,?,?,?)"
_placeholders = ",".join("?" for _ in FIELDS)
_update = ",".join(f"{f}=excluded.{f}" for f in FIELDS if f != "job_id")
UPSERT = (
    f"INSERT INTO jobs ({','.join(FIELDS)}) VALUES ({_placeholders}) "
    f"ON CONFLICT(job_id) DO UPDATE SET {_update}"
)


PRIVATE_RUN_PREFIX = "private_run:"


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


class BuyerStore:
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._conn = db
        self.path = path
        self._dirty: dict[str, JobTelemetry] = {}
        self._side: list[tuple[str, tuple[Any, ...]]] = []
        self._bulk: list[list[tuple[Any, ...]]] = []
        # One batch at a time: interleaved batches on one connection would share a transaction,
        # and a crash between them could keep a job's row but lose its result.
        self._flush_lock = anyio.Lock()
        self._gen = 0
        self._dirty_gen: dict[str, int] = {}
        self.bad_rows = 0  # rows refused by SQLite (constraint, type): dropped, logged, counted
        self.flush_errors = 0  # flushes that hit an operational error and kept their batch

    @classmethod
    async def open(cls, path: Path) -> BuyerStore:
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.executescript(SCHEMA)
        await db.commit()
        return cls(db, path)

    def put(self, t: JobTelemetry) -> None:
        # The scheduler mutates a job's telemetry in place and puts it again: the generation,
        # not the object, says whether a put came after the rows a flush is writing.
        self._gen += 1
        self._dirty[t.job_id] = t
        self._dirty_gen[t.job_id] = self._gen

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        """A side-table write that rides in the next batch."""
        self._side.append((sql, params))

    async def flush(self) -> int:
        async with self._flush_lock:
            return await self._flush()

    async def _flush(self) -> int:
        if not self._dirty and not self._side and not self._bulk:
            return 0
        # The batch stays where it is until it is settled: a failed transaction loses nothing
        # (pylon.sqlite_batch isolates a bad row), and puts made while this flush awaits the
        # disk are not mistaken for flushed ones.
        taken = list(self._dirty)
        gens = dict(self._dirty_gen)
        rows = [row_of(self._dirty[j]) for j in taken]
        bulk, side = list(self._bulk), list(self._side)
        groups: list[tuple[str, list[tuple[Any, ...]]]] = [(UPSERT, rows)]
        groups += [(_ATTEMPT_INSERT, attempt_rows) for attempt_rows in bulk]
        groups += [(sql, [params]) for sql, params in side]
        outcome = await commit_isolated(self._conn, groups)
        done = outcome.done
        for job_id in taken[: min(done, len(taken))]:
            if self._dirty_gen.get(job_id) == gens[job_id]:  # not put again while we wrote
                del self._dirty[job_id]
                del self._dirty_gen[job_id]
        done -= len(taken)
        settled_bulk = 0
        for attempt_rows in bulk:
            if done < len(attempt_rows):
                if done > 0:  # part of this group is in: keep only the rest for next time
                    self._bulk[settled_bulk] = attempt_rows[done:]
                done = 0
                break
            done -= len(attempt_rows)
            settled_bulk += 1
        del self._bulk[:settled_bulk]
        del self._side[: max(0, done)]
        if outcome.bad:
            self.bad_rows += len(outcome.bad)
            for _, sql, exc in outcome.bad:
                log.error("telemetry_row_dropped", sql=sql[:60], error=f"{type(exc).__name__}: {exc}"[:200])
        if outcome.error is not None:
            self.flush_errors += 1
            log.warning("telemetry_flush_deferred", error=str(outcome.error)[:200])
        return min(outcome.done, len(rows))

    async def all_jobs(self, run_id: str | None = None) -> list[JobTelemetry]:
        await self.flush()
        sql = f"SELECT {','.join(FIELDS)} FROM jobs"
        params: tuple[Any, ...] = ()
        if run_id:
            sql += " WHERE run_id = ?"
            params = (run_id,)
        sql += " ORDER BY submitted"
        async with self._conn.execute(sql, params) as cur:
            return [telemetry_of(r) for r in await cur.fetchall()]

    async def job(self, job_id: str) -> JobTelemetry | None:
        if job_id in self._dirty:
            return self._dirty[job_id]
        async with self._conn.execute(
            f"SELECT {','.join(FIELDS)} FROM jobs WHERE job_id = ?", (job_id,)
        ) as cur:
            row = await cur.fetchone()
        return telemetry_of(row) if row else None

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        await self.flush()
        async with self._conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    # --- jobs, inputs, attempts, results (the scheduler) ---------------------------------------

    async def state_counts(self) -> dict[str, int]:
        return {state: n for state, n in await self._fetch("SELECT state, count(*) FROM jobs GROUP BY state")}

    async def running_run_count(self) -> int:
        rows = await self._fetch("SELECT count(*) FROM runs WHERE state = 'running'")
        return int(rows[0][0])

    def put_input(self, job_id: str, path: str, language: str, text: str) -> None:
        self._write("INSERT OR REPLACE INTO inputs VALUES (?,?,?,?)", (job_id, path, language, text))

    async def input_text(self, job_id: str) -> str | None:
        rows = await self._fetch("SELECT text FROM inputs WHERE job_id = ?", (job_id,))
        return rows[0][0] if rows else None

    async def forget_job(self, job_id: str) -> None:
        """Drop a job's row now (a resumed run sends the file again from its snapshot)."""
        await self.flush()
        async with self._flush_lock:
            await self._conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
            await self._conn.commit()

    def open_attempt(self, request_id: str, job_id: str, node: str | None, issued: float) -> None:
        self._write(
            "INSERT OR REPLACE INTO attempts VALUES (?,?,?,?,?,?)",
            (request_id, job_id, node, issued, None, None),
        )

    def close_attempt(self, request_id: str, error: str | None) -> None:
        """`error` None: the attempt completed; else it failed with that code."""
        self._write(
            "UPDATE attempts SET outcome = ?, error = ? WHERE request_id = ?",
            ("completed" if error is None else "failed", error, request_id),
        )

    async def attempts_of(self, job_id: str) -> list[tuple[str, str | None, float, str | None]]:
        """(request_id, node, issued, outcome) of each attempt, oldest first."""
        rows = await self._fetch(
            "SELECT request_id, node, issued, outcome FROM attempts WHERE job_id = ? ORDER BY issued",
            (job_id,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def completed_request_id(self, job_id: str, node: str) -> str | None:
        """The request id of `node`'s completed attempt at `job_id` (the one its result answers)."""
        rows = await self._fetch(
            "SELECT request_id FROM attempts WHERE job_id = ? AND node = ? AND outcome = 'completed'",
            (job_id, node),
        )
        return rows[-1][0] if rows else None

    def insert_attempts(self, rows: list[tuple[Any, ...]]) -> None:
        """Many attempt rows at once (replay): (request_id, job_id, node, issued, outcome, error)."""
        self._bulk.append(rows)

    async def failures_by_attempt(self, provider: str) -> dict[str, int]:
        rows = await self._fetch(_FAILURES_BY_ATTEMPT, (provider, provider, provider))
        return {str(r[0]): int(r[1]) for r in rows}

    def put_result(self, job_id: str, result_id: str, provider: str, content: str) -> None:
        self._write("INSERT OR REPLACE INTO results VALUES (?,?,?,?)", (job_id, result_id, provider, content))

    async def result_row(self, job_id: str) -> tuple[str, str, str] | None:
        """(result event id, provider, decoded content) of a job's accepted result."""
        rows = await self._fetch(
            "SELECT result_id, provider, content FROM results WHERE job_id = ?", (job_id,)
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    async def result_content(self, job_id: str) -> str | None:
        rows = await self._fetch("SELECT content FROM results WHERE job_id = ?", (job_id,))
        return rows[0][0] if rows else None

    # --- spot checks ------------------------------------------------------------------------

    def put_check(
        self,
        *,
        check_job_id: str,
        job_id: str,
        run_id: str | None,
        subject: str,
        checker: str | None,
        verdict: str,
        at: float,
    ) -> None:
        """One spot check of `job_id` (whose result `subject` gave) by the job `check_job_id`."""
        self._write(
            "INSERT OR REPLACE INTO checks VALUES (?,?,?,?,?,?,?)",
            (check_job_id, job_id, run_id, subject, checker, verdict, at),
        )

    def put_check_outcome(
        self, *, job_id: str, run_id: str | None, path: str, outcome: str, at: float
    ) -> None:
        """How a disagreement over `job_id`'s result ended: upheld, overturned or undecided."""
        self._write(
            "INSERT OR REPLACE INTO check_outcomes VALUES (?,?,?,?,?)", (job_id, run_id, path, outcome, at)
        )

    async def run_disputes(self, run_id: str) -> tuple[int, list[str]]:
        """(results overturned by a vote, paths whose disagreement no vote settled) in a run."""
        rows = await self._fetch(
            "SELECT outcome, path FROM check_outcomes WHERE run_id = ? AND outcome IN "
            "('overturned', 'undecided') ORDER BY path",
            (run_id,),
        )
        overturned = sum(1 for outcome, _ in rows if outcome == "overturned")
        return overturned, [str(path) for outcome, path in rows if outcome == "undecided"]

    def put_standing(self, provider: str, passed: int, failed: int) -> None:
        self._write("INSERT OR REPLACE INTO standing VALUES (?,?,?)", (provider, passed, failed))

    async def standings(self) -> dict[str, tuple[int, int]]:
        rows = await self._fetch("SELECT provider, passed, failed FROM standing")
        return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}

    async def checks_of(self, job_id: str) -> list[tuple[str, str, str | None, str]]:
        """(check job id, subject, checker, verdict) of each check of a job, oldest first."""
        rows = await self._fetch(
            "SELECT check_job_id, subject, checker, verdict FROM checks WHERE job_id = ? ORDER BY at",
            (job_id,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def run_check_totals(self, run_id: str) -> tuple[int, int, int, int, int]:
        """(files checked, agreed on, with a disagreement, check jobs, msats their results cost)."""
        rows = await self._fetch(
            "SELECT count(DISTINCT CASE WHEN c.verdict IN ('agreed', 'disagreed') THEN c.job_id END), "
            "count(DISTINCT CASE WHEN c.verdict = 'disagreed' THEN c.job_id END), "
            "count(*), coalesce(sum(CASE WHEN j.state = 'completed' THEN j.amount_msats END), 0) "
            "FROM checks c LEFT JOIN jobs j ON j.job_id = c.check_job_id WHERE c.run_id = ?",
            (run_id,),
        )
        checked, disagreed, jobs, cost = (int(x or 0) for x in rows[0])
        # A file is agreed on when no check of it disagreed (a liar checking it may have).
        return checked, checked - disagreed, disagreed, jobs, cost

    async def check_totals(self) -> tuple[int, int, int]:
        """(checkable completed jobs, jobs checked, jobs with a disagreement) over all runs."""
        rows = await self._fetch(
            "SELECT (SELECT count(*) FROM jobs WHERE state = 'completed' AND run_id IS NOT NULL), "
            "count(DISTINCT CASE WHEN verdict IN ('agreed', 'disagreed') THEN job_id END), "
            "count(DISTINCT CASE WHEN verdict = 'disagreed' THEN job_id END) "
            "FROM checks"
        )
        r = rows[0]
        return int(r[0] or 0), int(r[1] or 0), int(r[2] or 0)

    async def completed_jobs_of(self, provider: str, run_ids: set[str]) -> list[JobTelemetry]:
        """A provider's completed jobs in these runs (to re-check them once it failed a check)."""
        return [
            t
            for t in await self.all_jobs()
            if t.provider_pubkey == provider and t.run_id in run_ids and t.state == JobState.COMPLETED
        ]

    # --- runs (the coordinator) ------------------------------------------------------------

    def insert_run(
        self, *, run_id: str, repo: str, root: str, files: int, out_dir: str, snapshot: str, started: float
    ) -> None:
        self._write(
            "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?)",
            (run_id, repo, root, files, started, None, out_dir, snapshot, "running"),
        )

    def finish_run(self, run_id: str, finished: float) -> None:
        self._write("UPDATE runs SET finished = ?, state = ? WHERE run_id = ?", (finished, "done", run_id))

    # --- asks (pylon.daemon.ask_coordinator): a run row in state 'ask', which no resume picks up

    def insert_ask_run(self, *, run_id: str, question: str, root: str, snapshot: str, started: float) -> None:
        self._write(
            "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?)",
            (run_id, f"ask: {question[:120]}", root, 0, started, None, None, snapshot, "ask"),
        )

    def finish_ask_run(self, run_id: str, *, sub_calls: int, finished: float, out_dir: str | None) -> None:
        self._write(
            "UPDATE runs SET files = ?, finished = ?, out_dir = coalesce(?, out_dir) WHERE run_id = ?",
            (sub_calls, finished, out_dir, run_id),
        )

    async def run_rows(self) -> list[tuple[Any, ...]]:
        """(run_id, repo, files, started, finished, out_dir, completed, failed) per run, oldest first."""
        return await self._fetch(
            "SELECT r.run_id, r.repo, r.files, r.started, r.finished, r.out_dir, "
            "sum(j.state = 'completed'), sum(j.state = 'failed') "
            "FROM runs r LEFT JOIN jobs j ON j.run_id = r.run_id "
            "GROUP BY r.run_id ORDER BY r.started"
        )

    async def running_run_progress(self) -> list[tuple[str, int, int, int]]:
        """(run_id, files, completed, failed-or-cancelled) of each run still running."""
        rows = await self._fetch(
            "SELECT r.run_id, r.files, sum(j.state = 'completed'), sum(j.state IN ('failed','cancelled')) "
            "FROM runs r LEFT JOIN jobs j ON j.run_id = r.run_id WHERE r.state = 'running' GROUP BY r.run_id"
        )
        return [(r[0], int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows]

    async def running_runs(self) -> list[tuple[str, str, str, str]]:
        """(run_id, repo, root, out_dir) of each run still running."""
        rows = await self._fetch("SELECT run_id, repo, root, out_dir FROM runs WHERE state = 'running'")
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def run_paths(self, run_id: str) -> set[str]:
        return {r[0] for r in await self._fetch("SELECT path FROM jobs WHERE run_id = ?", (run_id,))}

    async def run_outcomes(
        self, run_id: str
    ) -> list[tuple[str, str, str | None, str | None, str | None, str | None]]:
        """(path, state, error, result content, provider, result_id) of each job of the run."""
        rows = await self._fetch(
            "SELECT j.path, j.state, j.error, r.content, r.provider, r.result_id FROM jobs j "
            "LEFT JOIN results r ON r.job_id = j.job_id WHERE j.run_id = ?",
            (run_id,),
        )
        return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    # --- the result cache (daemon/result_cache.py) ----------------------------------------

    async def cached_results(self, shas: list[str]) -> list[tuple[Any, ...]]:
        """(sha256, path, language, executor, executor_version, content, provider, result_id) of
        the cached results of those contents."""
        rows: list[tuple[Any, ...]] = []
        for i in range(0, len(shas), 500):  # SQLite caps the number of bound parameters
            chunk = shas[i : i + 500]
            rows += await self._fetch(
                "SELECT sha256, path, language, executor, executor_version, content, provider, result_id "
                f"FROM result_cache WHERE sha256 IN ({','.join('?' * len(chunk))})",
                tuple(chunk),
            )
        return rows

    def cache_results(self, rows: list[tuple[Any, ...]], keep: int) -> None:
        """Rows in the column order of the table; the oldest past `keep` rows go."""
        for row in rows:
            self._write("INSERT OR REPLACE INTO result_cache VALUES (?,?,?,?,?,?,?,?,?,?)", row)
        self._write(
            "DELETE FROM result_cache WHERE rowid IN (SELECT rowid FROM result_cache "
            "ORDER BY stored DESC LIMIT -1 OFFSET ?)",
            (keep,),
        )

    # --- payments and receipts (the payer) -------------------------------------------------

    async def reconcile_paid(self) -> None:
        """The payments table is the truth: a crash between it and the jobs row is repaired here."""
        await self.flush()
        async with self._flush_lock:
            await self._conn.execute(
                "UPDATE jobs SET is_paid = 1, "
                "paid = (SELECT p.paid FROM payments p WHERE p.job_id = jobs.job_id), "
                "payment_event_id = (SELECT p.payment_id FROM payments p WHERE p.job_id = jobs.job_id) "
                "WHERE is_paid = 0 AND job_id IN "
                "(SELECT job_id FROM payments WHERE state IN ('sent', 'redeemed'))"
            )
            await self._conn.commit()

    async def payment_of(self, job_id: str) -> tuple[str, str, str | None, int, str] | None:
        """(payment_id, state, proofs json, amount_msats, provider) of the job's payment, if any."""
        rows = await self._fetch(
            "SELECT payment_id, state, proofs, amount_msats, provider FROM payments WHERE job_id = ?",
            (job_id,),
        )
        return (rows[0][0], rows[0][1], rows[0][2], rows[0][3], rows[0][4]) if rows else None

    async def payment_by_id(self, payment_id: str) -> tuple[str, str, str] | None:
        """(job_id, provider, state) of the payment published as `payment_id`."""
        rows = await self._fetch(
            "SELECT job_id, provider, state FROM payments WHERE payment_id = ?", (payment_id,)
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def insert_payment(
        self, *, job_id: str, provider: str, amount_msats: int, paid: float, proofs: str
    ) -> None:
        """Proofs made, nutzap not yet published (state `created`)."""
        self._write(
            "INSERT INTO payments (job_id, payment_id, provider, amount_msats, paid, proofs, state) "
            "VALUES (?,?,?,?,?,?,?)",
            (job_id, "", provider, amount_msats, paid, proofs, "created"),
        )

    def payment_sent(self, job_id: str, payment_id: str, at: float) -> None:
        self._write(
            "UPDATE payments SET payment_id = ?, state = 'sent', paid = ? WHERE job_id = ?",
            (payment_id, at, job_id),
        )

    def set_payment_state(self, job_id: str, state: str) -> None:
        self._write("UPDATE payments SET state = ? WHERE job_id = ?", (state, job_id))

    async def unsettled_proofs(self) -> list[tuple[str, str]]:
        """(job_id, proofs json) of every payment not redeemed nor refunded."""
        rows = await self._fetch(
            "SELECT job_id, proofs FROM payments WHERE state IN ('created', 'sent') AND proofs IS NOT NULL"
        )
        return [(r[0], r[1]) for r in rows]

    def put_receipt(
        self,
        *,
        receipt_id: str,
        job_id: str,
        payment_id: str,
        provider: str,
        amount_msats: int,
        created_at: int,
    ) -> None:
        self._write(
            "INSERT OR IGNORE INTO receipts VALUES (?,?,?,?,?,?)",
            (receipt_id, job_id, payment_id, provider, amount_msats, created_at),
        )

    async def receipts(self, job_id: str | None, provider: str | None) -> list[tuple[Any, ...]]:
        """(receipt_id, job_id, payment_id, provider, amount_msats, created_at), oldest first."""
        sql = "SELECT receipt_id, job_id, payment_id, provider, amount_msats, created_at FROM receipts"
        where, params = [], []
        if job_id:
            where.append("job_id = ?")
            params.append(job_id)
        if provider:
            where.append("provider = ?")
            params.append(provider)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return await self._fetch(sql + " ORDER BY created_at", tuple(params))

    # --- private (NIP-44) runs: pylon.daemon.private_runs ---------------------------------

    async def private_runs(self) -> set[str]:
        rows = await self._fetch("SELECT key FROM meta WHERE key LIKE ?", (PRIVATE_RUN_PREFIX + "%",))
        return {k[len(PRIVATE_RUN_PREFIX) :] for (k,) in rows}

    def mark_private_run(self, run_id: str) -> None:
        self._write("INSERT OR REPLACE INTO meta VALUES (?,?)", (PRIVATE_RUN_PREFIX + run_id, "1"))

    async def integrity_ok(self) -> bool:
        rows = await self._fetch("PRAGMA integrity_check")
        return bool(rows) and rows[0][0] == "ok"

    async def close(self) -> None:
        await self.flush()
        await self._conn.close()
