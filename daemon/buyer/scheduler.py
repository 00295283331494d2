"""The buyer's scheduler: hand jobs to free node slots, follow them, verify results, recover.

Each job is a file to map. A job goes out when a node has a free slot (the node's concurrency
as it declares it, capped, and trusted only as far as it has delivered: `NodeEntry.slots`), so
fast nodes take more and slow ones fewer; the request is a signed 5931 `p`-tagged to that node
(inputs too big for one event go first as chunk events). The node acknowledges with `processing`
feedback and answers with a 6931 result. A result counts only if it is signed by the node that
attempt was assigned to, its `x` tag matches its content and its payload decodes; everything
else is dropped and counted.

Failure is noticed in seconds: an attempt not acknowledged within ~2 of its node's heartbeat
intervals, or whose node has stopped heartbeating for 2 intervals, is re-issued to another node
(and the node is told to stop it: a cancel). A failure another node would repeat (bad
input, too large, a deterministic executor's error) fails the job at once.

Near a run's end the scheduler follows what nodes take (pylon.daemon.buyer.forecast): a free
slot on a node that would finish a job later than a faster node's next free lane is declined,
for a bounded time. When a run has nothing left to hand out and a task has run well past the
run's typical time, or an idle node would finish it well before its own node is due, a backup
copy goes to an idle node; the first valid result wins and is the only one accepted (and paid),
the other attempt is cancelled.

Its interface is narrow: `submit` (a job handle whose `done` fires at the end), `cancel`,
`stop_all`, `job`/`telemetry` to look, and typed events out (`JobChanged`, `ResultAccepted`,
`PaymentAsked`) for the payer, the TUI pushes and anyone else who listens.
"""

from __future__ import annotations

import functools
import random
import statistics
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import anyio
import msgspec
from pylon.daemon import private_runs
from pylon.daemon.buyer import forecast
from pylon.daemon.buyer.registry import SLOT_CAP, NodeEntry, NodeRegistry, Outage
from pylon.daemon.buyer.store import BuyerStore
from pylon.daemon.buyer.window import InFlightWindow
from pylon.daemon.config import BuyerConfig
from pylon.schemas import kinds, rpc
from pylon.schemas.errors import NO_RETRY, ErrorCode
from pylon.schemas.events import DEFAULT_TASKS, REDUCE_TASK, Feedback, FeedbackStatus, FileResult
from pylon.schemas.telemetry import TERMINAL_STATES, JobState, JobTelemetry

from pylon.executors.languages import detect_language
from pylon.keys import NostrKeys
from pylon.logs import get_logger
from pylon.nostr import fitting, nip90, private_jobs
from pylon.nostr.event import InvalidEvent, NostrEvent
from pylon.nostr.filters import Filter
from pylon.nostr.refusals import Refusal
from pylon.nostr.relay_client import PublishError, RelayPool
from pylon.stats.compute import apply_result

log = get_logger("pylon.buyer")

SCAN_INTERVAL_S = 0.2
RESYNC_INTERVAL_S = 2.0
RESYNC_QUIET_S = 2.0
OUTAGE_HOLD_S = 60.0  # how long job clocks stop while no relay or no node is in sight
SLOT_POLL_S = 0.25  # a waiter re-checks the slots this often even without news
ACK_INTERVALS = 2.0  # an assignment not acknowledged within this many heartbeat intervals is lost
EARLY_HELD_MAX = 16  # events held per request whose attempt is not recorded yet
ACK_FLOOR_S = 3.0  # ... but never sooner than this (a busy relay, a loaded machine)
BACKUP_FACTOR = 2.0  # a task this many times the run's typical time is a straggler
BACKUP_MIN_S = 1.0  # below this a backup costs more than it can save
BACKUP_MIN_SAMPLES = 3  # results of the run needed before "typical" means anything
# A backup (or a move) by the forecast must finish this share of the idle node's service time
# before the attempt it copies is due: a copy that saves a few milliseconds is not worth its work.
FORECAST_GAIN = 0.5
# Finishes that differ by less than this (or this share of a job's service time) are alike: the
# forecast does not choose between them, nor move a job for it (jobs of milliseconds on a busy
# host measure mostly noise, and choosing by noise piles the work on a few nodes).
MATERIAL_S = 0.25
MATERIAL_SHARE = 0.2
SUPERSEDED = "superseded"  # an attempt closed because another one's result won
_result_encoder = msgspec.json.Encoder()
_result_decoder = msgspec.json.Decoder(FileResult)


class SubmitError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UnknownJob(LookupError):
    """A job id this buyer never issued, or a job without a result."""


@dataclass
class Attempt:
    request_id: str
    job_id: str
    node: str | None
    issued: float
    picked_up: bool = False
    picked_up_ms: int | None = None  # the node's stamp on its `processing` feedback (its clock)
    closed: bool = False
    deadline: float = 0.0  # no pickup (or no result, once picked up) by then: lost
    backup: bool = False  # a straggler's copy, running beside the job's current attempt
    started: float | None = None  # when it could start on its node (None: queued behind others)


@dataclass
class ActiveJob:
    tele: JobTelemetry
    text: str
    sha256: str
    size: int
    chunk_ids: list[str] = field(default_factory=list)
    tasks: tuple[str, ...] = DEFAULT_TASKS
    current: Attempt | None = None
    backup: Attempt | None = None
    tried: set[str] = field(default_factory=set)
    waiting_since: float = 0.0  # in the re-issue queue since (no attempt open)
    last_reason: ErrorCode | None = None
    avoid: frozenset[str] = frozenset()  # nodes this job must never go to (a spot check's subjects)
    private: bool = False  # NIP-44: every attempt sealed to its node (pylon.daemon.private_runs)
    check_of: str | None = None  # a spot check of that job: every attempt says so
    done: anyio.Event = field(default_factory=anyio.Event)

    def open_attempts(self) -> list[Attempt]:
        return [a for a in (self.current, self.backup) if a is not None and not a.closed]


class RunTracker:
    """Counts a run's subtasks as they finish; `done` fires when the last one does."""

    def __init__(self, run_id: str, total: int) -> None:
        self.run_id = run_id
        self.total = total
        self.completed = 0
        self.failed = 0
        self.turnarounds: list[float] = []  # issue → accepted result, of this run's jobs
        self.nodes: set[str] = set()  # every node handed a job of this run
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

    def typical_s(self) -> float | None:
        if len(self.turnarounds) < BACKUP_MIN_SAMPLES:
            return None
        return statistics.median(self.turnarounds)


