"""The buyer daemon (`pylon buyer up`): the scheduler, its store, the swarm registry and the
RPC socket, wired together and run until SIGTERM.

The daemon owns the lifecycle (subscriptions, timers, the socket) and the queries; the job
state machine is `Scheduler`, every SQL statement is in `BuyerStore`, each RPC request is a
route (`routes.py`). The coordinator, the narrator and the payer attach to it and use only
those public parts.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup
from pylon.daemon.buyer.registry import NodeRegistry
from pylon.daemon.buyer.routes import Routes, add_core_routes
from pylon.daemon.buyer.scheduler import JobChanged, Listener, Scheduler, SchedulerEvent
from pylon.daemon.buyer.store import BuyerStore
from pylon.daemon.config import BuyerConfig
from pylon.daemon.rpc_server import RpcServer
from pylon.schemas import kinds, rpc
from pylon.schemas.telemetry import JobTelemetry

from pylon.home import buyer_dir, buyer_socket
from pylon.home_config import relay_limits
from pylon.keys import load_or_create_keys
from pylon.logs import get_logger
from pylon.loopwatch import LoopWatch
from pylon.nostr import clock
from pylon.nostr.event import InvalidEvent, NostrEvent
from pylon.nostr.filters import Filter
from pylon.nostr.relay_client import RelayPool
from pylon.stats.compute import global_stats, provider_stats

log = get_logger("pylon.buyer")

FLUSH_INTERVAL_S = 0.2
PUSH_INTERVAL_S = 0.5


class BuyerDaemon:
    def __init__(self, config: BuyerConfig) -> None:
        self.config = config
        self.dir = buyer_dir()
        self.keys = load_or_create_keys(self.dir / "nostr.key")
        self.pubkey = self.keys.pubkey
        self.pool = RelayPool(config.relays, keys=self.keys, limits=relay_limits())
        self.registry = NodeRegistry(config.heartbeat_s, config.allow_nodes)
        self.loop_watch = LoopWatch("buyer")
        self.store: BuyerStore | None = None
        self._scheduler: Scheduler | None = None
        self.routes = Routes()
        add_core_routes(self.routes, self)
        self.rpc: RpcServer | None = None
        self._job_pushes: list[dict[str, Any]] = []
        # Attachments (pylon.daemon.buyer.coordinator, .payments, .narrator) set these.
        self.payments: Any = None
        self.coordinator: Any = None
        self.narrator: Any = None
        self.spot_checks: Any = None  # pylon.daemon.buyer.spot_checks, unless --spot-check 0
        self._on_start: list[Callable[[TaskGroup], Any]] = []
        self._swarm_hooks: dict[int, Callable[[NostrEvent], None]] = {}
        self._listeners: list[Listener] = [self._note_job]
        self.started_at = time.time()

    @property
    def scheduler(self) -> Scheduler:
        assert self._scheduler is not None, "the scheduler exists once the store is open (run)"
        return self._scheduler

    def on_start(self, hook: Callable[[TaskGroup], Any]) -> None:
        """Run `await hook(tg)` once the relays are up (the payer's wallet, resumed runs)."""
        self._on_start.append(hook)

    def listen(self, listener: Listener) -> None:
        """Receive the scheduler's events (registered before any job event can arrive)."""
        self._listeners.append(listener)

    def on_swarm_event(self, kind: int, hook: Callable[[NostrEvent], None]) -> None:
        """Also send swarm events of `kind` (the payer: 10019 nutzap info) to `hook`."""
        self._swarm_hooks[kind] = hook

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.store = store = await BuyerStore.open(self.dir / "telemetry.db")
        sched = self._scheduler = Scheduler(
            self.config, keys=self.keys, pool=self.pool, registry=self.registry, store=store
        )
        for listener in self._listeners:
            sched.listen(listener)
        resumed_since = await sched.resume()
        self.rpc = RpcServer(
            buyer_socket(), daemon="buyer", name=self.config.name, pubkey=self.pubkey, handler=self.routes
        )
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self.rpc.serve)
                await self.pool.start(tg, wait_s=10)
                since = clock.since(3600)
                await self.pool.subscribe(
                    [
                        Filter(kinds=[kinds.ANNOUNCE, kinds.NUTZAP_INFO], since=since - 86400 * 30),
                        Filter(kinds=[kinds.HEARTBEAT], since=since),
                    ],
                    self._on_swarm_event,
                    sub_id="swarm",
                )
                # After a crash, replay what the relay stored while we were down.
                since = min(clock.since(60), resumed_since or int(time.time()))
                await self.pool.subscribe(
                    [Filter(kinds=[kinds.JOB_FEEDBACK, kinds.JOB_RESULT], p=[self.pubkey], since=since)],
                    sched.on_job_event,
                    sub_id="jobs",
                )
                tg.start_soon(self.loop_watch.run)
                tg.start_soon(sched.scan_loop)
                tg.start_soon(sched.dispatch_loop)
                tg.start_soon(sched.resync_loop)
                tg.start_soon(self._flush_loop)
                tg.start_soon(self._push_loop)
                for hook in self._on_start:
                    await hook(tg)
                log.info("buyer_started", pubkey=self.pubkey, relays=self.pool.urls)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await store.close()

    def _on_swarm_event(self, ev: NostrEvent) -> None:
        try:
            if ev.kind == kinds.ANNOUNCE:
                self.registry.on_announce(ev)
                self.scheduler.slots_changed()
            elif ev.kind == kinds.HEARTBEAT:
                self.registry.on_heartbeat(ev)
                self.scheduler.slots_changed()
            elif ev.kind in self._swarm_hooks:
                self._swarm_hooks[ev.kind](ev)
        except InvalidEvent as exc:
            self.scheduler.dropped[exc.reason] += 1

    async def _flush_loop(self) -> None:
        assert self.store is not None
        while True:
            await anyio.sleep(FLUSH_INTERVAL_S)
            await self.store.flush()

    def _note_job(self, ev: SchedulerEvent) -> None:
        if not isinstance(ev, JobChanged):
            return
        t: JobTelemetry = ev.tele
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
            for tracker in list(self.scheduler.runs.values()):
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
        sched = self.scheduler
        return rpc.BuyerStatus(
            name=self.config.name,
            pubkey=self.pubkey,
            relays=self.pool.urls,
            online_nodes=self.registry.online_count(),
            outstanding=len(sched.active),
            completed=sched.completed,
            failed=sched.failed,
            stopped=sched.stopped,
            banned=[pk for pk, e in self.registry.nodes.items() if e.banned],
            dropped=dict(sched.dropped) | self.pool.dropped,
            loop_stalls=self.loop_watch.stalls,
            loop_max_ms=round(self.loop_watch.max_ms, 1),
            backups=dict(sched.backups),
            slots_declined=sched.slots_declined,
            reissued=dict(sched.reissues),
            window=sched.window_status(),
        )

    async def stats(self, provider: str | None) -> rpc.GlobalStats | rpc.ProviderStats:
        assert self.store is not None
        jobs = await self.store.all_jobs()
        names = self.registry.names()
        if provider:
            entry = self.registry.nodes.get(provider)
            hb = entry.heartbeat if entry else None
            return provider_stats(
                jobs,
                provider,
                name=names.get(provider, ""),
                online=self.registry.is_online(provider),
                uptime_s=hb.uptime_s if hb else None,
                failures_by_attempt=await self.store.failures_by_attempt(provider),
                checks=entry.checks if entry else (0, 0),
            )
        stats = global_stats(
            jobs,
            online_nodes=self.registry.online_count(),
            names=names,
            dropped=dict(self.scheduler.dropped) | self.pool.dropped,
        )
        mapped, checked, disagreed = await self.store.check_totals()
        if checked:
            stats.checked_share = round(checked / max(mapped, checked), 4)
            stats.disagreement_rate = round(disagreed / checked, 4)
        return stats

    async def list_jobs(self, run_id: str | None, limit: int) -> rpc.JobList:
        assert self.store is not None
        jobs = await self.store.all_jobs(run_id)
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

    def stop_all(self) -> int:
        n = self.scheduler.stop_all()
        if self.payments is not None:
            self.payments.stop()
        return n


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
