"""The no-swarm baseline: map a repository in this one process (what `bench/repomap.py` compares to)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from pylon.logs import get_logger
from pylon.repomap.aggregate import build_artifacts
from pylon.repomap.snapshot import SnapshotError, read_file, take_snapshot
from pylon.schemas.errors import ErrorCode
from pylon.schemas.events import FileResult
from pylon.schemas.rpc import MapSummary

log = get_logger(__name__)

LOCAL_PROVIDER = "local"

Extract = Callable[[str, str, str | None], FileResult]


def map_locally(
    root: Path,
    out_dir: Path,
    extract: Extract,
    *,
    run_id: str | None = None,
    max_file_bytes: int = 1_048_576,
    max_files: int = 2000,
    narrative: str | None = None,
) -> dict[str, Any]:
    """Snapshot root, run extract(path, text, language) on every file, write the artifacts.

    Returns the `pylon map` summary ({"run_id", "files", "completed", "failed", "providers",
    "wall_s", "artifacts", "skipped"}). A file whose extract raises is recorded as failed
    (exec_error) and the map goes on.
    """
    started = time.monotonic()
    snap = take_snapshot(Path(root), max_file_bytes=max_file_bytes, max_files=max_files)
    run_id = run_id or "local-" + snap.snapshot_sha256[:16]
    results: dict[str, tuple[FileResult, str, str]] = {}
    failed: dict[str, str] = {}
    for f in snap.files:
        try:
            text = read_file(Path(snap.root), f.path, expected_sha256=f.sha256)
        except SnapshotError as exc:
            log.warning("file unreadable", path=f.path, error=str(exc))
            failed[f.path] = ErrorCode.BAD_INPUT.value
            continue
        try:
            results[f.path] = (extract(f.path, text, f.language), LOCAL_PROVIDER, "")
        except Exception as exc:  # one bad file must not sink the whole map
            log.warning("extract failed", path=f.path, error=repr(exc))
            failed[f.path] = ErrorCode.EXEC_ERROR.value
    artifacts = build_artifacts(
        Path(out_dir), run_id=run_id, snapshot=snap, results=results, failed=failed, narrative=narrative
    )
    summary = MapSummary(
        run_id=run_id,
        files=len(snap.files),
        completed=len(results),
        failed=len(failed),
        providers=1 if results else 0,
        wall_s=round(time.monotonic() - started, 3),
        artifacts=artifacts,
        skipped=snap.skipped,
    )
    return msgspec.to_builtins(summary)
