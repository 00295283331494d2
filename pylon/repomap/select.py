"""`pylon map --include/--exclude GLOB`: narrow a snapshot to the files a user asked for.

A glob is matched against the repo-relative path (`*` crosses `/`, as in fnmatch), and a glob
with no wildcard also names a directory: `--exclude tests` leaves out everything under tests/.
Files left out are counted as skipped for `excluded`, like every other file a run does not map.
"""

from __future__ import annotations

import fnmatch
import hashlib

from pylon.schemas.repomap import Snapshot


def matches(path: str, glob: str) -> bool:
    g = glob.strip().strip("/")
    if not g:
        return False
    return fnmatch.fnmatchcase(path, g) or fnmatch.fnmatchcase(path, g + "/*")


def select_files(snap: Snapshot, include: list[str], exclude: list[str]) -> Snapshot:
    if not include and not exclude:
        return snap
    kept = []
    excluded: list[str] = []
    for f in snap.files:
        wanted = not include or any(matches(f.path, g) for g in include)
        if not wanted or any(matches(f.path, g) for g in exclude):
            excluded.append(f.path)
        else:
            kept.append(f)
    digest = hashlib.sha256()
    for f in kept:
        digest.update(f"{f.path}\0{f.sha256}\n".encode())
    skipped = dict(snap.skipped)
    named = dict(snap.skipped_files)
    if excluded:
        skipped["excluded"] = skipped.get("excluded", 0) + len(excluded)
        named["excluded"] = excluded[:500]
    return Snapshot(
        root=snap.root,
        repo=snap.repo,
        commit=snap.commit,
        files=kept,
        skipped=dict(sorted(skipped.items())),
        snapshot_sha256=digest.hexdigest(),
        skipped_files=dict(sorted(named.items())),
    )
