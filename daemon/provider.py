"""The provider daemon (`pylon node up`): announce, heartbeat, take jobs, execute, publish.

Flow per job: a 5931 request arrives (assigned to this node by its `p` tag, or untargeted) →
checks (parse, allow-list, rate limit, duplicate, state, queue room) → a worker runs the
executor → a 6931 result with the content hash and timing tags, or an `error` feedback carrying
the error code. A job not answered within ACK_DEFER_S gets a `processing` feedback (the pickup)
then (pylon.daemon.node_acks).
"""

from __future__ import annotations

import math
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from pylon.daemon.config import NodeConfig
from pylon.daemon.intake_limits import (
    REJECT_FEEDBACK_BURST,
    REJECT_FEEDBACK_PER_S,
    BuyerBuckets,
    TokenBucket,
)
from pylon.daemon.node_acks import DeferredAcks
from pylon.daemon.node_cancel import honour_cancel
from pylon.daemon.node_store import NodeStore
from pylon.daemon.resync_window import RESYNC_INTERVAL_S, ResyncWindow
from pylon.daemon.rpc_server import CallContext, RpcFailure, RpcServer
from pylon.schemas import kinds, rpc
from pylon.schemas.ask import ASK_REDUCE_TASK, ASK_TASK
from pylon.schemas.errors import ErrorCode
from pylon.schemas.events import (
    REDUCE_TASK,
    Announce,
    FeedbackStatus,
    FileResult,
    Heartbeat,
    JobRequest,
    NodeState,
    ResultTiming,
)

from pylon import __version__
from pylon.executors.ask_task import run_ask_task
from pylon.executors.base import Executor
from pylon.executors.deterministic import ExecError
from pylon.executors.factory import make_executor
from pylon.home import node_dir, node_socket
from pylon.home_config import relay_limits
from pylon.keys import load_or_create_keys
from pylon.logs import get_logger
from pylon.loopwatch import LoopWatch
from pylon.nostr import clock, fitting, nip13, nip90, private_jobs
from pylon.nostr.event import InvalidEvent, NostrEvent, now_ms
from pylon.nostr.filters import Filter
from pylon.nostr.heartbeat import build_heartbeat
from pylon.nostr.nip89 import build_announce
from pylon.nostr.relay_client import RelayPool

log = get_logger("pylon.node")

CHUNK_FETCH_TIMEOUT_S = 15.0
DRAIN_TIMEOUT_S = 30.0
FLUSH_INTERVAL_S = 0.25
REBEAT_GAP_S = 0.2  # the least time between two heartbeats, however often the relays come back


@dataclass
class _Job:
    request: JobRequest
    received_ms: int
    scope: anyio.CancelScope | None = None
    started_ms: int | None = None
    aborted: bool = False


@dataclass
class _Counters:
    completed: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)


