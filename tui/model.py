"""What the TUI knows about a daemon, kept apart from any widget.

Pushes and poll replies land here as plain dicts (the RPC client decodes frames to builtins).
Applying one is a few dict writes plus a note of what changed; widgets read the notes on
their own schedule (`take_*`) and redraw only the rows that changed. That split is what keeps
the screen smooth when a buyer streams thousands of job updates: the socket can deliver as
fast as it likes, the screen pays for at most a few redraws a second.

No textual import here: the model is tested, and benchmarked, on its own.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape

TERMINAL = frozenset({"completed", "failed", "cancelled"})
RATE_BUCKET_S = 5.0  # the jobs/min sparkline's resolution
RATE_BUCKETS = 48  # four minutes of history
MAX_LOG_BACKLOG = 500

Clock = Callable[[], float]


class KeySet(dict[str, None]):
    """A set that remembers insertion order, so new rows appear in the order the daemon sent them."""

    def add(self, key: str) -> None:
        self[key] = None

    def __ior__(self, other: Iterable[str]) -> KeySet:  # type: ignore[override]
        for key in other:
            self[key] = None
        return self

    def __eq__(self, other: object) -> bool:
        if isinstance(other, set | frozenset):
            return set(self) == other
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]


@dataclass
class Changes:
    """What changed since the last look: keys of rows to redraw, and whether a panel must."""

    keys: KeySet = field(default_factory=KeySet)
    removed: set[str] = field(default_factory=set)
    all: bool = False  # redraw everything (first load, resync)

    def __bool__(self) -> bool:
        return self.all or bool(self.keys) or bool(self.removed)

    def take(self) -> Changes:
        out = Changes(self.keys, self.removed, self.all)
        self.keys, self.removed, self.all = KeySet(), set(), False
        return out


class _LogBuffer:
    """Lines for the log pane, waiting for the next screen refresh (bounded: a flood drops the oldest)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lines: deque[str] = deque(maxlen=MAX_LOG_BACKLOG)

    def add(self, text: str) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S', time.localtime(self.clock()))}  {text}")

    def take(self) -> list[str]:
        out = list(self.lines)
        self.lines.clear()
        return out


def esc(value: object) -> str:
    """Daemon data (node names, paths, error text) inside a log line: never read as markup."""
    return escape(str(value))


def short(pubkey: str | None, n: int = 8) -> str:
    if not pubkey:
        return "-"
    return pubkey[:n]


# --- the buyer -------------------------------------------------------------------------------


