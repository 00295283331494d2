"""The repo-map coordinator: split a repo into per-file jobs, dispatch, collect, reduce.

It is kept general (the Recursive-Language-Model shape: one coordinator, many small
subcalls): `split` makes the subtasks from a snapshot, `dispatch` hands each to the buyer's
scheduler, `collect` waits for the run's tracker, `reduce` builds the artifacts.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from pylon.daemon import private_runs
from pylon.daemon.buyer.narrator import Narrative, attach_narrator
from pylon.daemon.buyer.scheduler import SubmitError
from pylon.daemon.result_cache import ResultCache
from pylon.daemon.rpc_server import CallContext, RpcFailure
from pylon.schemas import rpc
from pylon.schemas.events import FileResult, RunRoot
from pylon.schemas.repomap import Snapshot
from pylon.schemas.telemetry import JobState

from pylon.home import buyer_dir, pylon_home
from pylon.logs import get_logger
from pylon.nostr import private_jobs
from pylon.repomap.aggregate import MapFacts, artifact_paths, gather_facts, write_data, write_overview
from pylon.repomap.gitsafe import public_repo
from pylon.repomap.llm_map import DEFAULT_TOKENS
from pylon.repomap.privacy import is_private
from pylon.repomap.select import select_files
from pylon.repomap.snapshot import SnapshotError, read_file, snapshot_repo

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from pylon.daemon.buyer.daemon import BuyerDaemon

log = get_logger("pylon.coordinator")

PROGRESS_INTERVAL_S = 0.25
RUN_TIMEOUT_S = 3600.0
_result_decoder = msgspec.json.Decoder(FileResult)


def maps_dir() -> Path:
    d = pylon_home() / "maps"
    d.mkdir(parents=True, exist_ok=True)
    return d


def clones_dir() -> Path:
    return buyer_dir() / "clones"


async def drop_clone(snap: Snapshot) -> None:
    """Delete a run's clone once its files are read: a stranger's repo does not stay on disk."""
    root = Path(snap.root)
    if clones_dir().resolve() in root.resolve().parents:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(root, ignore_errors=True))


class MapCoordinator:
    def __init__(self, buyer: BuyerDaemon) -> None:
        self.buyer = buyer
        self.run_info: dict[str, rpc.RunInfo] = {}
        self._cache: ResultCache | None = None

    @property
    def cache(self) -> ResultCache:
        if self._cache is None:
            self._cache = ResultCache(self._store())
        return self._cache

    async def route_map(self, req: rpc.MapReq, ctx: CallContext) -> rpc.MapSummary:
        try:
            private = is_private(req.repo, req.privacy)
        except ValueError as exc:
            raise RpcFailure("bad_input", str(exc)) from exc
        return await self.map(req.repo, Path(req.out_dir) if req.out_dir else None, ctx, req, private=private)

    async def route_runs(self, req: rpc.RunsReq, ctx: CallContext) -> rpc.RunList:
        return rpc.RunList(runs=await self.runs())

    async def start(self, tg: TaskGroup) -> None:
        if self.buyer.scheduler.runs:
            tg.start_soon(self.finish_resumed_runs)

    def _store(self) -> Any:
        assert self.buyer.store is not None
        return self.buyer.store

    async def runs(self) -> list[rpc.RunInfo]:
        out = []
        for run_id, repo, files, started, finished, out_dir, done, failed in await self._store().run_rows():
            out.append(
                rpc.RunInfo(
                    run_id=run_id,
                    repo=repo,
                    files=files,
                    completed=int(done or 0),
                    failed=int(failed or 0),
                    started=started,
                    finished=finished,
                    out_dir=out_dir,
                )
            )
        return out

    # --- split ------------------------------------------------------------------------------

    async def snapshot(self, repo: str) -> Snapshot:
        clone_dir = clones_dir() / hashlib.sha256(f"{repo}{time.time_ns()}".encode()).hexdigest()[:16]
        try:
            return await anyio.to_thread.run_sync(lambda: snapshot_repo(repo, clone_dir))
        except SnapshotError as exc:
            raise RpcFailure("bad_input", str(exc)) from exc

    # --- the run ----------------------------------------------------------------------------

    async def map(
        self,
        repo: str,
        out_dir: Path | None,
        ctx: CallContext | None,
        req: rpc.MapReq | None = None,
        *,
        private: bool = False,
    ) -> rpc.MapSummary:
        t0 = time.perf_counter()
        snap = await self.snapshot(repo)
        try:
            # From here on the repo is named without credentials: it is published in the signed
            # run root, logged and stored. The credentialed URL served the clone and is dropped.
            req = req or rpc.MapReq(repo=repo)
            chosen = select_files(snap, req.include, req.exclude)
            return await self._map(public_repo(repo), chosen, out_dir, ctx, t0, req, private=private)
        finally:
            await drop_clone(snap)

    async def _map(
        self,
        repo: str,
        snap: Snapshot,
        out_dir: Path | None,
        ctx: CallContext | None,
        t0: float,
        req: rpc.MapReq,
        *,
        private: bool = False,
    ) -> rpc.MapSummary:
        buyer = self.buyer
        sched = buyer.scheduler
        store = self._store()
        if not snap.files:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(snap.skipped.items())) or "no files"
            raise RpcFailure("bad_input", f"nothing to map in {repo}: {reasons}")
        # Files mapped before (same bytes, same executor) are not sent again (--fresh: all are).
        cached = {} if req.fresh else await self.cache.lookup(snap.files)
        to_send = [f for f in snap.files if f.path not in cached]
        if to_send and await sched.wait_for_node(buyer.config.pickup_timeout_s) is None:
            raise RpcFailure(
                "provider_offline",
                "no provider node is online; start a local stack with: pylon up --nodes 3 "
                "(or one node beside a running buyer: pylon node up)",
            )
        # A private run's root seals the repo, commit and skip list to the buyer itself.
        root_ev = private_jobs.build_run_root(
            sched.keys,
            sched.sealer,
            RunRoot(
                repo=repo,
                snapshot_sha256=snap.snapshot_sha256,
                files=len(snap.files),
                skipped=snap.skipped,
                commit=snap.commit,
            ),
            private=private,
        )
        await buyer.pool.publish(root_ev, wait_ok=10)
        run_id = root_ev.id
        if private:
            private_runs.mark(sched, run_id)
        out = out_dir or (maps_dir() / run_id[:16])
        tracker = sched.track_run(run_id, len(to_send))
        store.insert_run(
            run_id=run_id,
            repo=repo,
            root=snap.root,
            files=len(snap.files),
            out_dir=str(out),
            snapshot=snap.snapshot_sha256,
            started=time.time(),
        )
        log.info(
            "map_started",
            run_id=run_id,
            repo=repo,
            files=len(snap.files),
            skipped=snap.skipped,
            private=private,
        )

        async def progress() -> None:
            while not tracker.done.is_set():
                if ctx is not None:
                    await ctx.progress(
                        rpc.MapProgress(
                            run_id=run_id,
                            files=tracker.total,
                            completed=tracker.completed,
                            failed=tracker.failed,
                        )
                    )
                with anyio.move_on_after(PROGRESS_INTERVAL_S):
                    await tracker.done.wait()

        local_failures: dict[str, str] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(progress)
            for f in to_send:
                try:
                    text = read_file(Path(snap.root), f.path, expected_sha256=f.sha256)
                    await sched.submit(f.path, text, language=f.language, run_id=run_id, private=private)
                except (SnapshotError, SubmitError) as exc:
                    code = exc.code.value if isinstance(exc, SubmitError) else "bad_input"
                    local_failures[f.path] = code
                    tracker.finish(False)
                    log.warning("map_file_not_sent", path=f.path, error=str(exc))
            with anyio.move_on_after(RUN_TIMEOUT_S):
                await tracker.done.wait()
            tg.cancel_scope.cancel()

        results, failed = await self.collect(run_id)
        failed.update(local_failures)
        checks = await self.checks(run_id)
        disputed = checks.disputed if checks else []
        # A disputed result is not reused: the next run maps (and checks) the file again.
        unsure = set(disputed)
        await self.cache.store(snap.files, {p: r for p, r in results.items() if p not in unsure})
        results.update(cached)
        artifacts = await self.reduce(run_id, snap, out, results, failed, disputed, tokens=req.tokens)
        await store.flush()
        providers = len({prov for _, prov, _ in results.values()})
        summary = rpc.MapSummary(
            run_id=run_id,
            files=len(snap.files),
            completed=len(results),
            failed=len(failed),
            providers=providers,
            wall_s=round(time.perf_counter() - t0, 3),
            artifacts=artifacts,
            skipped=snap.skipped,
            private=private,
            checks=checks,
            sent=len(to_send),
            cached=len(cached),
        )
        log.info(
            "map_finished",
            sent=len(to_send),
            cached=len(cached),
            run_id=run_id,
            completed=summary.completed,
            failed=summary.failed,
            providers=providers,
            wall_s=summary.wall_s,
        )
        return summary

    async def finish_resumed_runs(self) -> None:
        """Runs a crashed buyer left half done: wait for their jobs, then write the artifacts."""
        from pylon.repomap.snapshot import take_snapshot

        sched = self.buyer.scheduler
        for run_id, repo, root, out_dir in await self._store().running_runs():
            tracker = sched.runs.get(run_id)
            if tracker is None:
                continue
            try:
                snap = await anyio.to_thread.run_sync(lambda r=root, rp=repo: take_snapshot(Path(r), repo=rp))
            except SnapshotError as exc:
                log.warning("resumed_run_snapshot_failed", run_id=run_id, error=str(exc))
                continue
            # Files the crash kept from being sent at all go out now.
            sent = await self._store().run_paths(run_id)
            for f in snap.files:
                if f.path in sent:
                    continue
                try:
                    await sched.submit(
                        f.path,
                        read_file(Path(snap.root), f.path),
                        language=f.language,
                        run_id=run_id,
                        private=run_id in sched.private_runs,
                    )
                except Exception as exc:  # one unreadable file must not stall the run
                    tracker.finish(False)
                    log.warning("map_file_not_sent", path=f.path, error=str(exc))
            with anyio.move_on_after(RUN_TIMEOUT_S):
                await tracker.done.wait()
            results, failed = await self.collect(run_id)
            checks = await self.checks(run_id)
            await self.reduce(run_id, snap, Path(out_dir), results, failed, checks.disputed if checks else [])
            await drop_clone(snap)
            log.info("resumed_run_finished", run_id=run_id, completed=len(results), failed=len(failed))

    async def reduce(
        self,
        run_id: str,
        snap: Snapshot,
        out: Path,
        results: dict[str, tuple[FileResult, str, str]],
        failed: dict[str, str],
        disputed: list[str],
        *,
        tokens: int = DEFAULT_TOKENS,
    ) -> dict[str, str]:
        """The fan-in: the model's narrative when a model node is about, the artifacts, and the
        run marked done. Returns the artifacts' paths.

        The facts are gathered once; the map, its Markdown and the index are written while the
        model writes the narrative, and only the overview waits for it."""
        facts = await anyio.to_thread.run_sync(
            lambda: gather_facts(
                out, run_id=run_id, snapshot=snap, results=results, failed=failed, disputed=disputed
            )
        )
        data: dict[str, str] = {}

        async def write() -> None:
            data.update(await anyio.to_thread.run_sync(lambda: write_data(facts, tokens=tokens)))

        narrative: Narrative | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            if self.buyer.narrator is not None and results:
                narrative = await self.narrative(facts, run_id)
        overview = await anyio.to_thread.run_sync(
            lambda: write_overview(
                facts,
                narrative=narrative.text if narrative is not None else None,
                narrative_by=narrative.by if narrative is not None else "",
            )
        )
        self.buyer.scheduler.end_run(run_id)
        self._store().finish_run(run_id, time.time())
        return artifact_paths(data, overview)

    async def collect(self, run_id: str) -> tuple[dict[str, tuple[FileResult, str, str]], dict[str, str]]:
        checks = self.buyer.spot_checks
        if checks is not None:
            # A result that loses a spot check is replaced before the map is written.
            with anyio.move_on_after(RUN_TIMEOUT_S):
                await checks.settle(run_id)
        rows = await self._store().run_outcomes(run_id)
        results: dict[str, tuple[FileResult, str, str]] = {}
        failed: dict[str, str] = {}
        for path, state, error, content, provider, result_id in rows:
            if state == JobState.COMPLETED.value and content is not None:
                results[path] = (_result_decoder.decode(content), provider, result_id)
            else:
                failed[path] = error or state
        return results, failed

    async def checks(self, run_id: str) -> rpc.CheckSummary | None:
        """What spot-checking the run did (its disputes included), or None with checks off."""
        return await self.buyer.spot_checks.run_summary(run_id) if self.buyer.spot_checks else None

    async def narrative(self, facts: MapFacts, run_id: str) -> Narrative | None:
        """The LLM reduce step, when a node with a model is in the swarm (pylon.daemon.narrator)."""
        try:
            return await self.buyer.narrator(facts, run_id=run_id)
        except Exception as exc:  # the facts stand on their own; the narrative is a bonus
            log.warning("narrative_failed", error=str(exc))
            return None


def attach_coordinator(buyer: BuyerDaemon) -> None:
    coordinator = buyer.coordinator = MapCoordinator(buyer)
    buyer.routes.add(rpc.MapReq, coordinator.route_map)
    buyer.routes.add(rpc.RunsReq, coordinator.route_runs)
    buyer.on_start(coordinator.start)
    attach_narrator(buyer)