@dataclass
class _View:
    """The forecast at one moment (Scheduler._forecast): per node its lanes, service time, how
    many of our jobs it runs at once, and the attempts of ours it holds."""

    lanes_of: dict[str, list[float]] = field(default_factory=dict)
    service_of: dict[str, float] = field(default_factory=dict)
    width: dict[str, int] = field(default_factory=dict)
    held: dict[str, list[Attempt]] = field(default_factory=dict)
    open_in_run: int = 0

    def finish(self, node: str) -> float:
        return forecast.finish_at(self.lanes_of[node], self.service_of[node])

    def material(self) -> float:
        """The least difference in finishes worth acting on (MATERIAL_S, MATERIAL_SHARE)."""
        typical = statistics.median(self.service_of.values()) if self.service_of else 0.0
        return max(MATERIAL_S, MATERIAL_SHARE * typical)

    def soonest(self, nodes: Iterable[str]) -> str | None:
        """Of `nodes` (all in the view), the one that finishes a job handed to it now first."""
        return min(nodes, key=lambda n: (self.finish(n), random.random()), default=None)


# --- events out -------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobChanged:
    """A job's telemetry changed (state, attempt, payment): for the TUI's pushes."""

    tele: JobTelemetry


@dataclass(frozen=True)
class ResultAccepted:
    """A result was verified and its job completed."""

    tele: JobTelemetry
    event: NostrEvent


@dataclass(frozen=True)
class PaymentAsked:
    """The node of the job's current attempt will run it once paid (payment-required feedback)."""

    job: ActiveJob
    attempt: Attempt
    feedback: Feedback


SchedulerEvent = JobChanged | ResultAccepted | PaymentAsked
Listener = Callable[[SchedulerEvent], None]