class BuyerModel:
    """The swarm as the buyer daemon reports it: status, nodes, jobs, runs, stats."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self.status: dict[str, Any] | None = None
        self.stats: dict[str, Any] | None = None
        self.nodes: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.run_jobs: dict[str, dict[str, None]] = {}  # run_id → its job ids, in arrival order
        self.node_changes = Changes()
        self.job_changes = Changes()
        self.run_changes = Changes()
        self.status_changed = False
        self.stats_changed = False
        self.runs_stale = False  # a run we have not seen the RunInfo of: poll RunsReq soon
        self.asks: dict[str, dict[str, Any]] = {}  # ask_id → its latest AskProgress (`pylon ask`)
        self.ask_changes = Changes()
        self.log = _LogBuffer(clock)
        self.rate_history: deque[float] = deque([0.0] * RATE_BUCKETS, maxlen=RATE_BUCKETS)
        self._bucket = int(clock() // RATE_BUCKET_S)
        self._bucket_count = 0
        self._completed_tick = 0  # completions since the last log line about them

    # --- names ------------------------------------------------------------------------------

    def node_name(self, pubkey: str | None) -> str:
        if not pubkey:
            return "-"
        node = self.nodes.get(pubkey)
        return node["name"] if node and node.get("name") else short(pubkey)

    # --- snapshots (replies to the initial calls and polls) ---------------------------------

    def set_status(self, status: dict[str, Any]) -> None:
        old = self.status
        self.status = status
        self.status_changed = True
        if old is not None and status.get("stopped") and not old.get("stopped"):
            self.log.add("[b red]buyer stopped[/]: all outstanding jobs cancelled, payments off")

    def set_stats(self, stats: dict[str, Any]) -> None:
        self.stats = stats
        self.stats_changed = True

    def set_nodes(self, nodes: Iterable[dict[str, Any]]) -> None:
        seen: set[str] = set()
        for n in nodes:
            pk = n["pubkey"]
            seen.add(pk)
            old = self.nodes.get(pk)
            if old != n:
                self.nodes[pk] = n
                self.node_changes.keys.add(pk)
                self._log_node_change(old, n)
        for pk in set(self.nodes) - seen:
            del self.nodes[pk]
            self.node_changes.removed.add(pk)

    def set_runs(self, runs: Iterable[dict[str, Any]]) -> None:
        for r in runs:
            rid = r["run_id"]
            old = self.runs.get(rid)
            merged = {**(old or {}), **r, "known": True}
            if old is None or not old.get("known"):  # first news of it (or only pushes so far)
                self.run_jobs.setdefault(rid, {})
                repo, files = esc(r.get("repo", "")), esc(r.get("files", "?"))
                self.log.add(f"run [b]{short(rid, 12)}[/] {repo}: {files} files")
            if old is not None and old.get("finished") is None and r.get("finished") is not None:
                self.log.add(
                    f"run [b]{short(rid, 12)}[/] finished: {esc(r.get('completed', 0))} completed, "
                    f"{esc(r.get('failed', 0))} failed"
                )
            if merged != old:
                self.runs[rid] = merged
                self.run_changes.keys.add(rid)
        self.runs_stale = False

    def set_jobs(self, jobs: Iterable[dict[str, Any]]) -> None:
        """A full job list (after connecting), merged without logging each job.

        The list is read from the daemon's database, which trails its pushes by a flush: a job
        we already saw finish keeps its final state.
        """
        for j in jobs:
            old = self.jobs.get(j["job_id"])
            if old is not None and old["state"] in TERMINAL and j["state"] not in TERMINAL:
                continue
            self.jobs[j["job_id"]] = {**(old or {}), **j}
            self._file_under_run(j)
        self.job_changes.all = True
        self.run_changes.all = True

    # --- pushes -----------------------------------------------------------------------------

    def apply(self, topic: str, data: Any) -> None:
        if topic == "jobs":
            self.apply_jobs(data)
        elif topic == "nodes":
            self.set_nodes(data)
        elif topic == "status":
            self.set_status(data)
        elif topic == "run":
            self.apply_run_progress(data)
        elif topic == "ask":
            self.apply_ask(data)

    def apply_ask(self, p: dict[str, Any]) -> None:
        aid = p["ask_id"]
        old = self.asks.get(aid)
        if old == p:
            return
        if old is None:
            self.log.add(f"ask [b]{short(aid, 12)}[/]: {esc(p.get('question', ''))[:80]}")
        elif p.get("done") and not old.get("done"):
            done = sum(1 for n in p.get("nodes", []) if n.get("status") == "completed")
            self.log.add(f"ask [b]{short(aid, 12)}[/] answered: {done} sub-calls completed")
        self.asks[aid] = p
        self.ask_changes.keys.add(aid)

    def apply_jobs(self, updates: Iterable[dict[str, Any]]) -> None:
        for u in updates:
            jid = u["job_id"]
            old = self.jobs.get(jid)
            if old is not None and old["state"] in TERMINAL and u.get("state") not in TERMINAL:
                continue  # a push queued before the job list we loaded: the list is newer
            job = {**old, **u} if old else dict(u)
            self.jobs[jid] = job
            self.job_changes.keys.add(jid)
            if old is None:
                self._file_under_run(job)
            prev = old["state"] if old else None
            state = job["state"]
            if state != prev:
                self._on_transition(job, prev)

    def apply_run_progress(self, p: dict[str, Any]) -> None:
        rid = p["run_id"]
        old = self.runs.get(rid)
        if old is None:
            self.runs[rid] = {"run_id": rid, "repo": "", "started": self.clock(), "finished": None, **p}
            self.run_jobs.setdefault(rid, {})
            self.runs_stale = True
            self.run_changes.keys.add(rid)
            return
        if any(old.get(k) != p[k] for k in ("files", "completed", "failed")):
            old.update(files=p["files"], completed=p["completed"], failed=p["failed"])
            self.run_changes.keys.add(rid)

    def _file_under_run(self, job: dict[str, Any]) -> None:
        rid = job.get("run_id")
        if not rid:
            return
        self.run_jobs.setdefault(rid, {})[job["job_id"]] = None
        self.run_changes.keys.add(rid)
        if rid not in self.runs:
            self.runs[rid] = {
                "run_id": rid,
                "repo": "",
                "files": 0,
                "completed": 0,
                "failed": 0,
                "started": self.clock(),
                "finished": None,
            }
            self.runs_stale = True

    def _on_transition(self, job: dict[str, Any], prev: str | None) -> None:
        state = job["state"]
        if job.get("run_id"):
            self.run_changes.keys.add(job["run_id"])
        if state == "completed":
            self._count_completion()
            self._completed_tick += 1
        elif state == "failed":
            what, why = esc(job.get("path") or short(job["job_id"])), esc(job.get("error") or "?")
            who = esc(self.node_name(job.get("provider_pubkey")))
            self.log.add(f"[red]job failed[/] {what}: {why} (provider {who})")
        elif state == "cancelled":
            self.log.add(f"[yellow]job cancelled[/] {esc(job.get('path') or short(job['job_id']))}")
        elif prev is not None and state == "assigned" and prev in ("assigned", "processing"):
            pass  # a re-issue shows up as attempts > 1 in the tables

    def _count_completion(self) -> None:
        self.roll_rate()
        self._bucket_count += 1

    def roll_rate(self) -> bool:
        """Close the sparkline buckets that ended; True when the history moved."""
        bucket = int(self.clock() // RATE_BUCKET_S)
        if bucket <= self._bucket:
            return False
        per_min = 60.0 / RATE_BUCKET_S
        self.rate_history.append(self._bucket_count * per_min)
        for _ in range(min(RATE_BUCKETS, bucket - self._bucket - 1)):
            self.rate_history.append(0.0)
        self._bucket = bucket
        self._bucket_count = 0
        return True

    def take_log(self) -> list[str]:
        if self._completed_tick:
            self.log.add(f"[green]+{self._completed_tick} completed[/]")
            self._completed_tick = 0
        return self.log.take()

    def _log_node_change(self, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        name = esc(new.get("name") or short(new["pubkey"]))
        if old is None:
            if new.get("online"):
                state = new.get("state")  # "online (online)" says nothing twice; paused says itself
                self.log.add(f"node [b]{name}[/] online" + (f" ({esc(state)})" if state != "online" else ""))
            return
        if old.get("online") != new.get("online"):
            self.log.add(
                f"node [b]{name}[/] {'back online' if new.get('online') else '[red]went offline[/]'}"
            )
        elif old.get("state") != new.get("state"):
            self.log.add(f"node [b]{name}[/] is {esc(new.get('state'))}")
        if old.get("banned") != new.get("banned"):
            self.log.add(f"node [b]{name}[/] {'[red]banned[/]' if new.get('banned') else 'unbanned'}")

    # --- views ------------------------------------------------------------------------------

    def run_counts(self, run_id: str) -> Counter[str]:
        return Counter(self.jobs[j]["state"] for j in self.run_jobs.get(run_id, ()) if j in self.jobs)

    def online_count(self) -> int:
        return sum(1 for n in self.nodes.values() if n.get("online"))

    def success_rate(self) -> float | None:
        if self.stats is not None:
            if not (self.stats.get("jobs_completed") or self.stats.get("jobs_failed")):
                return None  # nothing finished yet: no rate to speak of
            return float(self.stats.get("success_rate") or 0.0)
        done = sum(1 for j in self.jobs.values() if j["state"] in TERMINAL)
        if not done:
            return None
        return sum(1 for j in self.jobs.values() if j["state"] == "completed") / done


# --- a node ----------------------------------------------------------------------------------

ACTIVE_NODE_STATES = frozenset({"queued", "running"})


class NodeModel:
    """One provider node: its status, its recent jobs, its earnings."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self.status: dict[str, Any] | None = None
        self.jobs: dict[str, dict[str, Any]] = {}
        self.job_changes = Changes()
        self.status_changed = False
        self.wallet: dict[str, Any] | None = None
        self.wallet_note = "…"
        self.log = _LogBuffer(clock)

    def set_status(self, status: dict[str, Any]) -> None:
        old = self.status
        if old is not None and "earned_msats" in old and not status.get("earned_msats"):
            # node_state pushes leave earnings out (only a status call adds them up): keep the last figure
            status = {**status, "earned_msats": old["earned_msats"]}
        self.status = status
        self.status_changed = True
        if old is None:
            self.log.add(f"node [b]{esc(status.get('name'))}[/] is {esc(status.get('state'))}")
        elif old.get("state") != status.get("state"):
            self.log.add(f"state: {esc(old.get('state'))} → [b]{esc(status.get('state'))}[/]")

    def set_jobs(self, jobs: Iterable[dict[str, Any]]) -> None:
        """Recent jobs from the node's database, which trails its pushes by a flush: a finished
        job never goes back to queued or running."""
        for j in jobs:
            old = self.jobs.get(j["job_id"])
            if (
                old is not None
                and old["state"] not in ACTIVE_NODE_STATES
                and j["state"] in ACTIVE_NODE_STATES
            ):
                continue
            if old != j:
                self.jobs[j["job_id"]] = {**(old or {}), **j}
                self.job_changes.keys.add(j["job_id"])

    def set_wallet(self, wallet: dict[str, Any] | None, note: str = "") -> None:
        self.wallet = wallet
        self.wallet_note = note
        self.status_changed = True

    def apply(self, topic: str, data: Any) -> None:
        if topic == "node_state":
            self.set_status(data)
        elif topic == "job":
            self.apply_job(data)

    def apply_job(self, u: dict[str, Any]) -> None:
        now = self.clock()
        jid = u["job_id"]
        old = self.jobs.get(jid)
        if (
            old is not None
            and old["state"] not in ACTIVE_NODE_STATES
            and u.get("state") in ACTIVE_NODE_STATES
        ):
            return  # older news than what we already have
        job = (
            {**old, **u}
            if old
            else {"received": now, "started": None, "finished": None, "paid_msats": 0, **u}
        )
        state = job["state"]
        if state == "running" and not job.get("started"):
            job["started"] = now
        if state in ("completed", "failed", "aborted") and not job.get("finished"):
            job["finished"] = now
        self.jobs[jid] = job
        self.job_changes.keys.add(jid)
        if state == "failed":
            self.log.add(f"[red]job failed[/] {esc(job.get('path'))}: {esc(job.get('error') or '?')}")
        elif state == "queued" and old is None:
            self.log.add(f"job queued {esc(job.get('path'))} from {esc(short(job.get('buyer')))}")

    def active_jobs(self) -> list[dict[str, Any]]:
        return [j for j in self.jobs.values() if j["state"] in ACTIVE_NODE_STATES]

    def take_log(self) -> list[str]:
        return self.log.take()
