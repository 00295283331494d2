"""Structs of a repo-map run: the snapshot it maps, the `repo_map.json` it writes, search hits.

`RepoMap` is the `repo_map.json` contract of DESIGN §5; keys beyond the contract (lines, rank,
signatures, the resolved dependency edges) are additions a reader may ignore.
"""

from __future__ import annotations

import msgspec


class SnapshotFile(msgspec.Struct):
    path: str  # repo-relative, posix separators
    size: int
    sha256: str
    language: str | None


class Snapshot(msgspec.Struct):
    root: str  # absolute local directory the files were read from
    repo: str  # the repository as the user gave it (a path or a URL)
    commit: str  # HEAD of the work tree, "" outside git or before the first commit
    files: list[SnapshotFile]
    skipped: dict[str, int]  # reason -> number of files skipped for it
    snapshot_sha256: str  # sha256 over the sorted "path\0sha256\n" lines of `files`
    # reason -> the skipped paths (at most 500 a reason; a vendored directory outside git is
    # named once, with a trailing "/")
    skipped_files: dict[str, list[str]] = {}


class MapSymbol(msgspec.Struct):
    name: str
    kind: str
    line: int
    signature: str = ""
    parent: str = ""


class MapFileEntry(msgspec.Struct):
    language: str
    summary: str
    symbols: list[MapSymbol]
    imports: list[str]
    provider: str  # pubkey of the node whose result was accepted ("local" for a no-swarm map)
    result_id: str  # id of the accepted kind-6931 result event
    lines: int = 0
    rank: float = 0.0  # PageRank over the import/reference graph; the ranks of all files sum to 1
    depends_on: list[str] = []  # repo files this one imports or references
    used_by: list[str] = []  # repo files that import or reference this one
    executor: str = ""
    model: str = ""
    sha256: str = ""


class RepoMap(msgspec.Struct):
    run_id: str
    root: str
    files: dict[str, MapFileEntry]
    symbols: dict[str, list[str]]  # symbol name -> paths defining it
    repo: str = ""
    commit: str = ""
    snapshot_sha256: str = ""
    failed: dict[str, str] = {}  # path -> error code
    skipped: dict[str, int] = {}  # reason -> count
    skipped_files: dict[str, list[str]] = {}  # reason -> paths (Snapshot.skipped_files)
    # Files whose result a spot check disagreed with and no majority settled: their entry is the
    # first node's answer, which nobody could confirm (pylon.daemon.buyer.spot_checks).
    disputed: list[str] = []


class HitSymbol(msgspec.Struct):
    name: str
    kind: str
    line: int


class Hit(msgspec.Struct):
    """One result of `pylon map query`, best first."""

    path: str
    score: float  # higher is better (negated BM25)
    language: str = ""
    summary: str = ""
    snippet: str = ""
    symbols: list[HitSymbol] = []  # symbols of this file whose names match the query
