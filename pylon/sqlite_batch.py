"""Commit a write-behind batch so that one bad row costs one row, never the batch or its daemon.

The buyer's and the node's SQLite writes ride in batches (one transaction per flush). One
statement SQLite refuses for good — a duplicate key, a value it cannot bind — used to roll back
and lose every other row of the batch, and its exception ended the flush loop. Here the batch
is committed whole when it can be; if not, row by row: a permanently bad row is dropped and
reported, an operational error (locked, disk full) stops there and the rest waits for the next
flush. The caller keeps what is not settled.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

Params = tuple[Any, ...]

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
    done: int  # rows [0, done) of the flattened batch are settled: committed, or dropped as bad
    bad: list[tuple[int, str, Exception]] = field(default_factory=list)
    error: Exception | None = None  # an operational error that stopped at `done`: retry later


async def commit_isolated(
    db: aiosqlite.Connection, groups: Sequence[tuple[str, Sequence[Params]]]
) -> BatchOutcome:
    """Commit every (sql, rows) group in one transaction (executemany each); else row by row."""
    total = sum(len(rows) for _, rows in groups)
    try:
        for sql, rows in groups:
            if rows:
                await db.executemany(sql, rows)
        await db.commit()
        return BatchOutcome(done=total)
    except (sqlite3.Error, *PERMANENT_ERRORS):
        await db.rollback()
    out = BatchOutcome(done=0)
    i = 0
    for sql, rows in groups:
        for params in rows:
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
            i += 1
            out.done = i
    return out
