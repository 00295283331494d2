"""Shared helpers for the fault, churn and adversarial tests (tests/test_faults_*.py,
tests/test_adversarial_*.py) and bench/soak.py: a generated repo, bounded waits on a
running LocalMarket, and read-only looks into the daemons' SQLite files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from pylon.schemas import kinds, rpc

from pylon.keys import load_or_create_keys
from pylon.localmarket.launcher import LocalMarket, pylon_argv
from pylon.nostr.event import NostrEvent
from pylon.nostr.filters import Filter
from pylon.nostr.relay_client import RelayPool
from pylon.rpc.client import DaemonNotRunning, RpcError

T = TypeVar("T")
TERMINAL = ("completed", "failed", "cancelled")


def make_repo(root: Path, n: int) -> Path:
    """n small Python modules, each with a class, two functions and an import of its neighbour."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"mod_{i:03d}.py").write_text(
            f'"""Module {i}."""\n\nimport os\nfrom mod_{(i + 1) % n:03d} import helper_{(i + 1) % n}\n\n\n'
            f"class Thing{i}:\n    def run(self) -> int:\n        return {i}\n\n\n"
            f"def helper_{i}(x: int) -> int:\n    return x + {i}\n\n\n"
            f"def main_{i}() -> str:\n    return os.getcwd()\n"
        )
    return root


def wait_for(what: str, fn: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T:
    """Poll `fn` until it returns something truthy; TimeoutError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (DaemonNotRunning, RpcError, OSError, TimeoutError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout}s (last: {last!r})"[:2000])


def node_pubkey(m: LocalMarket, name: str) -> str:
    """The node's key as the daemon made it (PYLON_HOME/nodes/NAME/nostr.key)."""
    path = m.home / "nodes" / name / "nostr.key"
    assert path.exists(), f"{name} has not made its key yet"
    return load_or_create_keys(path).pubkey


def buyer_pubkey(m: LocalMarket) -> str:
    return load_or_create_keys(m.home / "buyer" / "nostr.key").pubkey


def jobs(m: LocalMarket, run_id: str | None = None) -> list[dict[str, Any]]:
    return m.call("buyer", rpc.JobListReq(run_id=run_id, limit=100_000))["jobs"]


def db_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read-only query of a daemon's SQLite file (WAL: safe beside the writer)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def integrity_ok(path: Path) -> bool:
    rows = db_rows(path, "PRAGMA integrity_check")
    return rows == [("ok",)]


# An attempt the buyer closed itself because the job went elsewhere: another attempt's result
# won, or the job was moved from a busy node's queue to an idle one. Not the node's failure.
SUPERSEDED = "superseded"


def attempts(m: LocalMarket) -> list[tuple[str, str, str | None, str | None, str | None]]:
    """(request_id, job_id, node, outcome, error) for every attempt the buyer made."""
    return db_rows(
        m.home / "buyer" / "telemetry.db",
        "SELECT request_id, job_id, node, outcome, error FROM attempts ORDER BY issued",
    )


def relay_query(url: str, filters: list[Filter], timeout: float = 20) -> list[NostrEvent]:
    async def go() -> list[NostrEvent]:
        pool = RelayPool([url])
        async with anyio.create_task_group() as tg:
            await pool.start(tg, wait_s=10)
            evs = await pool.query(filters, timeout=timeout)
            tg.cancel_scope.cancel()
        return evs

    return anyio.run(go)


def accepted_results_per_job(m: LocalMarket) -> Counter[str]:
    """How many results the buyer stored per job (the table keys on job_id, so also check telemetry)."""
    rows = db_rows(m.home / "buyer" / "telemetry.db", "SELECT job_id FROM results")
    return Counter(r[0] for r in rows)


def payments_per_job(m: LocalMarket) -> Counter[str]:
    """Distinct payments per job, from the 9321 nutzaps on the relay.

    A nutzap names the request its node answered, which for a re-issued job is a later
    attempt's request: attempts map each back to the job. A nutzap the relay did not
    acknowledge in time is published again with the same proofs; that is one payment, so
    payments are told apart by their proofs' secrets, not by event."""
    to_job = {req: job for req, job, *_ in attempts(m)}
    evs = relay_query(m.relay_url, [Filter(kinds=[kinds.NUTZAP])])
    sets: dict[str, set[frozenset[str]]] = {}
    for ev in evs:
        job = next(
            (to_job.get(t[1], t[1]) for t in ev.tags if len(t) >= 4 and t[0] == "e" and t[3] == "job"), None
        )
        if job is None:
            continue
        secrets = frozenset(
            json.loads(t[1]).get("secret", t[1]) for t in ev.tags if len(t) > 1 and t[0] == "proof"
        )
        sets.setdefault(job, set()).add(secrets)
    return Counter({job: len(s) for job, s in sets.items()})


class BackgroundCli:
    """A `pylon ...` command running in its own process while the test does other things."""

    def __init__(self, m: LocalMarket, *args: str) -> None:
        self.proc = subprocess.Popen(
            pylon_argv(*args), env=m.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.out = ""
        self.err = ""
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        self.out, self.err = self.proc.communicate()

    def wait(self, timeout: float) -> int:
        self._t.join(timeout)
        if self._t.is_alive():
            self.proc.kill()
            self._t.join(5)
            raise TimeoutError(f"command still running after {timeout}s; stderr: {self.err[-2000:]}")
        return self.proc.returncode
