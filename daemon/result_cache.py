"""Incremental repo maps: accepted per-file results, kept by content hash and executor version.

A file whose bytes, path and language are the same as in an earlier run, mapped by the same
executor at the same version (FileResult.executor_version: the deterministic extractor's rules
and grammar versions), gets the same result: the coordinator reuses it instead of sending a
job, so a re-run of the same commit sends nothing and a run after a one-file edit sends one
job. Results without a version (a model's summaries) are never reused. The
reused entry keeps the provider and the result event id it was first accepted from, so the
provenance trail of every file in the map still leads to a signed result on the relay.

The table (`result_cache`) lives in the buyer's store with the rest of its SQL; the rules of
what is reused are here.
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
    from pylon.daemon.buyer.store import BuyerStore

log = get_logger("pylon.result_cache")


def current_versions() -> set[tuple[str, str]]:
    """(executor, executor_version) pairs whose cached results this buyer reuses: the
    deterministic extractor as this installation has it (the nodes it starts run the same)."""
    return {("deterministic", deterministic_version())}


MAX_ROWS = 200_000  # oldest entries go past this, so the table cannot grow without bound

_decoder = msgspec.json.Decoder(FileResult)
_encoder = msgspec.json.Encoder()

Cached = dict[str, tuple[FileResult, str, str]]  # path -> (result, provider, result_id)


class ResultCache:
    def __init__(self, store: BuyerStore) -> None:
        self.db = store

    async def lookup(
        self, files: Iterable[SnapshotFile], versions: set[tuple[str, str]] | None = None
    ) -> Cached:
        """The cached results for those of `files` that have one at one of `versions`."""
        versions = current_versions() if versions is None else versions
        wanted = {(f.sha256, f.path, f.language or "text") for f in files}
        if not wanted:
            return {}
        rows = await self.db.cached_results(sorted({sha for sha, _, _ in wanted}))
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
        """Remember the accepted results of this run's files; returns how many were kept."""
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
        self.db.cache_results(rows, keep=MAX_ROWS)
        await self.db.flush()
        log.info("result_cache_stored", files=len(rows))
        return len(rows)
