"""The buyer daemon (`pylon buyer up`): assign jobs, follow them, verify results, keep telemetry.

Each job is a file to map. The buyer picks the least-loaded live node, publishes a signed
5931 request `p`-tagged to it (inputs too big for one event go first as chunk events), then
follows the 7000 feedback and the 6931 result. A result counts only if it is signed by the
node that attempt was assigned to, its `x` tag matches its content and its payload decodes;
everything else is dropped and counted. An attempt with no pickup or no result in time is
re-issued to another node; the first valid result wins.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup
from pylon.daemon import private_runs
from pylon.daemon.config import BuyerConfig
from pylon.daemon.node_registry import NodeRegistry
from pylon.daemon.rpc_server import CallContext, RpcFailure, RpcServer
from pylon.schemas import kinds, rpc
from pylon.schemas.errors import ErrorCode
from pylon.schemas.events import DEFAULT_TASKS, FeedbackStatus, FileResult
from pylon.schemas.telemetry import TERMINAL_STATES, JobState, JobTelemetry

from pylon.executors.languages import detect_language
from pylon.home import buyer_dir, buyer_socket
from pylon.keys import load_or_create_keys
from pylon.logs import get_logger
from pylon.nostr import nip90, private_jobs
from pylon.nostr.event import InvalidEvent, NostrEvent
from pylon.nostr.filters import Filter
from pylon.nostr.relay_client import RelayPool
from pylon.stats.compute import apply_result, global_stats, provider_stats
from pylon.stats.telemetry_db import FAILURES_BY_ATTEMPT_SQL, TelemetryDB

log = get_logger("pylon.buyer")

SCAN_INTERVAL_S = 0.2
RESYNC_INTERVAL_S = 2.0
RESYNC_QUIET_S = 2.0
OUTAGE_HOLD_S = 60.0  # how long job clocks stop while no relay or no node is in sight
FLUSH_INTERVAL_S = 0.2
PUSH_INTERVAL_S = 0.5
NO_RETRY = frozenset({ErrorCode.BAD_INPUT, ErrorCode.TOO_LARGE, ErrorCode.CANCELLED})
_result_encoder = msgspec.json.Encoder()


class SubmitError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Attempt:
    request_id: str
    job_id: str
    node: str | None
    issued: float
    picked_up: bool = False
    closed: bool = False


@dataclass
class ActiveJob:
    tele: JobTelemetry
    text: str
    sha256: str
    size: int
    chunk_ids: list[str] = field(default_factory=list)
    tasks: tuple[str, ...] = DEFAULT_TASKS
    current: Attempt | None = None
    tried: set[str] = field(default_factory=set)
    deadline: float = 0.0
    private: bool = False  # NIP-44: every attempt sealed to its node (pylon.daemon.private_runs)
    done: anyio.Event = field(default_factory=anyio.Event)


class RunTracker:
    """Counts a run's subtasks as they finish; `done` fires when the last one does."""

    def __init__(self, run_id: str, total: int) -> None:
        self.run_id = run_id
        self.total = total
        self.completed = 0
        self.failed = 0
        self.done = anyio.Event()
        if total == 0:
            self.done.set()

    def finish(self, ok: bool) -> None:
        if ok:
            self.completed += 1
        else:
            self.failed += 1
        if self.completed + self.failed >= self.total:
            self.done.set()


