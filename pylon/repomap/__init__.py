"""Repo map: snapshot a repository, fan per-file results back into a map, an overview and an index.

The coordinator (buyer daemon) calls, in order: `snapshot_repo` (or `take_snapshot`),
`read_file` per file it dispatches, then `build_artifacts` with the accepted results;
`pylon map query` calls `query`. `map_locally` does the whole thing in one process.
"""

from pylon.repomap.aggregate import build_artifacts, load_repo_map
from pylon.repomap.local import map_locally
from pylon.repomap.search_index import SearchIndexError, query
from pylon.repomap.snapshot import (
    Snapshot,
    SnapshotError,
    SnapshotFile,
    clone,
    is_url,
    read_file,
    snapshot_repo,
    take_snapshot,
)

__all__ = [
    "SearchIndexError",
    "Snapshot",
    "SnapshotError",
    "SnapshotFile",
    "build_artifacts",
    "clone",
    "is_url",
    "load_repo_map",
    "map_locally",
    "query",
    "read_file",
    "snapshot_repo",
    "take_snapshot",
]