class ProviderNode:
    def __init__(self, config: NodeConfig, executor: Executor | None = None) -> None:
        self.config = config
        self.dir = node_dir(config.name)
        self.keys = load_or_create_keys(self.dir / "nostr.key")
        self.pubkey = self.keys.pubkey
        self.loop_watch = LoopWatch("node")
        self.acks = DeferredAcks(self._acknowledge)
        self._beat_now: anyio.Event | None = None  # set: heartbeat now (a relay came back)
        self._beat_created_at = 0  # the last heartbeat's created_at
        self.warming = True  # until _warm_executor has started the parse workers (or given up)
        self.sealer = private_jobs.Sealer(self.keys)  # NIP-44: private jobs' inputs and results
        self.executor = executor or make_executor(
            config.executor,
            ollama_host=config.ollama_host,
            model=config.model,
            parse_timeout_s=config.parse_timeout_s,
        )
        self.pool = RelayPool(config.relays, keys=self.keys, limits=relay_limits())
        self.state = NodeState.ONLINE
        self.started_at = time.time()
        self.counters = _Counters()
        self.running: dict[str, _Job] = {}
        self.queued: dict[str, _Job] = {}
        self._send, self._recv = anyio.create_memory_object_stream[_Job](max_buffer_size=math.inf)
        self._seen: deque[str] = deque(maxlen=50_000)
        self._seen_set: set[str] = set()
        self._buckets = BuyerBuckets(config.rate_per_s, config.rate_burst)  # LRU-bounded
        self._reject_budget = TokenBucket(REJECT_FEEDBACK_PER_S, REJECT_FEEDBACK_BURST)
        self._idle = anyio.Event()
        self.store: NodeStore | None = None
        self.rpc: RpcServer | None = None
        self._tg: TaskGroup | None = None
        self.payments: Any = None  # set by the payments wiring (pylon.daemon.node_payments)
        self.announced_models: list[str] = []
        self._resync = ResyncWindow()  # how far back the next resync reaches

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.store = await NodeStore.open(self.dir / "node.db")
        counts = await self.store.counters()
        self.counters.completed, self.counters.failed = counts["completed"], counts["failed"]
        self.counters.failures = await self.store.failures()
        # The request filters look back CLOCK_SLACK_S (clocks differ): what this node already
        # finished must not run again when a restart replays it.
        for job_id in await self.store.finished_since(time.time() - 2 * clock.CLOCK_SLACK_S):
            self._remember(job_id)
        self.rpc = RpcServer(
            node_socket(self.config.name),
            daemon="node",
            name=self.config.name,
            pubkey=self.pubkey,
            handler=self.handle_rpc,
        )
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await tg.start(self.rpc.serve)
                await self.pool.start(tg, wait_s=10)
                await self._refresh_capabilities()
                if self.config.mint_url and self.payments is None:
                    from pylon.daemon.node_payments import NodePayments

                    self.payments = NodePayments(self)
                    await self.payments.start(tg)
                await self._announce()
                await self.pool.subscribe(
                    [Filter(kinds=[kinds.JOB_REQUEST], p=[self.pubkey], since=clock.since(30))],
                    self._on_request,
                    sub_id="assigned",
                )
                if self.config.accept_untargeted:
                    # Not widened by the clock slack, unlike "assigned": a fresh node would take
                    # on a quarter hour of anyone's untargeted jobs. Untargeted requests from a
                    # buyer whose clock is behind ours are missed (Pylon's buyer assigns).
                    await self.pool.subscribe(
                        [Filter(kinds=[kinds.JOB_REQUEST], since=int(time.time()))],
                        self._on_request,
                        sub_id="open",
                        prefilter=self._is_untargeted,
                    )
                for _ in range(max(1, self.config.max_concurrency)):
                    tg.start_soon(self._worker)
                tg.start_soon(self._heartbeat_loop)
                tg.start_soon(self._warm_executor)
                tg.start_soon(self.loop_watch.run)
                tg.start_soon(self.acks.run)
                tg.start_soon(self._resync_loop)
                tg.start_soon(self._flush_loop)
                log.info(
                    "node_started",
                    name=self.config.name,
                    pubkey=self.pubkey,
                    relays=self.pool.urls,
                    executor=self.executor.name,
                    concurrency=self.config.max_concurrency,
                )
                task_status.started()
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self.store.close()
                aclose = getattr(self.executor, "aclose", None)
                if aclose is not None:  # parse worker processes, Ollama's HTTP pool
                    with anyio.move_on_after(5):
                        await aclose()

    async def _warm_executor(self) -> None:
        """Parse workers started now, not by the first jobs (a swarm's first wave waited seconds
        on twenty nodes starting interpreters at once). A failure only costs that head start."""
        warm = getattr(self.executor, "warm", None)
        try:
            if warm is not None:
                await warm(max(1, self.config.max_concurrency))
        except Exception as exc:
            log.warning("executor_warm_failed", error=str(exc)[:300])
        finally:
            self.warming = False

    async def drain_and_stop(self, tg_scope: anyio.CancelScope) -> None:
        """SIGTERM: take no new work, finish what is queued and running (bounded), then stop."""
        self.state = NodeState.DRAINING
        log.info("node_draining", running=len(self.running), queued=len(self.queued))
        with anyio.move_on_after(DRAIN_TIMEOUT_S):
            await self._publish_heartbeat()
            while self.running or self.queued:
                self._idle = anyio.Event()
                await self._idle.wait()
            await self._publish_heartbeat()
            with anyio.move_on_after(3):
                while self.pool.pending():
                    await anyio.sleep(0.05)
        tg_scope.cancel()

    # --- intake -----------------------------------------------------------------------------

    def _drop(self, reason: str) -> None:
        self.counters.dropped[reason] = self.counters.dropped.get(reason, 0) + 1

    @staticmethod
    def _is_untargeted(ev: NostrEvent) -> bool:
        return ev.tag("p") is None and not nip90.is_chunk(ev) and not nip90.is_run_root(ev)

    def _on_request(self, ev: NostrEvent) -> None:
        if ev.id in self._seen_set:
            return
        self._resync.saw(ev.created_at)
        self._remember(ev.id)
        if nip90.is_chunk(ev) or nip90.is_run_root(ev):
            return
        if nip90.is_cancel(ev):
            honour_cancel(self, ev)
            return
        try:
            req = private_jobs.parse_request(ev, self.sealer)
        except InvalidEvent as exc:
            self._drop(exc.reason)
            return
        if req.assigned not in (None, self.pubkey):
            return
        if self.config.min_pow and not nip13.meets(ev, self.config.min_pow):
            # Dropped without an answer: a feedback event per spam request would be work a spammer
            # gets for free. The buyer must be run with --pow >= this node's --min-pow.
            self._drop("pow_too_low")
            return
        if self.config.allow_buyers and req.buyer not in self.config.allow_buyers:
            self._drop("buyer_not_allowed")  # unauthenticated: no signed answer, just a count
            return
        if self.config.rate_per_s > 0 and not self._buckets.take(req.buyer):
            self._reject(req, ErrorCode.RATE_LIMITED, "rate limit exceeded, slow down")
            return
        if self.state != NodeState.ONLINE:
            self._reject(req, ErrorCode.PROVIDER_OFFLINE, f"node is {self.state.value}")
            return
        if len(self.queued) >= self.config.queue_size:
            self._reject(req, ErrorCode.RATE_LIMITED, "queue full")
            return
        if req.size > nip90.MAX_INPUT_BYTES:
            self._reject(
                req, ErrorCode.TOO_LARGE, f"input is {req.size} bytes; the limit is {nip90.MAX_INPUT_BYTES}"
            )
            return
        if self.payments is not None and self.payments.hold_for_payment(req):
            return  # payment-required: it runs once its nutzap is redeemed
        self._enqueue(req)

    def _enqueue(self, req: JobRequest) -> None:
        job = _Job(request=req, received_ms=now_ms())
        self.queued[req.job_id] = job
        self._record(job, "queued")
        self._send.send_nowait(job)
        self.acks.expect(req, job.received_ms)
        self._push_job(job, "queued")

    def _remember(self, event_id: str) -> None:
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(event_id)
        self._seen_set.add(event_id)

    def _reject(self, req: JobRequest, code: ErrorCode, message: str) -> None:
        self._drop(f"rejected_{code.value}")
        # A signed answer only for a request addressed to us, and within the node-wide budget:
        # an untargeted request was not asked of us, and a flood must not make us sign for it.
        if req.assigned != self.pubkey:
            self._drop("reject_unsolicited_silent")
            return
        if not self._reject_budget.take():
            self._drop("reject_feedback_suppressed")
            return
        self._feedback_now(req, FeedbackStatus.ERROR, error=code, message=message)

    def _spawn(self, coro: Any) -> None:
        assert self._tg is not None
        self._tg.start_soon(_quiet, coro)

    # --- work -------------------------------------------------------------------------------

    async def _worker(self) -> None:
        async for job in self._recv:
            if job.aborted:
                continue
            self.queued.pop(job.request.job_id, None)
            self.running[job.request.job_id] = job
            try:
                await self._execute(job)
            finally:
                self.running.pop(job.request.job_id, None)
                if not self.running and not self.queued:
                    self._idle.set()

    async def _execute(self, job: _Job) -> None:
        req = job.request
        job.started_ms = now_ms()
        self._record(job, "running")
        self._push_job(job, "running")
        error: ExecError | None = None
        with anyio.CancelScope() as scope:
            job.scope = scope
            try:
                text = await self._input_text(req)
                with anyio.fail_after(self.config.exec_timeout_s):
                    if ASK_TASK in req.tasks or ASK_REDUCE_TASK in req.tasks:
                        result = await run_ask_task(self.executor, req, text)
                    elif REDUCE_TASK in req.tasks:
                        result = await self._reduce(req, text)
                    else:
                        result = await self.executor.run(req.path, text, req.language or None)
            except ExecError as exc:
                error = exc
            except TimeoutError:
                error = ExecError(ErrorCode.TIMEOUT, f"execution exceeded {self.config.exec_timeout_s:g}s")
            except Exception as exc:  # an executor bug must fail one job, not the node
                log.exception("executor_crashed", job_id=req.job_id, path=req.path)
                error = ExecError(ErrorCode.EXEC_ERROR, f"{type(exc).__name__}: {exc}"[:300])
        if scope.cancelled_caught or job.aborted:
            error = ExecError(ErrorCode.CANCELLED, "aborted by the node operator")
        finished_ms = now_ms()
        self.acks.answered(req.job_id)
        if error is not None:
            self._fail(job, error, finished_ms)
            await self._publish_feedback(req, FeedbackStatus.ERROR, error=error.code, message=error.message)
            return
        timing = ResultTiming(received_ms=job.received_ms, started_ms=job.started_ms, finished_ms=finished_ms)
        # Fitted to the relays' limits, re-fitted when one refuses it as too large (issue 9).
        out = await fitting.publish_result(
            self.pool,
            self.keys,
            request=req,
            result=result,
            timing=timing,
            amount_msats=self.config.price_msats,
            sealer=self.sealer,  # an encrypted request's result is sealed back to its buyer
        )
        if not out.ok:
            code = ErrorCode.TOO_LARGE if out.too_large else ErrorCode.EXEC_ERROR
            message = f"the relays refused the result: {out.reason}"[:500]
            log.warning(
                "result_unpublishable", job_id=req.job_id, path=req.path, error=code.value, reason=message
            )
            self._fail(job, ExecError(code, message), finished_ms)
            await self._publish_feedback(req, FeedbackStatus.ERROR, error=code, message=message)
            return
        self.counters.completed += 1
        self._record(job, "completed", finished_ms)
        self._push_job(job, "completed")

    def _fail(self, job: _Job, error: ExecError, finished_ms: int) -> None:
        self.counters.failed += 1
        self.counters.failures[error.code.value] = self.counters.failures.get(error.code.value, 0) + 1
        self._record(
            job, "aborted" if error.code == ErrorCode.CANCELLED else "failed", finished_ms, error.code.value
        )
        self._push_job(job, "failed", error=error.code.value)

    async def _reduce(self, req: JobRequest, facts: str) -> FileResult:
        """The LLM reduce step of a map: the input is its facts, the result's summary the narrative."""
        reduce = getattr(self.executor, "reduce", None)
        if reduce is None:
            raise ExecError(
                ErrorCode.BAD_INPUT, f"the {self.executor.name} executor cannot do the reduce task"
            )
        narrative = await reduce(facts)
        data = facts.encode()
        return FileResult(
            path=req.path,
            language=req.language or "markdown",
            lines=facts.count("\n") + 1,
            symbols=[],
            imports=[],
            summary=narrative,
            executor=self.executor.name,
            model=str(getattr(self.executor, "model", "")),
            input_sha256=nip90.sha256_hex(data),
            bytes_in=len(data),
        )

    async def _input_text(self, req: JobRequest) -> str:
        if req.text is not None:
            if len(req.text.encode()) > nip90.MAX_INPUT_BYTES:
                raise ExecError(ErrorCode.TOO_LARGE, "input over 1 MiB")
            if req.sha256 and nip90.sha256_hex(req.text.encode()) != req.sha256:
                raise ExecError(ErrorCode.BAD_INPUT, "inline input does not match its sha256")
            return req.text
        chunks = await self.pool.query([Filter(ids=req.chunk_ids)], timeout=CHUNK_FETCH_TIMEOUT_S)
        try:
            return nip90.reassemble(req, private_jobs.open_chunks(req, chunks, self.sealer))
        except InvalidEvent as exc:
            code = ErrorCode.TOO_LARGE if exc.reason == "too_large" else ErrorCode.BAD_INPUT
            raise ExecError(code, f"input chunks: {exc}") from exc

    def _record(
        self, job: _Job, state: str, finished_ms: int | None = None, error: str | None = None
    ) -> None:
        if self.store is None:
            return
        r = job.request
        self.store.record(
            rpc.NodeJob(
                job_id=r.job_id,
                buyer=r.buyer,
                path=r.path,
                state=state,
                received=job.received_ms / 1000,
                started=job.started_ms / 1000 if job.started_ms else None,
                finished=finished_ms / 1000 if finished_ms else None,
                error=error,
            )
        )

    def _push_job(self, job: _Job, state: str, error: str | None = None) -> None:
        if self.rpc is not None:
            self.rpc.publish(
                "job",
                {
                    "job_id": job.request.job_id,
                    "path": job.request.path,
                    "state": state,
                    "buyer": job.request.buyer,
                    "error": error,
                },
            )

    # --- publishing -------------------------------------------------------------------------

    def _feedback_now(
        self,
        req: JobRequest,
        status: FeedbackStatus,
        *,
        error: ErrorCode | None = None,
        message: str = "",
        at_ms: int | None = None,
    ) -> None:
        """Queue feedback from a synchronous path (intake) without spawning a task."""
        self.pool.publish_nowait(
            nip90.build_feedback(
                self.keys,
                job_id=req.job_id,
                buyer=req.buyer,
                status=status,
                error=error,
                message=message,
                at_ms=at_ms,
            )
        )

    def _acknowledge(self, req: JobRequest, received_ms: int) -> None:
        self._feedback_now(req, FeedbackStatus.PROCESSING, at_ms=received_ms)

    async def _publish_feedback(
        self, req: JobRequest, status: FeedbackStatus, *, error: ErrorCode | None = None, message: str = ""
    ) -> None:
        message = private_jobs.public_message(req, message)
        ev = nip90.build_feedback(
            self.keys, job_id=req.job_id, buyer=req.buyer, status=status, error=error, message=message
        )
        await self.pool.publish(ev)

    async def _refresh_capabilities(self) -> None:
        probe = getattr(self.executor, "probe", None)
        if probe is not None:
            self.announced_models = list(await probe())
        else:
            self.announced_models = list(self.executor.models())

    def _executors(self) -> list[str]:
        names = ["deterministic"]
        if self.executor.name == "ollama" and self.announced_models:
            names.append("ollama")
        return names

    async def _announce(self) -> None:
        ann = Announce(
            name=self.config.name,
            version=__version__,
            executors=self._executors(),
            models=self.announced_models,
            max_concurrency=self.config.max_concurrency,
            price_msats=self.config.price_msats,
        )
        await self.pool.publish(build_announce(self.keys, self.config.name, ann), wait_ok=5)
        if self.payments is not None:
            await self.payments.publish_nutzap_info()

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            state=self.state,
            queue_depth=len(self.queued),
            running=len(self.running),
            completed=self.counters.completed,
            failed=self.counters.failed,
            uptime_s=round(time.time() - self.started_at, 1),
            interval_s=self.config.heartbeat_s,
            name=self.config.name,
            slots=self.config.max_concurrency,
        )

    async def _publish_heartbeat(self) -> None:
        ev = build_heartbeat(self.keys, self.config.name, self.heartbeat(), after=self._beat_created_at)
        self._beat_created_at = ev.created_at
        await self.pool.publish(ev)

    def _beat_soon(self, _url: str) -> None:
        if self._beat_now is not None:
            self._beat_now.set()

    async def _heartbeat_loop(self) -> None:
        # A relay that comes back is told at once that we are alive: the buyer judges the
        # swarm again only once news flows after an outage, and a heartbeat stored before it
        # is no news (a dead node's is there too). Without this, a restart cost the swarm up
        # to one more interval of silence on top of the outage.
        self.pool.on_reconnect(self._beat_soon)
        ticks = 0
        while True:
            self._beat_now = beat_now = anyio.Event()  # before publishing: a reconnect meanwhile beats again
            last_beat = time.monotonic()
            await self._publish_heartbeat()
            if self.rpc is not None:
                self.rpc.publish("node_state", self.status())
            ticks += 1
            if self.executor.name == "ollama" and ticks % 6 == 0:
                before = self._executors(), list(self.announced_models)
                await self._refresh_capabilities()
                if (self._executors(), self.announced_models) != before:
                    await self._announce()
            with anyio.move_on_after(self.config.heartbeat_s):
                await beat_now.wait()
                # A relay that accepts and drops us over and over gets one beat a REBEAT_GAP_S.
                await anyio.sleep(max(0.0, last_beat + REBEAT_GAP_S - time.monotonic()))

    async def _resync_loop(self) -> None:
        """Catch requests the relay failed to push live (it drops events for lagging subscribers)."""
        while True:
            await anyio.sleep(RESYNC_INTERVAL_S)
            mark, since = self._resync.begin(), self._resync.since()
            try:
                late = await self.pool.resync(
                    "assigned", [Filter(kinds=[kinds.JOB_REQUEST], p=[self.pubkey], since=since)]
                )
            except Exception as exc:  # a resync is best effort; the next one tries again
                log.warning("resync_failed", error=str(exc))
                continue
            self._resync.done(mark)
            if late:
                log.info("resync_recovered", requests=late)

    async def _flush_loop(self) -> None:
        assert self.store is not None
        while True:
            await self.store.wait_dirty()
            await anyio.sleep(FLUSH_INTERVAL_S)  # a batch: what else arrives meanwhile goes with it
            await self.store.flush()

    # --- control (RPC) ----------------------------------------------------------------------

    def status(self) -> rpc.NodeStatus:
        return rpc.NodeStatus(
            name=self.config.name,
            pubkey=self.pubkey,
            state=self.state,
            running=len(self.running),
            queued=len(self.queued),
            completed=self.counters.completed,
            failed=self.counters.failed,
            executor=self.executor.name,
            models=self.announced_models,
            max_concurrency=self.config.max_concurrency,
            uptime_s=round(time.time() - self.started_at, 1),
            failures=dict(self.counters.failures),
            dropped=dict(self.counters.dropped) | self.pool.dropped,
            loop_stalls=self.loop_watch.stalls,
            loop_max_ms=round(self.loop_watch.max_ms, 1),
            acks_sent=self.acks.sent,
            acks_spared=self.acks.spared,
            warming=self.warming,
        )

    async def set_state(self, state: NodeState) -> rpc.NodeStatus:
        if self.state != state:
            log.info("node_state", name=self.config.name, state=state.value)
            self.state = state
            await self._publish_heartbeat()
            if self.rpc is not None:
                self.rpc.publish("node_state", self.status())
        return self.status()

    def abort(self, job_id: str, message: str = "aborted by the node operator") -> bool:
        job = self.running.get(job_id) or self.queued.get(job_id)
        if job is None:
            return False
        job.aborted = True
        if job.scope is not None:
            job.scope.cancel()
        else:  # still queued: fail it now, the worker will skip it
            self.queued.pop(job_id, None)
            self.counters.failed += 1
            self.counters.failures["cancelled"] = self.counters.failures.get("cancelled", 0) + 1
            self._record(job, "aborted", now_ms(), "cancelled")
            self.acks.answered(job_id)
            self._spawn(
                self._publish_feedback(
                    job.request,
                    FeedbackStatus.ERROR,
                    error=ErrorCode.CANCELLED,
                    message=message,
                )
            )
        return True

    async def handle_rpc(self, req: rpc.Request, ctx: CallContext) -> Any:
        match req:
            case rpc.StatusReq():
                st = self.status()
                if self.store is not None:
                    st.earned_msats = await self.store.earned()
                return st
            case rpc.PauseReq():
                return await self.set_state(NodeState.PAUSED)
            case rpc.ResumeReq():
                return await self.set_state(NodeState.ONLINE)
            case rpc.DrainReq():
                return await self.set_state(NodeState.DRAINING)
            case rpc.AbortJobReq(job_id=job_id):
                if not self.abort(job_id):
                    raise RpcFailure("not_found", f"no queued or running job {job_id} on this node")
                return {"job_id": job_id, "aborted": True}
            case rpc.NodeJobsReq(limit=limit):
                assert self.store is not None
                return {"jobs": await self.store.recent(limit)}
            case rpc.StatsReq():
                return self.status()
            case rpc.WalletBalanceReq() if self.payments is not None:
                return await self.payments.balance()
            case _:
                if self.payments is not None:
                    handled = await self.payments.handle_rpc(req)
                    if handled is not None:
                        return handled
                raise RpcFailure("unknown_method", f"a node does not answer {type(req).__name__}")


async def _quiet(coro: Any) -> None:
    try:
        await coro
    except Exception:
        log.exception("background_task_failed")


async def run_node(config: NodeConfig) -> None:
    """`pylon node up`: run in the foreground until SIGTERM/SIGINT, then drain and exit."""
    node = ProviderNode(config)
    # The receiver must outlive the task group: closed early, it hands SIGTERM back to the
    # default action, which kills the daemon mid-job instead of draining it.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)

            async def wait_signal() -> None:
                async for signum in signals:
                    log.info("node_signal", signal=signal.Signals(signum).name)
                    await node.drain_and_stop(tg.cancel_scope)
                    return

            tg.start_soon(wait_signal)