class BuyerDaemon:
    def __init__(self, config: BuyerConfig) -> None:
        self.config = config
        self.dir = buyer_dir()
        self.keys = load_or_create_keys(self.dir / "nostr.key")
        self.pubkey = self.keys.pubkey
        self.sealer = private_jobs.Sealer(self.keys)
        self.private_runs: set[str] = set()
        self.pool = RelayPool(config.relays)
        self.registry = NodeRegistry(config.heartbeat_s, config.allow_nodes)
        self.active: dict[str, ActiveJob] = {}
        self.attempts: dict[str, Attempt] = {}
        self.runs: dict[str, RunTracker] = {}
        self.dropped: Counter[str] = Counter()
        self.completed = 0
        self.failed = 0
        self.stopped = False
        self.db: TelemetryDB | None = None
        self.rpc: RpcServer | None = None
        self._tg: TaskGroup | None = None
        self._job_pushes: list[dict[str, Any]] = []
        self.payments: Any = None  # the payer, wired in by pylon.daemon.buyer_payments
        self.coordinator: Any = None  # the repo-map coordinator
        self.narrator: Any = None  # the LLM reduce step for map overviews, when a model is in the swarm
        self.started_at = time.time()

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.db = await TelemetryDB.open(self.dir / "telemetry.db")
        await self._load_counters()
        self.private_runs = await private_runs.load(self.db)
        resumed_since = await self._resume_outstanding()
        self.rpc = RpcServer(
            buyer_socket(), daemon="buyer", name=self.config.name, pubkey=self.pubkey, handler=self.handle_rpc
        )
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await tg.start(self.rpc.serve)
                await self.pool.start(tg, wait_s=10)
                since = int(time.time()) - 3600
                await self.pool.subscribe(
                    [
                        Filter(kinds=[kinds.ANNOUNCE, kinds.NUTZAP_INFO], since=since - 86400 * 30),
                        Filter(kinds=[kinds.HEARTBEAT], since=since),
                    ],
                    self._on_swarm_event,
                    sub_id="swarm",
                )
                # After a crash, replay what the relay stored while we were down.
                since = min(int(time.time()) - 60, resumed_since or int(time.time()))
                await self.pool.subscribe(
                    [Filter(kinds=[kinds.JOB_FEEDBACK, kinds.JOB_RESULT], p=[self.pubkey], since=since)],
                    self._on_job_event,
                    sub_id="jobs",
                )
                tg.start_soon(self._scan_loop)
                tg.start_soon(self._resync_loop)
                tg.start_soon(self._flush_loop)
                tg.start_soon(self._push_loop)
                if self.payments is not None:
                    await self.payments.start(tg)
                if self.coordinator is not None and self.runs:
                    tg.start_soon(self.coordinator.finish_resumed_runs)
                log.info("buyer_started", pubkey=self.pubkey, relays=self.pool.urls)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self.db.close()

    async def _resume_outstanding(self) -> int | None:
        """Rebuild the jobs a previous run of this daemon left outstanding (crash or kill -9).

        Their inputs and attempts are in SQLite; results that arrived meanwhile are on the relay
        and come in through the subscription (its `since` is the returned time). Attempts whose
        deadline passed are re-issued by the scan loop as usual.
        """
        assert self.db is not None
        open_states = tuple(s.value for s in JobState if s not in TERMINAL_STATES)
        jobs = [t for t in await self.db.all_jobs() if t.state.value in open_states]
        running = await self.db.fetch("SELECT count(*) FROM runs WHERE state = 'running'")
        if not jobs and not running[0][0]:
            return None
        oldest = time.time()
        for t in jobs:
            rows = await self.db.fetch("SELECT text FROM inputs WHERE job_id = ?", (t.job_id,))
            if not rows:
                if t.run_id:  # the coordinator sends the file again from the snapshot
                    await self.db.db.execute("DELETE FROM jobs WHERE job_id = ?", (t.job_id,))
                    await self.db.db.commit()
                else:
                    t.state, t.error = JobState.FAILED, ErrorCode.BAD_INPUT
                    self.db.put(t)
                    log.warning("resume_lost_input", job_id=t.job_id, path=t.path)
                continue
            text = rows[0][0]
            job = ActiveJob(
                tele=t,
                text=text,
                sha256=nip90.sha256_hex(text.encode()),
                size=len(text.encode()),
                private=t.run_id in self.private_runs,
            )
            atts = await self.db.fetch(
                "SELECT request_id, node, issued, outcome FROM attempts WHERE job_id = ? ORDER BY issued",
                (t.job_id,),
            )
            for request_id, node, issued, outcome in atts:
                att = Attempt(
                    request_id=request_id,
                    job_id=t.job_id,
                    node=node,
                    issued=issued,
                    picked_up=t.state == JobState.PROCESSING,
                    closed=outcome is not None,
                )
                self.attempts[request_id] = att
                if node:
                    job.tried.add(node)
                if not att.closed:
                    job.current = att
                    if node:
                        self.registry.entry(node).assigned_now += 1
                oldest = min(oldest, issued)
            timeout = (
                self.config.result_timeout_s
                if t.state == JobState.PROCESSING
                else self.config.pickup_timeout_s
            )
            job.deadline = (job.current.issued if job.current else time.time()) + timeout
            self.active[t.job_id] = job
        runs = await self.db.fetch(
            "SELECT r.run_id, r.files, sum(j.state = 'completed'), sum(j.state IN ('failed','cancelled')) "
            "FROM runs r LEFT JOIN jobs j ON j.run_id = r.run_id WHERE r.state = 'running' GROUP BY r.run_id",
            (),
        )
        for run_id, files, done, failed in runs:
            tracker = RunTracker(run_id, files)
            tracker.completed, tracker.failed = int(done or 0), int(failed or 0)
            if tracker.completed + tracker.failed >= files:
                tracker.done.set()
            self.runs[run_id] = tracker
        log.info("buyer_resumed", jobs=len(self.active), runs=len(runs))
        return int(oldest) - 5

    async def _load_counters(self) -> None:
        assert self.db is not None
        rows = await self.db.fetch("SELECT state, count(*) FROM jobs GROUP BY state")
        for state, n in rows:
            if state == JobState.COMPLETED.value:
                self.completed = n
            elif state == JobState.FAILED.value:
                self.failed = n

    # --- submit & dispatch ------------------------------------------------------------------

    def validate_input(self, path: str, text: str) -> int:
        size = len(text.encode())
        if size > nip90.MAX_INPUT_BYTES:
            raise SubmitError(
                ErrorCode.TOO_LARGE, f"{path} is {size} bytes; files up to {nip90.MAX_INPUT_BYTES} map"
            )
        if "\x00" in text:
            raise SubmitError(ErrorCode.BAD_INPUT, f"{path} looks binary (NUL bytes)")
        return size

    async def submit(
        self,
        path: str,
        text: str,
        *,
        language: str | None = None,
        run_id: str | None = None,
        wait_node_s: float | None = None,
        node: str | None = None,
        tasks: tuple[str, ...] = DEFAULT_TASKS,
        private: bool = False,
    ) -> ActiveJob:
        """Assign one job to `node` (default: the least-loaded live node) and publish it;
        `private`: sealed to that node with NIP-44 (always targeted: see private_jobs)."""
        if self.stopped:
            raise SubmitError(ErrorCode.CANCELLED, "the buyer is stopped (S): no new jobs until it restarts")
        size = self.validate_input(path, text)
        outstanding = len(self.active)
        if outstanding >= self.config.max_outstanding:
            raise SubmitError(
                ErrorCode.RATE_LIMITED,
                f"{outstanding} jobs outstanding; the cap is {self.config.max_outstanding}",
            )
        lang = language or detect_language(path, text) or "text"
        if node is None:
            node = await self._wait_for_node(
                set(), self.config.pickup_timeout_s if wait_node_s is None else wait_node_s
            )
        if node is None:
            raise SubmitError(
                ErrorCode.PROVIDER_OFFLINE, "no provider node is online; start one with: pylon node up"
            )
        sha = nip90.sha256_hex(text.encode())
        chunk_ids: list[str] = []
        inline: str | None = text
        if size > nip90.INLINE_LIMIT and not private:
            _, chunks = nip90.build_chunks(self.keys, text)
            for ch in chunks:
                await self.pool.publish(ch, wait_ok=10)
            chunk_ids = [c.id for c in chunks]
            inline = None

        def sign_request() -> NostrEvent:
            return nip90.build_request(
                self.keys,
                path=path,
                language=lang,
                text=inline,
                sha256=sha,
                size=size,
                chunk_ids=chunk_ids,
                node=node,
                run_id=run_id,
                bid_msats=self.config.bid_msats,
                pow_bits=self.config.pow_bits,
                tasks=tasks,
            )

        if private:  # random nonces: a sealed request's id is always fresh
            req = await private_runs.sealed_request(
                self,
                node=node,
                path=path,
                language=lang,
                text=text,
                sha256=sha,
                size=size,
                run_id=run_id,
                tasks=tasks,
            )
        else:
            req = sign_request()
        while req.id in self.attempts:
            # The same file submitted twice within one millisecond signs to the same id: the
            # clock ticking over gives the second job an id of its own.
            await anyio.sleep(0.001)
            req = sign_request()
        now = time.time()
        # The request's own timestamp, so stats replayed from the relay come out identical.
        submitted = int(req.tag_value("submitted_ms") or now * 1000) / 1000
        tele = JobTelemetry(
            job_id=req.id,
            run_id=run_id,
            path=path,
            language=lang,
            state=JobState.ASSIGNED,
            buyer_pubkey=self.pubkey,
            provider_pubkey=node,
            submitted=submitted,
            attempts=1,
            bytes_in=size,
        )
        job = ActiveJob(
            tele=tele,
            text=text,
            sha256=sha,
            size=size,
            chunk_ids=chunk_ids,
            tasks=tuple(tasks),
            private=private,
        )
        self._issue(job, req, node, now)
        assert self.db is not None
        self.db.put(tele)
        self.db.write("INSERT OR REPLACE INTO inputs VALUES (?,?,?,?)", (req.id, path, lang, text))
        await self.pool.publish(req)
        self._note_job(tele)
        return job

    def _issue(self, job: ActiveJob, req: NostrEvent, node: str | None, now: float) -> None:
        att = Attempt(request_id=req.id, job_id=job.tele.job_id, node=node, issued=now)
        self.attempts[req.id] = att
        self.active[job.tele.job_id] = job
        job.current = att
        job.deadline = now + self.config.pickup_timeout_s
        if node:
            job.tried.add(node)
            self.registry.entry(node).assigned_now += 1
        assert self.db is not None
        self.db.write(
            "INSERT OR REPLACE INTO attempts VALUES (?,?,?,?,?,?)",
            (req.id, job.tele.job_id, node, now, None, None),
        )

    async def _wait_for_node(self, exclude: set[str], timeout: float) -> str | None:
        node = self.registry.pick(exclude)
        if node is not None or timeout <= 0:
            return node
        with anyio.move_on_after(timeout):
            while node is None:
                await anyio.sleep(0.05)
                node = self.registry.pick(exclude)
        return node

    async def _reissue(self, job: ActiveJob, reason: ErrorCode, message: str) -> None:
        """The current attempt failed: try another node, or fail the job after max_attempts."""
        att = job.current
        if att is not None:
            self._close_attempt(att, reason)
        if reason in NO_RETRY or job.tele.attempts >= self.config.max_attempts or self.stopped:
            self._finish(job, JobState.FAILED, error=reason)
            log.info(
                "job_failed", job_id=job.tele.job_id, path=job.tele.path, error=reason.value, detail=message
            )
            return
        # Prefer a node not tried yet; a swarm of one retries its only node.
        node = (
            self.registry.pick(job.tried)
            or self.registry.pick({att.node} if att and att.node else set())
            or self.registry.pick()
        )
        if node is None:
            node = await self._wait_for_node(job.tried, self.config.pickup_timeout_s)
        if node is None:
            self._finish(job, JobState.FAILED, error=ErrorCode.PROVIDER_OFFLINE)
            return
        if not job.private and not job.chunk_ids and job.size > nip90.INLINE_LIMIT:
            _, chunks = nip90.build_chunks(self.keys, job.text)
            for ch in chunks:
                await self.pool.publish(ch, wait_ok=10)
            job.chunk_ids = [c.id for c in chunks]
        if job.private:  # sealed afresh for the new node, its chunks included
            req = await private_runs.reseal(self, job, node)
        else:
            req = nip90.build_request(
                self.keys,
                path=job.tele.path,
                language=job.tele.language,
                text=None if job.chunk_ids else job.text,
                sha256=job.sha256,
                size=job.size,
                chunk_ids=job.chunk_ids,
                node=node,
                run_id=job.tele.run_id,
                bid_msats=self.config.bid_msats,
                attempt=job.tele.attempts + 1,
                retry_of=job.tele.job_id,
                pow_bits=self.config.pow_bits,
                tasks=job.tasks,
            )
        job.tele.attempts += 1
        job.tele.provider_pubkey = node
        job.tele.state = JobState.ASSIGNED
        self._issue(job, req, node, time.time())
        assert self.db is not None
        self.db.put(job.tele)
        await self.pool.publish(req)
        log.info(
            "job_reissued",
            job_id=job.tele.job_id,
            attempt=job.tele.attempts,
            node=node[:12],
            reason=reason.value,
        )
        self._note_job(job.tele)

    def _close_attempt(self, att: Attempt, outcome: ErrorCode | str) -> None:
        if att.closed:
            return
        att.closed = True
        if att.node:
            entry = self.registry.entry(att.node)
            entry.assigned_now = max(0, entry.assigned_now - 1)
            if outcome != "completed":
                entry.failed_for_us += 1
        value = outcome.value if isinstance(outcome, ErrorCode) else outcome
        assert self.db is not None
        self.db.write(
            "UPDATE attempts SET outcome = ?, error = ? WHERE request_id = ?",
            (
                "completed" if value == "completed" else "failed",
                None if value == "completed" else value,
                att.request_id,
            ),
        )

    def _finish(self, job: ActiveJob, state: JobState, *, error: ErrorCode | None = None) -> None:
        job.tele.state = state
        job.tele.error = error
        if job.current is not None and not job.current.closed:
            self._close_attempt(
                job.current, "completed" if state == JobState.COMPLETED else (error or "cancelled")
            )
        self.active.pop(job.tele.job_id, None)
        if state == JobState.COMPLETED:
            self.completed += 1
        elif state == JobState.FAILED:
            self.failed += 1
        assert self.db is not None
        self.db.put(job.tele)
        if job.tele.run_id and job.tele.run_id in self.runs:
            self.runs[job.tele.run_id].finish(state == JobState.COMPLETED)
        job.done.set()
        self._note_job(job.tele)

    # --- incoming events --------------------------------------------------------------------

    def _on_swarm_event(self, ev: NostrEvent) -> None:
        try:
            if ev.kind == kinds.ANNOUNCE:
                self.registry.on_announce(ev)
            elif ev.kind == kinds.HEARTBEAT:
                self.registry.on_heartbeat(ev)
            elif ev.kind == kinds.NUTZAP_INFO and self.payments is not None:
                self.payments.on_nutzap_info(ev)
        except InvalidEvent as exc:
            self.dropped[exc.reason] += 1

    def _on_job_event(self, ev: NostrEvent) -> Any:
        """Synchronous for the common case (no task per event); returns a coroutine, which the
        relay pool runs as a task, only when the event needs I/O (a re-issue, result parts)."""
        try:
            if ev.kind == kinds.JOB_RESULT:
                if nip90.result_part_ids(ev):
                    return self._counted(self._on_result(ev))
                self._accept_result(ev, ())
            elif ev.kind == kinds.JOB_FEEDBACK:
                follow_up = self._on_feedback(ev)
                if follow_up is not None:
                    return self._counted(follow_up)
        except InvalidEvent as exc:
            self.dropped[exc.reason] += 1
        return None

    async def _counted(self, coro: Any) -> None:
        try:
            await coro
        except InvalidEvent as exc:
            self.dropped[exc.reason] += 1

    def _on_feedback(self, ev: NostrEvent) -> Any:
        fb = nip90.parse_feedback(ev)
        att = self.attempts.get(fb.job_id)
        if att is None:
            raise InvalidEvent("unknown_job")
        if att.node and ev.pubkey != att.node:
            raise InvalidEvent("feedback_from_unassigned")
        job = self.active.get(att.job_id)
        if job is None or job.current is not att:
            return None  # an old attempt's news: the job moved on
        if fb.status == FeedbackStatus.PROCESSING:
            if not att.picked_up:
                att.picked_up = True
                job.tele.state = JobState.PROCESSING
                job.tele.picked_up = (fb.at_ms / 1000) if fb.at_ms else time.time()
                job.deadline = time.time() + self.config.result_timeout_s
                assert self.db is not None
                self.db.put(job.tele)
                self._note_job(job.tele)
        elif fb.status == FeedbackStatus.ERROR:
            return self._reissue(job, fb.error or ErrorCode.EXEC_ERROR, fb.message)
        elif fb.status == FeedbackStatus.PARTIAL:
            return None  # a part of a big result: fetched by id when the result arrives
        elif fb.status == FeedbackStatus.PAYMENT_REQUIRED and self.payments is not None:
            return self.payments.on_payment_required(job, att, fb)
        return None

    async def _on_result(self, ev: NostrEvent) -> None:
        job_ref = nip90.result_job_id(ev)
        att = self.attempts.get(job_ref or "")
        if att is None:
            raise InvalidEvent("unknown_job")
        if att.node and ev.pubkey != att.node:
            raise InvalidEvent("result_from_unassigned")
        if att.job_id not in self.active:
            raise InvalidEvent("late_result")
        parts = await self.pool.query([Filter(ids=nip90.result_part_ids(ev))], timeout=15)
        self._accept_result(ev, parts)

    def _accept_result(self, ev: NostrEvent, parts: list[NostrEvent] | tuple[()]) -> None:
        job_ref = nip90.result_job_id(ev)
        att = self.attempts.get(job_ref or "")
        if att is None:
            raise InvalidEvent("unknown_job")
        if att.node and ev.pubkey != att.node:
            raise InvalidEvent("result_from_unassigned")
        parsed = private_jobs.parse_result(ev, parts, self.sealer)  # decrypts a private job's result
        job = self.active.get(att.job_id)
        if job is None:
            raise InvalidEvent("late_result")
        if parsed.result.input_sha256 and parsed.result.input_sha256 != job.sha256:
            raise InvalidEvent("result_for_other_input")
        now = time.time()
        t = job.tele
        if job.current is not att:
            self._close_attempt(job.current, ErrorCode.TIMEOUT) if job.current else None
            job.current = att
            t.provider_pubkey = att.node or ev.pubkey
        apply_result(t, ev, parsed)
        t.received = now
        if att.node:
            self.registry.entry(att.node).completed_for_us += 1
        assert self.db is not None
        # Stored decoded: the event's content may be compressed.
        self.db.write(
            "INSERT OR REPLACE INTO results VALUES (?,?,?,?)",
            (t.job_id, ev.id, ev.pubkey, _result_encoder.encode(parsed.result).decode()),
        )
        self._finish(job, JobState.COMPLETED)
        if self.payments is not None:
            self.payments.on_verified_result(t, ev)

    # --- timers -----------------------------------------------------------------------------

    async def _scan_loop(self) -> None:
        held_since: float | None = None
        while True:
            await anyio.sleep(SCAN_INTERVAL_S)
            now = time.time()
            # No relay, or not one node heard from: the swarm is out of sight (a relay restart,
            # our own network) and that is no node's fault. Hold every job's clock instead of
            # burning its attempts, for up to OUTAGE_HOLD_S; after that fail over as usual.
            if not self.pool.is_connected() or self.registry.online_count() == 0:
                held_since = held_since or now
                if now - held_since < OUTAGE_HOLD_S:
                    continue
            elif held_since is not None:
                paused = min(now - held_since, OUTAGE_HOLD_S)
                for j in self.active.values():
                    if j.deadline:
                        j.deadline += paused
                held_since = None
                log.info("swarm_back", held_s=round(paused, 2), active=len(self.active))
            late = [j for j in self.active.values() if j.deadline and now > j.deadline]
            for job in late:
                att = job.current
                if att is None:
                    continue
                node_alive = bool(att.node) and self.registry.entry(att.node).online(
                    now, self.config.heartbeat_s
                )
                reason = ErrorCode.TIMEOUT if node_alive else ErrorCode.PROVIDER_OFFLINE
                phase = "execution" if att.picked_up else "pickup"
                await self._reissue(job, reason, f"no {phase} within the timeout")

    async def _resync_loop(self) -> None:
        """Ask the relay again for news of attempts that have gone quiet.

        Relays may drop live events for a lagging subscriber; rather than wait out a whole
        pickup or result timeout, attempts quiet for a couple of seconds are looked up by id.
        """
        while True:
            await anyio.sleep(RESYNC_INTERVAL_S)
            now = time.time()
            quiet = [
                j.current.request_id
                for j in list(self.active.values())
                if j.current is not None and not j.current.closed and now - j.current.issued > RESYNC_QUIET_S
            ]
            for i in range(0, len(quiet), 100):
                batch = quiet[i : i + 100]
                try:
                    await self.pool.resync(
                        "jobs",
                        [Filter(kinds=[kinds.JOB_FEEDBACK, kinds.JOB_RESULT], e=batch, p=[self.pubkey])],
                    )
                except Exception as exc:  # best effort; the timeouts still stand behind it
                    log.warning("resync_failed", error=str(exc))
                    break

    async def _flush_loop(self) -> None:
        assert self.db is not None
        while True:
            await anyio.sleep(FLUSH_INTERVAL_S)
            await self.db.flush()

    def _note_job(self, t: JobTelemetry) -> None:
        if self.rpc is not None and self.rpc.has_subscribers():
            self._job_pushes.append(
                {
                    "job_id": t.job_id,
                    "run_id": t.run_id,
                    "path": t.path,
                    "state": t.state.value,
                    "provider_pubkey": t.provider_pubkey,
                    "error": t.error.value if t.error else None,
                    "end_to_end": t.end_to_end,
                    "attempts": t.attempts,
                    "paid": t.is_paid,
                }
            )

    async def _push_loop(self) -> None:
        """Batched pushes for the TUI: one frame of job updates and one of nodes per tick."""
        while True:
            await anyio.sleep(PUSH_INTERVAL_S)
            if self.rpc is None or not self.rpc.has_subscribers():
                self._job_pushes.clear()
                continue
            if self._job_pushes:
                batch, self._job_pushes = self._job_pushes, []
                self.rpc.publish("jobs", batch)
            self.rpc.publish("nodes", self.registry.info())
            self.rpc.publish("status", self.status())
            for tracker in list(self.runs.values()):
                self.rpc.publish(
                    "run",
                    rpc.MapProgress(
                        run_id=tracker.run_id,
                        files=tracker.total,
                        completed=tracker.completed,
                        failed=tracker.failed,
                    ),
                )

    # --- queries ----------------------------------------------------------------------------

    def status(self) -> rpc.BuyerStatus:
        return rpc.BuyerStatus(
            name=self.config.name,
            pubkey=self.pubkey,
            relays=self.pool.urls,
            online_nodes=self.registry.online_count(),
            outstanding=len(self.active),
            completed=self.completed,
            failed=self.failed,
            stopped=self.stopped,
            banned=[pk for pk, e in self.registry.nodes.items() if e.banned],
            dropped=dict(self.dropped) | self.pool.dropped,
        )

    async def job_telemetry(self, job_id: str) -> JobTelemetry:
        job = self.active.get(job_id)
        if job is not None:
            return job.tele
        assert self.db is not None
        t = await self.db.job(job_id)
        if t is None:
            raise RpcFailure("not_found", f"unknown job {job_id}")
        return t

    async def job_result(self, job_id: str) -> FileResult:
        assert self.db is not None
        rows = await self.db.fetch("SELECT content FROM results WHERE job_id = ?", (job_id,))
        if not rows:
            t = await self.job_telemetry(job_id)
            raise RpcFailure("not_found", f"job {job_id} has no result (state {t.state.value})")
        return msgspec.json.decode(rows[0][0], type=FileResult)

    async def stats(self, provider: str | None) -> Any:
        assert self.db is not None
        jobs = await self.db.all_jobs()
        names = self.registry.names()
        if provider:
            entry = self.registry.nodes.get(provider)
            rows = await self.db.fetch(FAILURES_BY_ATTEMPT_SQL, (provider, provider, provider))
            by_attempt = {str(r[0]): int(r[1]) for r in rows}
            hb = entry.heartbeat if entry else None
            return provider_stats(
                jobs,
                provider,
                name=names.get(provider, ""),
                online=bool(entry and entry.online(time.time(), self.config.heartbeat_s)),
                uptime_s=hb.uptime_s if hb else None,
                failures_by_attempt=by_attempt,
            )
        return global_stats(
            jobs,
            online_nodes=self.registry.online_count(),
            names=names,
            dropped=dict(self.dropped) | self.pool.dropped,
        )

    async def list_jobs(self, run_id: str | None, limit: int) -> rpc.JobList:
        assert self.db is not None
        jobs = await self.db.all_jobs(run_id)
        items = [
            rpc.JobListItem(
                job_id=t.job_id,
                run_id=t.run_id,
                state=t.state.value,
                provider_pubkey=t.provider_pubkey,
                paid=t.is_paid,
                path=t.path,
                error=t.error.value if t.error else None,
                end_to_end=t.end_to_end,
            )
            for t in jobs[-limit:]
        ]
        return rpc.JobList(jobs=items)

    # --- control ----------------------------------------------------------------------------

    def cancel(self, job_id: str | None, run_id: str | None) -> int:
        targets = [
            j
            for j in self.active.values()
            if (job_id and j.tele.job_id == job_id) or (run_id and j.tele.run_id == run_id)
        ]
        for j in targets:
            self._finish(j, JobState.CANCELLED, error=ErrorCode.CANCELLED)
        return len(targets)

    def stop_all(self) -> int:
        self.stopped = True
        n = self.cancel(None, None)
        for j in list(self.active.values()):
            self._finish(j, JobState.CANCELLED, error=ErrorCode.CANCELLED)
            n += 1
        if self.payments is not None:
            self.payments.stop()
        log.warning("buyer_stopped_all", cancelled=n)
        return n

    async def handle_rpc(self, req: rpc.Request, ctx: CallContext) -> Any:
        match req:
            case rpc.StatusReq():
                return self.status()
            case rpc.SubmitReq(path=path, text=text, language=language, run_id=run_id):
                try:
                    job = await self.submit(path, text, language=language, run_id=run_id)
                except SubmitError as exc:
                    raise RpcFailure(exc.code.value, exc.message) from exc
                return rpc.SubmitResult(job_id=job.tele.job_id)
            case rpc.SubmitManyReq(items=items, run_id=run_id):
                ids: list[str | None] = []
                errors: list[rpc.SubmitError] = []
                for i, item in enumerate(items):
                    try:
                        job = await self.submit(item.path, item.text, language=item.language, run_id=run_id)
                        ids.append(job.tele.job_id)
                    except SubmitError as exc:
                        ids.append(None)
                        errors.append(rpc.SubmitError(index=i, code=exc.code.value, message=exc.message))
                return rpc.SubmitManyResult(job_ids=ids, errors=errors)
            case rpc.JobStatusReq(job_id=job_id):
                return await self.job_telemetry(job_id)
            case rpc.JobResultsReq(job_id=job_id):
                return await self.job_result(job_id)
            case rpc.JobListReq(run_id=run_id, limit=limit):
                return await self.list_jobs(run_id, limit)
            case rpc.NodesReq():
                return {"nodes": self.registry.info()}
            case rpc.StatsReq(provider=provider):
                return await self.stats(provider)
            case rpc.CancelReq(job_id=job_id, run_id=run_id):
                if not job_id and not run_id:
                    raise RpcFailure("bad_input", "name a job_id or a run_id to cancel")
                n = self.cancel(job_id, run_id)
                if n == 0:
                    raise RpcFailure("not_found", "nothing outstanding matches")
                return {"cancelled": n}
            case rpc.StopAllReq():
                return {"cancelled": self.stop_all(), "stopped": True}
            case rpc.BanReq(pubkey=pk, banned=banned):
                self.registry.entry(pk).banned = banned
                log.warning("provider_banned" if banned else "provider_unbanned", pubkey=pk)
                return {"pubkey": pk, "banned": banned}
            case rpc.RunsReq() | rpc.MapReq() if self.coordinator is not None:
                return await self.coordinator.handle_rpc(req, ctx)
            case rpc.TrailReq(job_id=job_id):
                from pylon.provenance.trail import build_trail

                return await build_trail(self.pool, job_id)
            case _:
                if self.payments is not None:
                    handled = await self.payments.handle_rpc(req, ctx)
                    if handled is not None:
                        return handled
                raise RpcFailure("unknown_method", f"the buyer does not answer {type(req).__name__}")


async def run_buyer(config: BuyerConfig, *, extra: list[Any] | None = None) -> None:
    """`pylon buyer up`: run in the foreground until SIGTERM/SIGINT."""
    buyer = BuyerDaemon(config)
    for attach in extra or []:
        attach(buyer)
    # The receiver must outlive the task group: closed early, it hands SIGTERM back to the
    # default action, which kills the daemon mid-job instead of draining it.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:
            await tg.start(buyer.run)

            async def wait_signal() -> None:
                async for signum in signals:
                    log.info("buyer_signal", signal=signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    return

            tg.start_soon(wait_signal)


def default_db_path() -> Path:
    return buyer_dir() / "telemetry.db"
