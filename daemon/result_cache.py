"""Incremental repo maps: accepted per-file results, kept by content hash and executor version.

A file whose bytes, path and language are the same as in an earlier run, mapped by the same
executor at the same version (FileResult.executor_version: the deterministic extractor's rules
and grammar versions), gets the same result: the coordinator reuses it instead of sending a
job, so a re-run of the same commit sends nothing and a run after a one-file edit sends one
job. Results without a version (a model's summaries) are never reused. The
reused entry keeps the provider and the result event id it was first accepted from, so the
provenance trail of every file in the map still leads to a signed result on the relay.

The table lives in the buyer's own database (telemetry.db) but belongs to this module alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import msgspec
from pylon.schemas.events import FileResult
from pylon.schemas.repomap import SnapshotFile

from pylon.executors.version import deterministic_version
from pylon.logs import get_logger

if TYPE_CHECKING:
    from pylon.stats.telemetry_db import TelemetryDB

log = get_logger("pylon.result_cache")


def current_versions() -> set[tuple[str, str]]:
    """(executor, executor_version) pairs whose cached results this buyer reuses: the
    deterministic extractor as this installation has it (the nodes it starts run the same)."""
    return {("deterministic", deterministic_version())}


MAX_ROWS = 200_000  # oldest entries go past this, so the table cannot grow without bound

SCHEMA = """
CREATE TABLE IF NOT EXISTS result_cache (
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    language TEXT NOT NULL,
    executor TEXT NOT NULL,
    executor_version TEXT NOT NULL,
    model TEXT NOT NULL,
    content BLOB NOT NULL,
    provider TEXT NOT NULL,
    result_id TEXT NOT NULL,
    stored REAL NOT NULL,
    PRIMARY KEY (sha256, path, language, executor, executor_version)
)
"""

_decoder = msgspec.json.Decoder(FileResult)
_encoder = msgspec.json.Encoder()

Cached = dict[str, tuple[FileResult, str, str]]  # path -> (result, provider, result_id)


class ResultCache:
    def __init__(self, db: TelemetryDB) -> None:
        self.db = db
        self._ready = False

    async def _ensure(self) -> None:
        if not self._ready:
            self.db.write(SCHEMA, ())
            await self.db.flush()
            self._ready = True

    async def lookup(
        self, files: Iterable[SnapshotFile], versions: set[tuple[str, str]] | None = None
    ) -> Cached:
        """The cached results for those of `files` that have one at one of `versions`."""
        versions = current_versions() if versions is None else versions
        await self._ensure()
        wanted = {(f.sha256, f.path, f.language or "text") for f in files}
        if not wanted:
            return {}
        shas = sorted({sha for sha, _, _ in wanted})
        rows = []
        for i in range(0, len(shas), 500):  # SQLite caps the number of bound parameters
            chunk = shas[i : i + 500]
            rows += await self.db.fetch(
                "SELECT sha256, path, language, executor, executor_version, content, provider, result_id "
                f"FROM result_cache WHERE sha256 IN ({','.join('?' * len(chunk))})",
                tuple(chunk),
            )
        out: Cached = {}
        for sha, path, language, executor, version, content, provider, result_id in rows:
            if (sha, path, language) not in wanted or (executor, version) not in versions:
                continue
            try:
                res = _decoder.decode(content)
            except msgspec.DecodeError:
                continue  # a damaged row is a miss, and the file is mapped again
            out[path] = (res, provider, result_id)
        return out

    async def store(
        self, files: Iterable[SnapshotFile], results: Mapping[str, tuple[FileResult, str, str]]
    ) -> int:
        """Remember the accepted results of this run's files; returns how many were new."""
        await self._ensure()
        now = time.time()
        rows = []
        for f in files:
            hit = results.get(f.path)
            if hit is None:
                continue
            res, provider, result_id = hit
            if res.input_sha256 != f.sha256 or not res.executor_version:
                continue  # of other bytes than the snapshot's, or of no known extractor: never reuse
            rows.append(
                (
                    f.sha256,
                    f.path,
                    f.language or "text",
                    res.executor,
                    res.executor_version,
                    res.model,
                    _encoder.encode(res),
                    provider,
                    result_id,
                    now,
                )
            )
        if not rows:
            return 0
        for row in rows:  # side-table writes: they commit in one batch with the buyer's own
            self.db.write("INSERT OR REPLACE INTO result_cache VALUES (?,?,?,?,?,?,?,?,?,?)", row)
        self.db.write(
            "DELETE FROM result_cache WHERE rowid IN (SELECT rowid FROM result_cache "
            "ORDER BY stored DESC LIMIT -1 OFFSET ?)",
            (MAX_ROWS,),
        )
        await self.db.flush()
        log.info("result_cache_stored", files=len(rows))
        return len(rows)