class Scheduler:
    def __init__(
        self,
        config: BuyerConfig,
        *,
        keys: NostrKeys,
        pool: RelayPool,
        registry: NodeRegistry,
        store: BuyerStore,
    ) -> None:
        self.config = config
        self.keys = keys
        self.pubkey = keys.pubkey
        self.pool = pool
        self.registry = registry
        self.store = store
        self.sealer = private_jobs.Sealer(keys)  # NIP-44: private runs' jobs
        self.private_runs: set[str] = set()
        self.active: dict[str, ActiveJob] = {}
        self.attempts: dict[str, Attempt] = {}
        self.runs: dict[str, RunTracker] = {}
        self.dropped: Counter[str] = Counter()
        # Requests published before their attempt is recorded (_fitted_request): a fast node's
        # answer can arrive in between, and is held here until the attempt exists.
        self._early: dict[str, list[NostrEvent]] = {}
        self.reissues: Counter[str] = Counter()  # by reason
        self.backups = Counter[str]()  # sent, won, lost; moved: queued jobs moved to idle slots
        self.slots_declined = 0  # free slots a job left for a node the forecast has finishing sooner
        self.window = InFlightWindow()  # how many jobs go out at once, market-wide
        self.completed = 0
        self.failed = 0
        self.stopped = False
        self._listeners: list[Listener] = []
        self._requeue: deque[ActiveJob] = deque()  # re-issues waiting for a free slot
        self._queued_at: dict[str, deque[Attempt]] = {}  # by node: attempts waiting their turn there
        self._slots = anyio.Event()  # set (and replaced) whenever a slot may have freed
        self._held = False  # the swarm is out of sight (no relay, no node): clocks stop
        self._outage: Outage | None = None  # the swarm's last time out of sight

    # --- the interface --------------------------------------------------------------------

    def listen(self, listener: Listener) -> None:
        """Call `listener` (synchronously, on the event loop) with every SchedulerEvent."""
        self._listeners.append(listener)

    def _emit(self, ev: SchedulerEvent) -> None:
        for listener in self._listeners:
            listener(ev)

    def job_changed(self, tele: JobTelemetry) -> None:
        """Someone else changed a job's telemetry (the payer marking it paid): tell listeners."""
        self._emit(JobChanged(tele))

    def job(self, job_id: str) -> ActiveJob | None:
        """The job while it is outstanding, else None."""
        return self.active.get(job_id)

    def hold(self, job: ActiveJob, seconds: float) -> None:
        """Give the current attempt `seconds` more before a re-issue (the node answered)."""
        if job.current is not None:
            job.current.deadline = time.time() + seconds

    def slots_changed(self) -> None:
        """A slot may have freed or a node come online: wake whoever waits for one."""
        self._slots.set()
        self._slots = anyio.Event()

    async def telemetry(self, job_id: str) -> JobTelemetry:
        """A job's telemetry, outstanding or finished; raises UnknownJob."""
        job = self.active.get(job_id)
        if job is not None:
            return job.tele
        t = await self.store.job(job_id)
        if t is None:
            raise UnknownJob(f"unknown job {job_id}")
        return t

    async def result(self, job_id: str) -> FileResult:
        """A completed job's verified result; raises UnknownJob."""
        content = await self.store.result_content(job_id)
        if content is None:
            t = await self.telemetry(job_id)
            raise UnknownJob(f"job {job_id} has no result (state {t.state.value})")
        return _result_decoder.decode(content)

    def track_run(self, run_id: str, total: int) -> RunTracker:
        tracker = self.runs[run_id] = RunTracker(run_id, total)
        return tracker

    def end_run(self, run_id: str) -> None:
        self.runs.pop(run_id, None)

    async def wait_for_node(
        self, timeout: float, exclude: set[str] | frozenset[str] = frozenset()
    ) -> str | None:
        """A usable node now, or within `timeout`, or None (busy or not)."""
        node = self.registry.pick(exclude)
        if node is not None or timeout <= 0:
            return node
        with anyio.move_on_after(timeout):
            while node is None:
                await self._wait_slots(SLOT_POLL_S)
                node = self.registry.pick(exclude)
        return node

    async def _wait_slots(self, at_most: float) -> None:
        with anyio.move_on_after(at_most):
            await self._slots.wait()

    def _reserve(self, node: str) -> str:
        self.registry.entry(node).assigned_now += 1
        return node

    async def _claim_slot(
        self, timeout: float, avoid: frozenset[str] = frozenset(), run_id: str | None = None
    ) -> str | None:
        """A node with a free slot, reserved; waits up to `timeout` for one to free.

        Re-issues go first. Near the end of a run a free slot the forecast leaves unused (a
        slow node, when faster ones will finish the rest sooner) is not taken; the job waits
        for the lane the forecast gave it, at most as long as waiting can still gain. With no
        free slot in time the job goes to the least-loaded live node's queue (a swarm that is
        all busy still takes work); with no node, None.
        """
        deadline = time.monotonic() + timeout
        patience_until: float | None = None
        held = False
        while True:
            window_wait: float | None = None
            # Judged now, not by the scan loop's last verdict: a buyer that has just come up is
            # "held" until its next scan, and a job taken then must still respect the slots.
            if not self.pool.is_connected() or not self.registry.any_online():
                # The swarm out of sight (a relay restart): no slot can free until it is back, so
                # the job goes into the outbox for the node that was least loaded when last heard.
                node = self.registry.pick(avoid) or self.registry.pick_recent(OUTAGE_HOLD_S, avoid)
                if node is not None:
                    return self._reserve(node)
            elif not self._requeue and not self._window_admits():
                window_wait = self.window.wait_s(time.monotonic())
            elif not self._requeue:
                choice = self._choose_free(avoid, run_id, pack=held or self._packing())
                if choice is not None:
                    node, planned, patience_s = choice
                    now = time.monotonic()
                    if planned or (patience_until is not None and now >= patience_until):
                        return self._reserve(node)
                    if patience_until is None:
                        self.slots_declined += 1
                        patience_until = now + patience_s
                        log.debug("slot_declined", node=node[:12], patience_s=round(patience_s, 3))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait = min(remaining, SLOT_POLL_S)
            if window_wait is not None:
                wait = min(wait, window_wait)
                if not held:
                    held = True
                    self.window.held += 1
            if patience_until is not None:
                wait = max(0.0, min(wait, patience_until - time.monotonic()))
            await self._wait_slots(wait)
        node = self.registry.pick(avoid)
        return self._reserve(node) if node is not None else None

    def _out(self) -> int:
        return sum(e.assigned_now for e in self.registry.nodes.values())

    def _window_admits(self) -> bool:
        return self.window.admits(self._out(), time.monotonic())

    def window_status(self) -> rpc.InFlight:
        w = self.window
        return rpc.InFlight(out=self._out(), limit=w.limit, held=w.held, cuts=w.cuts, probes=w.probes)

    def _packing(self) -> bool:
        """Whether new jobs go to the busiest node with a free slot rather than the idlest: while
        the window holds jobs back (this one, or others lately), the bottleneck is shared (the
        buyer, the relay, a CPU), and the fewer nodes hold the jobs, the fewer processes wake
        for each and the more each wake-up carries. Otherwise the work is spread."""
        return self.window.binding(time.monotonic())

    def _choose_free(
        self, avoid: frozenset[str], run_id: str | None, *, pack: bool = False
    ) -> tuple[str, bool, float] | None:
        """The free slot for a job: (node, whether the forecast plans to use it, how long the
        job may wait for a better one), or None when no slot is free.

        Outside a run, the least-loaded node. In a run, the jobs it has still to send are
        planned by earliest finish (pylon.daemon.buyer.forecast); of the free nodes the plan
        uses, the one that finishes soonest. Where the plan uses none, the soonest free one,
        which the job may take once waiting longer gains nothing: the difference between its
        service time and that of the node the plan gave the job."""
        tracker = self.runs.get(run_id) if run_id else None
        if tracker is None:
            node = self.registry.pick_free(avoid, pack=pack)
            return (node, True, 0.0) if node is not None else None
        if not self.registry.any_free(avoid):
            return None  # the common case under load, found without judging every node
        now = time.time()
        entries = self.registry.usable_entries(now, avoid)
        free = [e.pubkey for e in self.registry.fresh_first([e for e in entries if e.free_slots() > 0], now)]
        if not free:
            return None
        view = self._forecast(now, entries, run_id)
        lanes_of, service_of = view.lanes_of, view.service_of
        unsent = tracker.total - tracker.completed - tracker.failed - view.open_in_run
        to_go = max(1, unsent) + len(self._requeue)
        given = forecast.plan(lanes_of, service_of, to_go, until=free)  # mid-run: a few steps

        def finish(node: str) -> tuple[float, float]:
            return (view.finish(node), random.random())

        def measured_then_finish(node: str) -> tuple[bool, float, float]:
            # A node we have no measure of yet goes first while the plan has work for it: how
            # else would it ever be measured (and the swarm's new nodes get a share)?
            return (self.registry.entry(node).service.samples > 0, *finish(node))

        def measured_then_load(node: str) -> tuple[bool, float, float]:
            e = self.registry.entry(node)
            return (e.service.samples > 0, e.assigned_now / e.slots(), random.random())

        def newcomers_then_busiest(node: str) -> tuple[bool, float, int, float]:
            # A node not handed a job of this run yet gets one first: each has a share of the
            # run (and a measure); the rest are packed.
            e = self.registry.entry(node)
            return (node in tracker.nodes, -e.assigned_now / e.slots(), -e.completed_for_us, random.random())

        planned = [n for n in free if given[n] > 0]
        # Alike: every free slot finishes within `material` of the best any lane could (busy ones too).
        soonest = min(view.finish(n) for n in lanes_of)
        latest_free = max(view.finish(n) for n in free)
        alike = latest_free - soonest < view.material()
        if alike or len(planned) == len(free):
            # Every free slot is to be filled whichever job takes it (mid-run), or they are all
            # alike (jobs of milliseconds, where measures are noise): the work is spread, least
            # loaded first, and speed decides only who waits near the end.
            if pack:
                return min(free, key=newcomers_then_busiest), True, 0.0
            return min(free, key=measured_then_load), True, 0.0
        if planned:
            return min(planned, key=measured_then_finish), True, 0.0
        best = min(free, key=finish)
        first = min(lanes_of, key=finish)
        return best, False, max(0.0, service_of[best] - service_of[first])

    def _forecast(self, now: float, entries: list[NodeEntry], run_id: str | None = None) -> _View:
        """Each node's lanes and service time (pylon.daemon.buyer.forecast), the attempts each
        holds, and how many jobs of `run_id` are out."""
        view = _View()
        for job in self.active.values():
            if run_id is not None and job.tele.run_id == run_id:
                view.open_in_run += 1
            for att in job.open_attempts():
                if att.node:
                    view.held.setdefault(att.node, []).append(att)
        typical = forecast.typical_service(e.service for e in self.registry.nodes.values())
        for e in entries:
            s = view.service_of[e.pubkey] = e.service.service_s or typical
            view.width[e.pubkey] = e.slots()
            view.lanes_of[e.pubkey] = forecast.lanes(
                now, e.slots(), s, (forecast.Held(a.started) for a in view.held.get(e.pubkey, ()))
            )
        return view

    def soonest(self, nodes: list[str]) -> str | None:
        """Of these nodes, the one that would finish a job handed to it now soonest (by the
        forecast: its queue of our jobs and its service time), or None if none is usable."""
        now = time.time()
        wanted = set(nodes)
        entries = [e for e in self.registry.usable_entries(now) if e.pubkey in wanted]
        if not entries:
            return None
        return self._forecast(now, entries).soonest(e.pubkey for e in entries)

    # --- start-up -------------------------------------------------------------------------

    async def resume(self) -> int | None:
        """Load the counters and rebuild the jobs a previous run left outstanding (crash, kill -9).

        Their inputs and attempts are in SQLite; results that arrived meanwhile are on the relay
        and come in through the subscription (its `since` is the returned time). Attempts whose
        deadline passed are re-issued by the scan loop as usual; a job caught between two
        attempts waits for a slot like any re-issue.
        """
        self.private_runs = await self.store.private_runs()
        counts = await self.store.state_counts()
        self.completed = counts.get(JobState.COMPLETED.value, 0)
        self.failed = counts.get(JobState.FAILED.value, 0)
        open_states = tuple(s.value for s in JobState if s not in TERMINAL_STATES)
        jobs = [t for t in await self.store.all_jobs() if t.state.value in open_states]
        if not jobs and not await self.store.running_run_count():
            return None
        oldest = time.time()
        for t in jobs:
            text = await self.store.input_text(t.job_id)
            if text is None:
                if t.run_id:  # the coordinator sends the file again from the snapshot
                    await self.store.forget_job(t.job_id)
                else:
                    t.state, t.error = JobState.FAILED, ErrorCode.BAD_INPUT
                    self.store.put(t)
                    log.warning("resume_lost_input", job_id=t.job_id, path=t.path)
                continue
            job = ActiveJob(
                tele=t,
                text=text,
                sha256=nip90.sha256_hex(text.encode()),
                size=len(text.encode()),
                private=t.run_id in self.private_runs,
            )
            timeout = (
                self.config.result_timeout_s
                if t.state == JobState.PROCESSING
                else self.config.pickup_timeout_s
            )
            for request_id, node, issued, outcome in await self.store.attempts_of(t.job_id):
                att = Attempt(
                    request_id=request_id,
                    job_id=t.job_id,
                    node=node,
                    issued=issued,
                    started=issued,
                    picked_up=t.state == JobState.PROCESSING,
                    closed=outcome is not None,
                    deadline=issued + timeout,
                )
                self.attempts[request_id] = att
                if node:
                    job.tried.add(node)
                if not att.closed:
                    if job.current is not None:  # two open: the older was a backup's twin
                        job.backup, job.current.backup = job.current, True
                    job.current = att
                    if node:
                        self.registry.entry(node).assigned_now += 1
                oldest = min(oldest, issued)
            self.active[t.job_id] = job
            if job.current is None:
                job.waiting_since = time.time()
                self._requeue.append(job)
        runs = await self.store.running_run_progress()
        for run_id, files, done, failed in runs:
            tracker = RunTracker(run_id, files)
            tracker.completed, tracker.failed = done, failed
            if tracker.completed + tracker.failed >= files:
                tracker.done.set()
            self.runs[run_id] = tracker
        log.info("buyer_resumed", jobs=len(self.active), runs=len(runs))
        return int(oldest) - 5

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
        avoid: frozenset[str] = frozenset(),
        check_of: str | None = None,
        private: bool = False,
    ) -> ActiveJob:
        """Hand one job to `node`, or (the default) to the first node with a free slot, and publish it.

        Waits for a free slot up to `wait_node_s` (default: the pickup timeout); the job id is
        its first request's id, so a job exists from the moment a node is chosen for it. Never
        to a node in `avoid`; `check_of` marks the job as a spot check of that job (its request
        tags it); `private`: sealed to that node with NIP-44 (always targeted: see private_jobs).
        """
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
            node = await self._claim_slot(
                self.config.pickup_timeout_s if wait_node_s is None else wait_node_s, avoid, run_id
            )
        else:
            self._reserve(node)
        if node is None:
            raise SubmitError(
                ErrorCode.PROVIDER_OFFLINE,
                "no provider node is online; start a local stack with: pylon up --nodes 3 "
                "(or one node beside this buyer: pylon node up)",
            )
        tracker = self.runs.get(run_id) if run_id else None
        if tracker is not None and check_of is None:
            tracker.nodes.add(node)
        try:
            job = await self._publish_first(
                path, text, lang, size, run_id, node, tasks, avoid, check_of, private
            )
        except BaseException:
            self._release(node)
            raise
        return job

    async def _publish_first(
        self,
        path: str,
        text: str,
        lang: str,
        size: int,
        run_id: str | None,
        node: str,
        tasks: tuple[str, ...],
        avoid: frozenset[str],
        check_of: str | None,
        private: bool,
    ) -> ActiveJob:
        sha = nip90.sha256_hex(text.encode())
        chunk_ids: list[str] = []

        async def build() -> NostrEvent:
            nonlocal chunk_ids
            if private:  # random nonces: a sealed request's id is always fresh
                return await private_runs.sealed_request(
                    self,
                    node=node,
                    path=path,
                    language=lang,
                    text=text,
                    sha256=sha,
                    size=size,
                    run_id=run_id,
                    tasks=tasks,
                    check_of=check_of,
                )
            if not chunk_ids and nip90.needs_chunks(text, self.pool.budget()):
                # fitted to the relays' limits (a private job's chunks are sealed above)
                chunk_ids = await fitting.publish_chunks(self.pool, self.keys, text)

            def sign_request() -> NostrEvent:
                return nip90.build_request(
                    self.keys,
                    path=path,
                    language=lang,
                    text=None if chunk_ids else text,
                    sha256=sha,
                    size=size,
                    chunk_ids=chunk_ids,
                    node=node,
                    run_id=run_id,
                    bid_msats=self.config.bid_msats,
                    pow_bits=self.config.pow_bits,
                    tasks=tasks,
                    check_of=check_of,
                )

            req = sign_request()
            while req.id in self.attempts:
                # The same file submitted twice within one millisecond signs to the same id:
                # the clock ticking over gives the second job an id of its own.
                await anyio.sleep(0.001)
                req = sign_request()
            return req

        try:
            req, published = await self._fitted_request(build)
        except PublishError as exc:
            raise SubmitError(ErrorCode.TOO_LARGE, f"{path}: {exc}") from exc
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
            avoid=avoid,
            private=private,
            check_of=check_of,
        )
        job.current = self._issue(job, req, node, now)
        self.store.put(tele)
        self.store.put_input(req.id, path, lang, text)
        if not published:
            self.pool.publish_nowait(req)
        self._emit(JobChanged(tele))
        await self._held_news(req.id)
        return job

    async def _fitted_request(self, build: Callable[[], Awaitable[NostrEvent]]) -> tuple[NostrEvent, bool]:
        """A request the relays will take, and whether it is already published.

        Built for the pool's budget. Where it is bigger than anything some relay is known to
        take (a relay that publishes no limits, early in a run) it is published here and its
        OK awaited: a refusal as too large teaches a smaller limit and the request is built
        again, before any attempt is recorded, so a job's id is always an event the relays
        hold. Raises PublishError when the relays refuse every fitting."""
        for round_ in range(fitting.MAX_REFITS + 1):
            before = tuple(self.pool.budget())
            req = await build()
            if not self.pool.uncharted(req):
                return req, False
            self._early[req.id] = []  # the caller records the attempt, then calls _held_news
            try:
                res = await self.pool.publish_checked(req, timeout=fitting.OK_TIMEOUT_S)
            except BaseException:
                self._early.pop(req.id, None)
                raise
            if res.ok or not res.refused:
                return req, True  # taken, or no answer yet (the pool replays it)
            self._early.pop(req.id, None)
            smaller = tuple(self.pool.budget()) < before
            if res.refused_as(Refusal.TOO_LARGE) and smaller and round_ < fitting.MAX_REFITS:
                log.info("request_refit", event_id=req.id[:12], content=self.pool.budget().content)
                continue
            raise PublishError(f"the relays refused the request: {res.reason()}", res)
        raise AssertionError("unreachable")

    async def _held_news(self, request_id: str) -> None:
        """The attempt on `request_id` is recorded: what its node said meanwhile is taken now
        (a result in parts is fetched here, a rare case: an answer faster than the relay's OK)."""
        for ev in self._early.pop(request_id, ()):
            coro = self.on_job_event(ev)
            if coro is not None:
                await coro  # type: ignore[misc]

    def _ack_timeout(self, node: str | None) -> float:
        """How long an assignment may go unacknowledged: ~2 of the node's heartbeat intervals."""
        if not node:
            return self.config.pickup_timeout_s
        interval = self.registry.entry(node).interval(self.config.heartbeat_s)
        return min(self.config.pickup_timeout_s, max(ACK_FLOOR_S, ACK_INTERVALS * interval))

    def _issue(
        self, job: ActiveJob, req: NostrEvent, node: str | None, now: float, *, backup: bool = False
    ) -> Attempt:
        """Record an attempt on `node` (its slot already reserved)."""
        att = Attempt(
            request_id=req.id,
            job_id=job.tele.job_id,
            node=node,
            issued=now,
            deadline=now + self._ack_timeout(node),
            backup=backup,
            # Its slot is already reserved: beyond what the node runs at once it waits its turn.
            started=now if not node or self.registry.entry(node).assigned_now <= self._width(node) else None,
        )
        self.attempts[req.id] = att
        self.active[job.tele.job_id] = job
        if node:
            job.tried.add(node)
            if att.started is None:
                self._queued_at.setdefault(node, deque()).append(att)
        self.store.open_attempt(req.id, job.tele.job_id, node, now)
        return att

    def _width(self, node: str) -> int:
        """How many of our jobs the node runs at once."""
        entry = self.registry.entry(node)
        return min(entry.declared_slots(), SLOT_CAP)

    def _next_starts(self, node: str, now: float) -> None:
        """A job of ours on `node` ended: the oldest one queued there starts now."""
        queue = self._queued_at.get(node)
        while queue:
            att = queue.popleft()
            if not att.closed and att.started is None:
                att.started = now
                return

    def _drop_closed(self, node: str) -> None:
        """Forget the closed attempts at the head of `node`'s queue (a dead node's stay no longer)."""
        queue = self._queued_at.get(node)
        while queue and queue[0].closed:
            queue.popleft()
        if not queue:
            self._queued_at.pop(node, None)

    def _release(self, node: str) -> None:
        entry = self.registry.entry(node)
        entry.assigned_now = max(0, entry.assigned_now - 1)
        self.slots_changed()

    async def _publish_attempt(self, job: ActiveJob, node: str, *, backup: bool) -> Attempt | None:
        """Another attempt at `job` on `node` (slot reserved): a re-issue or a backup copy; None
        when the job finished meanwhile. Raises PublishError when the relays take no fitting of
        its input."""

        async def build() -> NostrEvent:
            if not job.private and not job.chunk_ids and nip90.needs_chunks(job.text, self.pool.budget()):
                job.chunk_ids = await fitting.publish_chunks(self.pool, self.keys, job.text)
            if job.private:  # sealed afresh for the new node, its chunks included
                return await private_runs.reseal(self, job, node)
            return nip90.build_request(
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
                check_of=job.check_of,
            )

        req, published = await self._fitted_request(build)
        if job.done.is_set():
            # Finished while its request was being fitted or awaited its OK (the other attempt's
            # result won, or a cancel): recording this attempt would bring the job back to life
            # and its result would finish it, and count it in its run, a second time.
            self._early.pop(req.id, None)
            self._release(node)
            if published:  # the node may be at it already: ask it to drop it
                self._cancel_request(req.id, node, SUPERSEDED)
            return None
        job.tele.attempts += 1
        att = self._issue(job, req, node, time.time(), backup=backup)
        if backup:
            job.backup = att
        else:
            job.current = att
            job.tele.provider_pubkey = node
            job.tele.state = JobState.ASSIGNED
        self.store.put(job.tele)
        if not published:
            self.pool.publish_nowait(req)
        self._emit(JobChanged(job.tele))
        await self._held_news(req.id)
        return att

    def _deterministic(self, att: Attempt | None, reason: ErrorCode, job: ActiveJob) -> bool:
        """A failure another node would repeat: same input, same deterministic executor."""
        if reason in NO_RETRY:
            return True
        if reason != ErrorCode.EXEC_ERROR or att is None or not att.node or REDUCE_TASK in job.tasks:
            return False
        ann = self.registry.entry(att.node).announce
        return ann is not None and ann.executors == ["deterministic"]

    def _reissue(self, job: ActiveJob, reason: ErrorCode, message: str, *, tell_node: bool = True) -> None:
        """The current attempt failed: the backup carries on, or the job waits for a free slot
        on another node, or it fails (a deterministic failure, or max_attempts reached)."""
        att = job.current
        if att is not None:
            self._close_attempt(att, reason)
            if tell_node:
                self._tell_stop(att, reason.value)
        job.current = None
        if job.backup is not None and not job.backup.closed:
            job.current, job.backup = job.backup, None
            job.current.backup = False
            job.tele.provider_pubkey = job.current.node
            self.store.put(job.tele)
            log.info("job_backup_carries_on", job_id=job.tele.job_id, reason=reason.value)
            self._emit(JobChanged(job.tele))
            return
        if (
            self._deterministic(att, reason, job)
            or job.tele.attempts >= self.config.max_attempts
            or self.stopped
        ):
            self._finish(job, JobState.FAILED, error=reason)
            log.info(
                "job_failed", job_id=job.tele.job_id, path=job.tele.path, error=reason.value, detail=message
            )
            return
        self.reissues[reason.value] += 1
        job.last_reason = reason
        job.waiting_since = time.time()
        self._requeue.append(job)
        self.slots_changed()

    async def dispatch_loop(self) -> None:
        """Re-issued jobs go out as slots free, oldest first, to a node not tried yet if one is free."""
        while True:
            if not self._requeue:
                await self._wait_slots(SLOT_POLL_S)
                continue
            job = self._requeue[0]
            if job.tele.job_id not in self.active or job.current is not None:
                self._requeue.popleft()
                continue
            last = {n for n in job.tried}
            node = self.registry.pick_free(last | job.avoid) or self.registry.pick_free(job.avoid)
            if node is None:
                waited = time.time() - job.waiting_since
                if self._held or waited < self.config.pickup_timeout_s:
                    await self._wait_slots(SLOT_POLL_S)
                    continue
                # all busy for a whole pickup timeout: queue it on the least-loaded live node
                node = self.registry.pick(job.tried | job.avoid) or self.registry.pick(job.avoid)
                if node is None:
                    self._requeue.popleft()
                    self._finish(job, JobState.FAILED, error=ErrorCode.PROVIDER_OFFLINE)
                    continue
            self._requeue.popleft()
            self._reserve(node)
            try:
                att = await self._publish_attempt(job, node, backup=False)
            except PublishError as exc:  # no fitting of its input is accepted: it never will be
                self._release(node)
                job.current = None
                log.warning("reissue_unpublishable", job_id=job.tele.job_id, error=str(exc)[:300])
                self._finish(job, JobState.FAILED, error=ErrorCode.TOO_LARGE)
                continue
            except Exception as exc:  # the relay refused it: try again with the next slot
                self._release(node)
                job.current = None
                job.waiting_since = time.time()
                self._requeue.append(job)
                log.warning("reissue_publish_failed", job_id=job.tele.job_id, error=str(exc))
                await anyio.sleep(SLOT_POLL_S)
                continue
            if att is None:
                continue
            log.info(
                "job_reissued",
                job_id=job.tele.job_id,
                attempt=job.tele.attempts,
                node=node[:12],
                reason=job.last_reason.value if job.last_reason else None,
            )

    def _tell_stop(self, att: Attempt, reason: str) -> None:
        """Ask the attempt's node to drop it (a cancel it honours from us only)."""
        if att.node:
            self._cancel_request(att.request_id, att.node, reason)

    def _cancel_request(self, request_id: str, node: str, reason: str) -> None:
        self.pool.publish_nowait(
            nip90.build_cancel(self.keys, request_id=request_id, node=node, reason=reason)
        )

    def _close_attempt(self, att: Attempt, outcome: ErrorCode | str) -> None:
        if att.closed:
            return
        att.closed = True
        value = outcome.value if isinstance(outcome, ErrorCode) else outcome
        if att.node:
            entry = self.registry.entry(att.node)
            entry.assigned_now = max(0, entry.assigned_now - 1)
            if value not in ("completed", SUPERSEDED, ErrorCode.CANCELLED.value):
                entry.failed_for_us += 1
            if att.started is not None:
                self._next_starts(att.node, time.time())
            else:
                self._drop_closed(att.node)
        self.store.close_attempt(att.request_id, None if value == "completed" else value)
        self.slots_changed()

    def _finish(self, job: ActiveJob, state: JobState, *, error: ErrorCode | None = None) -> None:
        if job.done.is_set():  # a job ends once: its run counts it once
            return
        job.tele.state = state
        job.tele.error = error
        for att in job.open_attempts():
            outcome = "completed" if state == JobState.COMPLETED else (error or "cancelled")
            self._close_attempt(att, outcome)
            if state == JobState.CANCELLED:
                self._tell_stop(att, "cancelled")
        self.active.pop(job.tele.job_id, None)
        if state == JobState.COMPLETED:
            self.completed += 1
        elif state == JobState.FAILED:
            self.failed += 1
        self.store.put(job.tele)
        if job.tele.run_id and job.tele.run_id in self.runs:
            self.runs[job.tele.run_id].finish(state == JobState.COMPLETED)
        job.done.set()
        self._emit(JobChanged(job.tele))

    # --- incoming events --------------------------------------------------------------------

    def on_job_event(self, ev: NostrEvent) -> object:
        """Synchronous for the common case (no task per event); returns a coroutine, which the
        relay pool runs as a task, only when the event needs I/O (result parts)."""
        if self._early:
            held = self._early.get(nip90.result_job_id(ev) or "")
            if held is not None:
                if len(held) < EARLY_HELD_MAX:  # a node has a few things to say, not hundreds
                    held.append(ev)
                else:
                    self.dropped["early_flood"] += 1
                return None
        try:
            if ev.kind == kinds.JOB_RESULT:
                if nip90.result_part_ids(ev):
                    return self._counted(self._on_result(ev))
                self._accept_result(ev, ())
            elif ev.kind == kinds.JOB_FEEDBACK:
                self._on_feedback(ev)
        except InvalidEvent as exc:
            self.dropped[exc.reason] += 1
        return None

    async def _counted(self, coro: object) -> None:
        try:
            await coro  # type: ignore[misc]
        except InvalidEvent as exc:
            self.dropped[exc.reason] += 1

    def _on_feedback(self, ev: NostrEvent) -> None:
        fb = nip90.parse_feedback(ev)
        att = self.attempts.get(fb.job_id)
        if att is None:
            raise InvalidEvent("unknown_job")
        if att.node and ev.pubkey != att.node:
            raise InvalidEvent("feedback_from_unassigned")
        job = self.active.get(att.job_id)
        if job is None or att.closed or (att is not job.current and att is not job.backup):
            return  # an old attempt's news: the job moved on
        if fb.status == FeedbackStatus.PROCESSING:
            if not att.picked_up:
                att.picked_up = True
                att.picked_up_ms = fb.at_ms or None
                att.deadline = time.time() + self.config.result_timeout_s
                if att is job.current:
                    job.tele.state = JobState.PROCESSING
                    # The node's clock, put on ours with the offset its heartbeats showed.
                    at = self.registry.to_local(ev.pubkey, fb.at_ms / 1000) if fb.at_ms else None
                    job.tele.picked_up = at or time.time()
                    self.store.put(job.tele)
                    self._emit(JobChanged(job.tele))
        elif fb.status == FeedbackStatus.ERROR:
            code = fb.error or ErrorCode.EXEC_ERROR
            if att is job.backup:
                self._close_attempt(att, code)
                job.backup = None
            else:
                self._reissue(job, code, fb.message, tell_node=False)
        elif fb.status == FeedbackStatus.PAYMENT_REQUIRED:
            if att is job.backup:  # a copy is not worth paying for up front
                self._close_attempt(att, SUPERSEDED)
                self._tell_stop(att, SUPERSEDED)
                job.backup = None
            else:
                self._emit(PaymentAsked(job, att, fb))
        # PARTIAL: a part of a big result, fetched by id when the result arrives

    def _result_attempt(self, ev: NostrEvent) -> Attempt:
        """The attempt a result answers, if its signer is the node that attempt went to."""
        att = self.attempts.get(nip90.result_job_id(ev) or "")
        if att is None:
            raise InvalidEvent("unknown_job")
        if att.node and ev.pubkey != att.node:
            raise InvalidEvent("result_from_unassigned")
        return att

    async def _on_result(self, ev: NostrEvent) -> None:
        if self._result_attempt(ev).job_id not in self.active:
            raise InvalidEvent("late_result")
        parts = await self.pool.query([Filter(ids=nip90.result_part_ids(ev))], timeout=15)
        self._accept_result(ev, parts)

    def _accept_result(self, ev: NostrEvent, parts: list[NostrEvent] | tuple[()]) -> None:
        """The first valid result of any attempt of an open job wins; the others are told to stop."""
        att = self._result_attempt(ev)
        parsed = private_jobs.parse_result(ev, parts, self.sealer)  # decrypts a private job's result
        job = self.active.get(att.job_id)
        if job is None:
            raise InvalidEvent("late_result")
        if parsed.result.input_sha256 and parsed.result.input_sha256 != job.sha256:
            raise InvalidEvent("result_for_other_input")
        now = time.time()
        t = job.tele
        if att.backup:
            self.backups["won"] += 1
        for other in job.open_attempts():
            if other is not att:
                self._close_attempt(other, SUPERSEDED)
                self._tell_stop(other, SUPERSEDED)
        if job.current is not att:
            job.current = att
            t.provider_pubkey = att.node or ev.pubkey
        job.backup = None
        # Every stamp of the job from the winning attempt's node, put on our clock with one
        # offset: a pickup shown from another attempt (a move, a backup, a re-issue), or
        # converted with an older offset, could fall after this node's own publish stamp.
        to_local = functools.partial(self.registry.to_local, ev.pubkey)
        t.picked_up = to_local(att.picked_up_ms / 1000) if att.picked_up_ms else None
        apply_result(t, ev, parsed, to_local)
        t.received = now
        self.window.delivered(now - att.issued, t.exec_time or 0.0, time.monotonic())
        if att.node:
            delivered = self.registry.entry(att.node)
            delivered.completed_for_us += 1
            delivered.missed_acks = 0
            if att.started is not None:
                delivered.service.observe(now - att.started)
        tracker = self.runs.get(t.run_id or "")
        if tracker is not None:
            tracker.turnarounds.append(now - att.issued)
        # Stored decoded: the event's content may be compressed.
        self.store.put_result(t.job_id, ev.id, ev.pubkey, _result_encoder.encode(parsed.result).decode())
        self._finish(job, JobState.COMPLETED)
        self._emit(ResultAccepted(t, ev))

    # --- timers -----------------------------------------------------------------------------

    async def scan_loop(self) -> None:
        held_since: float | None = None
        while True:
            if self._held:
                # Out of sight: look again as soon as a heartbeat comes in (the news may flow
                # again), not a tick later; the outage ends, and every clock restarts, sooner.
                with anyio.move_on_after(SCAN_INTERVAL_S):
                    await self._slots.wait()
            else:
                await anyio.sleep(SCAN_INTERVAL_S)
            now = time.time()
            # No relay, not one node heard from, or news from nobody of several nodes heard
            # just before: the swarm is out of sight (a relay restart or stall, our own
            # network) and that is no node's fault. Hold every job's clock instead of burning
            # its attempts, for up to OUTAGE_HOLD_S; after that fail over as usual.
            why = self._out_of_sight(now)
            if why is not None:
                if held_since is None:
                    # Out of sight from the last news on (a stall is noticed only a fresh
                    # node's silence after it, and nothing missed since proves anything), or
                    # from the moment the link dropped, if the news flowed until then.
                    dropped = self.pool.offline_since() if why == "disconnected" else None
                    held_since = self.registry.quiet_since(now, dropped)
                    log.info(
                        "swarm_out_of_sight",
                        reason=why,
                        news_lag_s=round(self.registry.news_lag(now), 2),
                        active=len(self.active),
                    )
                self._held = True
                if now - held_since < OUTAGE_HOLD_S:
                    continue
            elif held_since is not None:
                paused = min(now - held_since, OUTAGE_HOLD_S)
                for j in self.active.values():
                    for att in j.open_attempts():
                        att.deadline += paused
                self._outage = Outage(start=held_since, end=now)
                held_since = None
                self._held = False
                log.info("swarm_back", held_s=round(paused, 2), active=len(self.active))
            self._expire(now)
            await self._send_backups(now)

    def _out_of_sight(self, now: float) -> str | None:
        """Why the swarm cannot be judged now (the scan loop holds every clock), or None."""
        if not self.pool.is_connected():
            return "disconnected"
        if not self.registry.any_online():
            return "no_node_online"
        if self.registry.news_stalled(now):
            return "stalled"
        if self.registry.news_backlogged(now):
            return "backlogged"
        return None

    def _expire(self, now: float) -> None:
        """Attempts past their deadline, or on a node that stopped heartbeating, are lost.

        While the relays bring heartbeats in late, deadlines stretch by that lag, twice (the
        request and its answer both travel through them): a relay's backlog is no node's fault,
        and a job re-issued over it only adds to the backlog. The lag is measured from the
        freshest heartbeat, so no node can stretch it by lying about its own."""
        late = 2 * self.registry.news_lag(now)
        for job in list(self.active.values()):
            for att in job.open_attempts():
                gone = bool(att.node) and self.registry.lost(att.node, now, self._outage)
                if not gone and now - late <= att.deadline:
                    continue
                alive = att.node is not None and self.registry.is_online(att.node, now)
                reason = ErrorCode.PROVIDER_OFFLINE if gone or not alive else ErrorCode.TIMEOUT
                if att is job.backup:
                    self._close_attempt(att, reason)
                    self._tell_stop(att, reason.value)
                    job.backup = None
                    continue
                phase = "heartbeat" if gone else ("result" if att.picked_up else "acknowledgement")
                entry = self.registry.nodes.get(att.node or "")
                log.info(
                    "attempt_lost",
                    job_id=job.tele.job_id,
                    node=(att.node or "")[:12],
                    phase=phase,
                    reason=reason.value,
                    age_s=round(now - att.issued, 2),
                    heard_s=round(now - entry.last_heartbeat, 2) if entry and entry.last_heartbeat else None,
                    news_lag_s=round(late / 2, 2),
                )
                if phase == "acknowledgement" and att.node:
                    self.registry.entry(att.node).missed_acks += 1
                self._reissue(job, reason, f"no {phase} in time")

    async def _send_backups(self, now: float) -> None:
        """A run with nothing left to hand out: its queued jobs move to idle nodes that finish
        them sooner, and copies of its stragglers go to idle nodes.

        A straggler is a task running past BACKUP_FACTOR × the run's typical turnaround (a node
        that got slow or stuck), or one that an idle node would finish, by the forecast, well
        before its own node is due to (the last job on a node three times slower)."""
        if self._requeue or self.stopped or not self.runs:
            return
        for tracker in list(self.runs.values()):
            remaining = tracker.total - tracker.completed - tracker.failed
            open_jobs = [j for j in self.active.values() if j.tele.run_id == tracker.run_id]
            if not open_jobs or len(open_jobs) < remaining:
                continue  # files still to be submitted: slots are better spent on them
            await self._move_queued(open_jobs)
            typical = tracker.typical_s()
            after = max(BACKUP_MIN_S, BACKUP_FACTOR * typical) if typical is not None else None
            usable = self.registry.usable_entries(now)  # judged once a pass; their slots are live
            view: _View | None = None
            for job in open_jobs:
                att = job.current
                if att is None or att.closed or job.backup is not None or not att.picked_up:
                    continue
                if not any(e.free_slots() > 0 for e in usable):
                    return  # no idle node left
                view = view or self._forecast(now, usable)
                straggling = after is not None and now - att.issued >= after
                node = self._sooner_than(att, job, now, straggling, view, usable)
                if node is None:
                    continue
                view = None  # that node's lanes change
                self._reserve(node)
                try:
                    copy = await self._publish_attempt(job, node, backup=True)
                except Exception as exc:
                    self._release(node)
                    log.warning("backup_publish_failed", job_id=job.tele.job_id, error=str(exc))
                    return
                if copy is None:
                    continue
                self.backups["sent"] += 1
                log.info(
                    "job_backup_sent",
                    job_id=job.tele.job_id,
                    node=node[:12],
                    running_s=round(now - att.issued, 2),
                    typical_s=round(typical, 2) if typical is not None else None,
                    straggling=straggling,
                )

    def _sooner_than(
        self, att: Attempt, job: ActiveJob, now: float, straggling: bool, view: _View, usable: list[NodeEntry]
    ) -> str | None:
        """An idle node of `usable` (a free slot, untried by the job if there is one) for a copy
        of `att`: the soonest to finish, for a straggler; else only one that the forecast has
        finishing well before `att` is due. None: no copy."""
        barred = job.avoid | {att.node or ""}
        free = [e for e in usable if e.pubkey not in barred and e.free_slots() > 0]
        nodes = [e.pubkey for e in self.registry.fresh_first(free, now) if e.pubkey in view.lanes_of]
        untried = [n for n in nodes if n not in job.tried]
        best = view.soonest(untried or nodes)
        if best is None or att.node is None:
            return None
        if straggling:
            return best
        if att.started is None or att.node not in view.service_of:
            return None  # still queued (a move's business), or its node is out of sight
        due = att.started + view.service_of[att.node]
        gain = due - view.finish(best)
        # As for stragglers, a copy that saves less than BACKUP_MIN_S costs more than it can save.
        return best if gain > max(BACKUP_MIN_S, FORECAST_GAIN * view.service_of[best]) else None

    def _queued_behind(self, jobs: list[ActiveJob]) -> list[ActiveJob]:
        """Jobs that wait in a node's queue: on a node holding more of ours than it runs at once
        (the job prefetched to it), the most recently issued ones, as many as it holds too many."""
        by_node: dict[str, list[ActiveJob]] = {}
        for j in jobs:
            att = j.current
            if att is None or att.closed or att.node is None or j.backup is not None:
                continue
            by_node.setdefault(att.node, []).append(j)
        queued: list[ActiveJob] = []
        for node, held in by_node.items():
            entry = self.registry.entry(node)
            # what the node runs at once is what it declares, however few slots we fill there
            extra = entry.assigned_now - self._width(node)
            if extra > 0:
                held.sort(key=lambda j: j.current.issued if j.current else 0.0, reverse=True)
                queued.extend(held[:extra])
        return queued

    def _idle_sooner(self, old: Attempt, job: ActiveJob, now: float, view: _View) -> str | None:
        """An idle node (a slot that runs nothing of ours) that would finish a job queued behind
        `old`'s node's work sooner than that node, by the forecast; None if there is none."""
        if old.node is None:
            return None
        # a slot that runs nothing of ours (prefetch credit does not count)
        usable = self.registry.usable_entries(now, job.tried | job.avoid)
        idle = self.registry.fresh_first([e for e in usable if e.assigned_now < e.slots()], now)
        best = view.soonest(e.pubkey for e in idle if e.pubkey in view.lanes_of)
        if best is None:
            return None
        if old.node not in view.service_of:
            return best  # its node is out of sight: anywhere is sooner
        # where the queued job stands: its node's lanes without it, then its own service time
        service = view.service_of[old.node]
        others = (forecast.Held(a.started) for a in view.held.get(old.node, ()) if a is not old)
        due = forecast.finish_at(forecast.lanes(now, view.width[old.node], service, others), service)
        return best if view.finish(best) < due - view.material() else None

    async def _move_queued(self, jobs: list[ActiveJob]) -> None:
        """A run with nothing left to hand out and a node with an idle slot that would finish it
        sooner: a job still queued behind another node's work moves there (prefetching hid the
        round trip while there was work to spare; at the end it would leave the idle node idle
        and the run waiting). The old attempt is told to drop it; if it had started after all,
        the first result wins."""
        view: _View | None = None
        for job in self._queued_behind(jobs):
            old = job.current
            if old is None or old.closed or job.done.is_set():
                continue
            now = time.time()
            view = view or self._forecast(now, self.registry.usable_entries(now))
            node = self._idle_sooner(old, job, now, view)
            if node is None:
                continue
            view = None
            self._reserve(node)
            try:
                copy = await self._publish_attempt(job, node, backup=True)
            except Exception as exc:
                self._release(node)
                log.warning("move_publish_failed", job_id=job.tele.job_id, error=str(exc))
                return
            if copy is None:
                continue
            if job.current is not old or old.closed:  # it ended or moved on while published
                continue
            self._close_attempt(old, SUPERSEDED)
            self._tell_stop(old, SUPERSEDED)
            job.current, job.backup, copy.backup = copy, None, False
            job.tele.provider_pubkey = node
            self.store.put(job.tele)
            self._emit(JobChanged(job.tele))
            self.backups["moved"] += 1
            log.info("job_moved", job_id=job.tele.job_id, node=node[:12], from_node=(old.node or "")[:12])

    async def resync_loop(self) -> None:
        """Ask the relay again for news of attempts that have gone quiet.

        Relays may drop live events for a lagging subscriber; rather than wait out a whole
        pickup or result timeout, attempts quiet for a couple of seconds are looked up by id.
        """
        while True:
            await anyio.sleep(RESYNC_INTERVAL_S)
            now = time.time()
            quiet = [
                att.request_id
                for j in list(self.active.values())
                for att in j.open_attempts()
                if now - att.issued > RESYNC_QUIET_S
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
        """No new jobs until a restart; every outstanding one is cancelled."""
        self.stopped = True
        n = 0
        for j in list(self.active.values()):
            self._finish(j, JobState.CANCELLED, error=ErrorCode.CANCELLED)
            n += 1
        log.warning("buyer_stopped_all", cancelled=n)
        return n
