"""Following a map run after `pylon map` lost its buyer mid-run.

The buyer may crash or be restarted by its service manager while a map runs; started again it
resumes the run from SQLite and the relay and writes the artifacts itself. The CLI then only
has to wait for it to come back and watch the run to its end, instead of leaving the person
with a dead command and a run finishing unseen.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pylon.repomap.aggregate import INDEX_NAME, OVERVIEW_NAME, REPO_MAP_NAME
from pylon.repomap.llm_map import REPO_MAP_MD_NAME
from pylon.rpc.client import DaemonNotRunning, RpcError, call_sync
from pylon.schemas import rpc

POLL_S = 0.5
# How long the buyer may be back without knowing the run (it died before recording it).
UNKNOWN_RUN_GRACE_S = 15.0


class RunLost(Exception):
    """The run cannot be followed to its end; the message says why and what to do."""


def follow_run(
    sock: Path,
    run_id: str,
    *,
    timeout: float,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Wait (at most `timeout` s) for the buyer at `sock` to be back and for run `run_id` to
    finish; return the run's summary as `pylon map --json` prints it."""
    deadline = time.monotonic() + timeout
    back_without_run: float | None = None
    while time.monotonic() < deadline:
        try:
            runs = call_sync(sock, rpc.RunsReq(), timeout=10)["runs"]
        except (DaemonNotRunning, RpcError, TimeoutError, OSError):
            back_without_run = None
            sleep(POLL_S)
            continue
        run = next((r for r in runs if r["run_id"] == run_id), None)
        if run is None:
            back_without_run = back_without_run or time.monotonic()
            if time.monotonic() - back_without_run > UNKNOWN_RUN_GRACE_S:
                raise RunLost(
                    f"the buyer is back but does not know run {run_id[:16]} (it stopped before "
                    "recording it); map the repo again"
                )
        else:
            if on_progress is not None:
                on_progress({k: run[k] for k in ("run_id", "files", "completed", "failed")})
            if run["finished"] is not None:
                return summary_of(sock, run)
        sleep(POLL_S)
    raise RunLost(
        f"run {run_id[:16]} did not finish within {timeout:g}s of losing the buyer; "
        "it goes on in the buyer: watch it with `pylon-tui buyer`"
    )


def summary_of(sock: Path, run: dict[str, Any]) -> dict[str, Any]:
    """A finished run's summary, rebuilt from the buyer's telemetry and the artifacts on disk."""
    jobs = call_sync(sock, rpc.JobListReq(run_id=run["run_id"], limit=1_000_000), timeout=60)["jobs"]
    providers = {j["provider_pubkey"] for j in jobs if j["state"] == "completed" and j["provider_pubkey"]}
    out = Path(run["out_dir"]) if run.get("out_dir") else None
    artifacts: dict[str, str] = {}
    skipped: dict[str, int] = {}
    if out is not None:
        names = (
            ("repo_map", REPO_MAP_NAME),
            ("repo_map_md", REPO_MAP_MD_NAME),
            ("overview", OVERVIEW_NAME),
            ("index", INDEX_NAME),
        )
        for key, name in names:
            if (out / name).exists():
                artifacts[key] = str(out / name)
        try:
            skipped = dict(json.loads((out / REPO_MAP_NAME).read_text()).get("skipped") or {})
        except (OSError, ValueError):
            pass
    return {
        "run_id": run["run_id"],
        "files": run["files"],
        "completed": run["completed"],
        "failed": run["failed"],
        "providers": len(providers),
        # From the run's start to its end, the buyer's downtime included.
        "wall_s": round(run["finished"] - run["started"], 3),
        "artifacts": artifacts,
        "skipped": skipped,
        "resumed": True,
    }
