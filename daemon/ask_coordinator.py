"""The ask coordinator: a question answered by a swarm, recursing over a repo map (issue 13).

The RLM shape: the coordinator holds the map and its index and never answers from the files
itself. Round 0 sends one sub-query per candidate file (the question plus only that file's
windows); each sub-answer may name follow-ups (symbols, paths) that become the next round's
sub-queries, de-duplicated, bounded by depth (rounds after the first), fan-out (sub-queries per
round) and budget (sats: a sub-call is only sent when the most it can cost, plus the reduce held
back from the start, still fits). A final reduce job combines the sub-answers. Every sub-call is
an ordinary 5931 job of the buyer (`tasks=ask`), so assignment, stragglers, retries, payments
and the provenance trail are the map run's.

`AskEngine` is the recursion over any `Caller`; `BuyerCaller` is the market's; the bench and
the tests may bring their own.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import msgspec
from pylon.daemon import private_runs
from pylon.daemon.buyer.narrator import MODEL_EXECUTOR
from pylon.daemon.rpc_server import CallContext, RpcFailure
from pylon.schemas import rpc
from pylon.schemas.ask import (
    ASK_REDUCE_TASK,
    ASK_TASK,
    MAX_QUESTION_CHARS,
    AskAnswer,
    AskList,
    AskNode,
    AskProgress,
    AskQuery,
    AskReduceInput,
    AskSummary,
    SubAnswerDigest,
)
from pylon.schemas.events import FileResult, RunRoot
from pylon.schemas.repomap import RepoMap
from pylon.schemas.telemetry import JobState

from pylon.ask.deterministic import reduce_answers
from pylon.ask.render import MapFiles, render_answer_md, validate_claims
from pylon.ask.select import candidates, follow_up_targets, prepare
from pylon.ask.text import question_terms
from pylon.home import pylon_home
from pylon.logs import get_logger
from pylon.nostr import private_jobs
from pylon.repomap.aggregate import REPO_MAP_NAME, load_repo_map
from pylon.repomap.privacy import is_private
from pylon.repomap.search_index import INDEX_NAME

if TYPE_CHECKING:
    from pylon.daemon.buyer.daemon import BuyerDaemon
    from pylon.daemon.buyer.scheduler import ActiveJob

log = get_logger("pylon.ask")

PROGRESS_INTERVAL_S = 0.25
SUB_CALL_TIMEOUT_S = 3600.0  # the buyer's own timeouts and re-issues end a job long before this
MAX_FANOUT = 64
MAX_DEPTH = 6
MAX_REDUCE_DIGESTS = 200
REDUCE_EVIDENCE_PER_ANSWER = 12
KEEP_ASKS = 20  # asks whose tree AsksReq still answers
ANSWER_NAME = "answer.md"
TREE_NAME = "ask.json"


def asks_dir() -> Path:
    d = pylon_home() / "asks"
    d.mkdir(parents=True, exist_ok=True)
    return d


class AskError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class CallResult:
    status: str  # a JobState value: completed | failed | cancelled
    job_id: str | None = None
    node: str | None = None
    cost_sats: int = 0
    result: FileResult | None = None
    error: str | None = None


class Caller(Protocol):
    """How an ask sends one sub-call and learns its outcome."""

    per_call_sats: int  # the most one sub-call can cost
    private: bool  # sub-calls sealed to their nodes with NIP-44 (set by start)

    async def start(self, question: str, repo_map: RepoMap) -> str: ...  # the ask's id

    async def call(
        self, node: AskNode, *, path: str, language: str, text: str, tasks: tuple[str, ...]
    ) -> CallResult: ...

    def live_state(self, node: AskNode) -> tuple[str, str | None] | None: ...  # (state, provider)


class Ledger:
    """The budget: sats reserved for what is in flight plus what finished calls cost."""

    def __init__(self, budget_sats: int | None, per_call: int) -> None:
        self.budget = budget_sats
        self.per_call = per_call
        self.spent = 0
        self.reserved = 0
        self.held_for_reduce = per_call

    def fits(self) -> bool:
        if self.budget is None:
            return True
        return self.spent + self.reserved + self.per_call + self.held_for_reduce <= self.budget

    def reserve(self) -> None:
        self.reserved += self.per_call

    def settle(self, cost: int) -> None:
        self.reserved -= self.per_call
        self.spent += min(cost, self.per_call)

    def release_reduce(self) -> None:
        self.held_for_reduce = 0


def resolve_map_dir(run_or_dir: str) -> Path:
    p = Path(run_or_dir).expanduser()
    if p.is_file():
        p = p.parent
    if p.is_dir():
        return p
    maps = pylon_home() / "maps"
    if maps.is_dir() and run_or_dir:
        hits = [
            d for d in maps.iterdir() if d.name.startswith(run_or_dir[:16]) or run_or_dir.startswith(d.name)
        ]
        if len(hits) == 1:
            return hits[0]
    raise AskError("bad_input", f"{run_or_dir}: not a map output directory or a known run id")


def cost_of(t: Any, per_call: int) -> int:
    """What a finished sub-call counts against the budget: the price its result asked (the payer
    pays at most the bid); a failed one keeps its reservation, since a node paid up front may
    have been paid."""
    if t.state == JobState.COMPLETED:
        return min(per_call, math.ceil(max(0, t.amount_msats) / 1000))
    return per_call


class AskEngine:
    def __init__(
        self,
        caller: Caller,
        *,
        map_dir: Path,
        question: str,
        fanout: int = 8,
        depth: int = 2,
        budget_sats: int | None = None,
        out_dir: Path | None = None,
        on_progress: Callable[[AskProgress], Awaitable[None]] | None = None,
    ) -> None:
        if not question.strip():
            raise AskError("bad_input", "the question is empty")
        if len(question) > MAX_QUESTION_CHARS:
            raise AskError("bad_input", f"the question is longer than {MAX_QUESTION_CHARS} characters")
        if not 1 <= fanout <= MAX_FANOUT:
            raise AskError("bad_input", f"--fanout must be 1..{MAX_FANOUT}")
        if not 0 <= depth <= MAX_DEPTH:
            raise AskError("bad_input", f"--depth must be 0..{MAX_DEPTH}")
        if budget_sats is not None and budget_sats < 0:
            raise AskError("bad_input", "--budget-sats must not be negative")
        self.caller = caller
        self.map_dir = map_dir
        self.question = question.strip()
        self.fanout = fanout
        self.depth = depth
        self.budget = budget_sats
        self.out_dir = out_dir
        self.on_progress = on_progress
        self.nodes: list[AskNode] = []
        self.answers: dict[int, AskAnswer] = {}
        self.stopped_by: list[str] = []
        self.ask_id = ""
        self.round = 0
        self.done = False
        self.models: list[str] = []
        self.ledger = Ledger(budget_sats, caller.per_call_sats)

    # --- helpers ----------------------------------------------------------------------------

    def _new_node(self, parent: int | None, depth: int, path: str, focus: list[str], status: str) -> AskNode:
        node = AskNode(id=len(self.nodes), parent=parent, depth=depth, path=path, focus=focus, status=status)
        self.nodes.append(node)
        return node

    def _stop(self, why: str) -> None:
        if why not in self.stopped_by:
            self.stopped_by.append(why)

    def progress(self) -> AskProgress:
        for n in self.nodes:
            if n.status in ("assigned", "processing", "submitted", "pending"):
                live = self.caller.live_state(n)
                if live is not None:
                    n.status, n.node = live[0], live[1] or n.node
        return AskProgress(
            ask_id=self.ask_id,
            question=self.question,
            depth=self.round,
            nodes=[msgspec.structs.replace(n) for n in self.nodes],
            spent_sats=self.ledger.spent,
            budget_sats=self.budget,
            done=self.done,
        )

    async def _progress_loop(self, stop: anyio.Event) -> None:
        while not stop.is_set():
            if self.on_progress is not None:
                await self.on_progress(self.progress())
            with anyio.move_on_after(PROGRESS_INTERVAL_S):
                await stop.wait()

    # --- the ask ----------------------------------------------------------------------------

    def _load(self) -> tuple[RepoMap, Path | None]:
        if not (self.map_dir / REPO_MAP_NAME).is_file():
            raise AskError("bad_input", f"no {REPO_MAP_NAME} in {self.map_dir}: run `pylon map` first")
        try:
            repo_map = load_repo_map(self.map_dir)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise AskError("bad_input", f"cannot read the map in {self.map_dir}: {exc}") from exc
        index = self.map_dir if (self.map_dir / INDEX_NAME).is_file() else None
        return repo_map, index

    async def run(self) -> AskSummary:
        t0 = time.perf_counter()
        repo_map, index = await anyio.to_thread.run_sync(self._load)
        terms = question_terms(self.question)
        if not terms:
            raise AskError(
                "bad_input", "the question names nothing to look for (try `backticks` around a name)"
            )
        per_call = self.caller.per_call_sats
        if self.budget is not None and self.budget < 2 * per_call:
            raise AskError(
                "bad_input",
                f"a budget of {self.budget} sats does not cover one sub-call and the reduce "
                f"({per_call} sats each at the buyer's bid)",
            )
        files = MapFiles(repo_map)
        first = await anyio.to_thread.run_sync(
            lambda: candidates(repo_map, index, self.question, terms, files.lines, self.fanout)
        )
        self.ask_id = await self.caller.start(self.question, repo_map)
        log.info("ask_started", ask_id=self.ask_id, terms=terms, candidates=len(first), map=str(self.map_dir))
        frontier: list[tuple[int | None, str, list[str], Any]] = [
            (None, c.path, list(terms), (c.windows, c.definitions)) for c in first
        ]
        seen: set[tuple[str, tuple[str, ...]]] = {(c.path, tuple(terms)) for c in first}
        followed: set[str] = set(terms)
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._progress_loop, stop)
            for depth in range(self.depth + 1):
                self.round = depth
                if not frontier:
                    if depth > 0:
                        self._stop("no_follow_ups")
                    break
                batch, rest = frontier[: self.fanout], frontier[self.fanout :]
                await self._round(depth, batch, repo_map, terms)
                if rest:
                    self._stop("fanout")
                    for parent, path, focus, _ in rest[: self.fanout]:  # shown, not sent
                        self._new_node(parent, depth, path, focus, "skipped_fanout")
                if depth == self.depth:
                    frontier = self._next_frontier(depth, repo_map, files, seen, followed, dry=True)
                    for parent, path, focus, _ in frontier[: self.fanout]:
                        self._new_node(parent, depth + 1, path, focus, "skipped_depth")
                    if frontier:
                        self._stop("depth")
                    break
                frontier = await anyio.to_thread.run_sync(
                    lambda d=depth: self._next_frontier(d, repo_map, files, seen, followed, dry=False)
                )
            summary = await self._reduce(repo_map, terms, files, t0)
            self.done = True
            stop.set()
        if self.on_progress is not None:
            await self.on_progress(self.progress())
        return summary

    async def _round(
        self,
        depth: int,
        batch: list[tuple[int | None, str, list[str], Any]],
        repo_map: RepoMap,
        terms: list[str],
    ) -> None:
        calls: list[tuple[AskNode, str, str]] = []
        for parent, path, focus, (windows, defs) in batch:
            if not self.ledger.fits():
                self._new_node(parent, depth, path, focus, "skipped_budget")
                self._stop("budget")
                continue
            node = self._new_node(parent, depth, path, focus, "pending")
            self.ledger.reserve()
            entry = repo_map.files.get(path)
            q = AskQuery(
                question=self.question,
                terms=focus,
                path=path,
                language=entry.language if entry else "",
                windows=windows,
                definitions=defs,
                depth=depth,
                focus=[f for f in focus if f not in terms],
            )
            calls.append((node, q.language or "text", msgspec.json.encode(q).decode()))

        async def one(node: AskNode, language: str, text: str) -> None:
            t = time.perf_counter()
            res = await self._call(node, language=language, text=text, tasks=(ASK_TASK,))
            self._settle(node, res, time.perf_counter() - t)

        async with anyio.create_task_group() as tg:
            for node, language, text in calls:
                tg.start_soon(one, node, language, text)

    async def _call(self, node: AskNode, *, language: str, text: str, tasks: tuple[str, ...]) -> CallResult:
        """One sub-call; a caller's bug fails that sub-call (counted at full cost), not the ask."""
        try:
            return await self.caller.call(node, path=node.path, language=language, text=text, tasks=tasks)
        except Exception as exc:
            log.exception("ask_sub_call_crashed", path=node.path, depth=node.depth)
            return CallResult(
                status=JobState.FAILED.value,
                job_id=node.job_id,
                cost_sats=self.ledger.per_call,
                error=f"exec_error: {type(exc).__name__}"[:80],
            )

    def _settle(self, node: AskNode, res: CallResult, wall: float) -> None:
        self.ledger.settle(res.cost_sats)
        node.status, node.job_id, node.node = res.status, res.job_id or node.job_id, res.node or node.node
        node.cost_sats, node.error, node.wall_s = (
            min(res.cost_sats, self.ledger.per_call),
            res.error,
            round(wall, 3),
        )
        ask = res.result.ask if res.result is not None else None
        if res.status == JobState.COMPLETED.value and ask is None:
            node.status, node.error = JobState.FAILED.value, "no_answer"  # a result that is not an ask answer
        elif ask is not None:
            self.answers[node.id] = ask
            if res.result is not None and res.result.model:
                self.models.append(res.result.model)
            node.relevant, node.mode, node.follow_ups = ask.relevant, ask.mode, list(ask.follow_ups)

    def _next_frontier(
        self,
        depth: int,
        repo_map: RepoMap,
        files: MapFiles,
        seen: set[tuple[str, tuple[str, ...]]],
        followed: set[str],
        *,
        dry: bool,
    ) -> list[tuple[int | None, str, list[str], Any]]:
        """The follow-ups of this round's answers, most named first, each followed once."""
        votes: Counter[str] = Counter()
        first_parent: dict[str, int] = {}
        for n in self.nodes:
            if n.depth != depth or n.id not in self.answers or not self.answers[n.id].relevant:
                continue
            for f in self.answers[n.id].follow_ups:
                votes[f] += 1
                first_parent.setdefault(f, n.id)
        out: list[tuple[int | None, str, list[str], Any]] = []
        for name, _ in sorted(votes.items(), key=lambda kv: (-kv[1], first_parent[kv[0]], kv[0])):
            if name in followed:
                continue  # de-duplicated: asked about already, at this depth or before
            targets = follow_up_targets(repo_map, name)
            if not dry:
                followed.add(name)
            for path in targets:
                focus = [name]
                key = (path, tuple(focus))
                if key in seen:
                    continue
                prepared = prepare(repo_map, path, focus, files.lines) if not dry else ([], [])
                if prepared is None:
                    continue
                if not dry:
                    seen.add(key)
                out.append((first_parent[name], path, focus, prepared))
        return out

    # --- the fan-in -------------------------------------------------------------------------

    async def _reduce(self, repo_map: RepoMap, terms: list[str], files: MapFiles, t0: float) -> AskSummary:
        digests = [
            SubAnswerDigest(
                path=n.path,
                depth=n.depth,
                answer=self.answers[n.id].answer,
                citations=self.answers[n.id].citations[:REDUCE_EVIDENCE_PER_ANSWER],
                # Best first already; the reduce's input must stay well inside one job's size.
                evidence=self.answers[n.id].evidence[:REDUCE_EVIDENCE_PER_ANSWER],
            )
            for n in self.nodes
            if n.id in self.answers and self.answers[n.id].relevant
        ][:MAX_REDUCE_DIGESTS]
        inp = AskReduceInput(question=self.question, terms=terms, answers=digests)
        reduce_node = self._new_node(None, -1, ANSWER_NAME, [], "pending")
        final: AskAnswer | None = None
        self.ledger.release_reduce()
        if digests:
            self.ledger.reserve()  # held back since the start, so it always fits
            t = time.perf_counter()
            res = await self._call(
                reduce_node,
                language="markdown",
                text=msgspec.json.encode(inp).decode(),
                tasks=(ASK_REDUCE_TASK,),
            )
            self._settle(reduce_node, res, time.perf_counter() - t)
            final = self.answers.get(reduce_node.id)
        else:
            reduce_node.status = "skipped"
        if final is None:
            # No reduce came back (or nothing to reduce): the ranked evidence, done here.
            final = await anyio.to_thread.run_sync(lambda: reduce_answers(inp))
            reduce_node.mode = reduce_node.mode or "local"
        claims, dropped = await anyio.to_thread.run_sync(lambda: validate_claims(final.claims, files.lines))
        modes = {self.answers[n.id].mode for n in self.nodes if n.id in self.answers}
        mode = "mixed" if len(modes) > 1 else (modes.pop() if modes else "deterministic")
        out = self.out_dir or (
            asks_dir() / (self.ask_id[:16] or hashlib.sha256(self.question.encode()).hexdigest()[:16])
        )
        subs = [n for n in self.nodes if n.depth >= 0]
        summary = AskSummary(
            ask_id=self.ask_id,
            question=self.question,
            mode=mode,
            sub_calls=sum(1 for n in subs if n.job_id),
            completed=sum(1 for n in subs if n.status == JobState.COMPLETED.value),
            failed=sum(1 for n in subs if n.status in (JobState.FAILED.value, JobState.CANCELLED.value)),
            skipped=sum(1 for n in subs if n.status.startswith("skipped")),
            rounds=len({n.depth for n in subs if n.job_id}),
            spent_sats=self.ledger.spent,
            budget_sats=self.budget,
            claims=len(claims),
            citations_dropped=dropped,
            wall_s=round(time.perf_counter() - t0, 3),
            artifacts={"answer": str(out / ANSWER_NAME), "tree": str(out / TREE_NAME)},
            stopped_by=list(self.stopped_by),
            private=self.caller.private,
        )
        model_name = ", ".join(dict.fromkeys(self.models))
        tree = {
            "ask_id": self.ask_id,
            "question": self.question,
            "terms": terms,
            "mode": mode,
            "reduce_mode": final.mode,
            "model": model_name,
            "map": str(self.map_dir),
            "fanout": self.fanout,
            "depth": self.depth,
            "budget_sats": self.budget,
            "per_call_sats": self.ledger.per_call,
            "spent_sats": self.ledger.spent,
            "stopped_by": self.stopped_by,
            "answer": final.answer,
            "claims": msgspec.to_builtins(claims),
            "evidence": msgspec.to_builtins(final.evidence),
            "nodes": msgspec.to_builtins(self.nodes),
            "summary": msgspec.to_builtins(summary),
        }
        md = render_answer_md(
            question=self.question,
            mode=mode,
            answer=final.answer,
            claims=claims,
            nodes=subs,
            lines_of=files.lines,
            ask_id=self.ask_id,
            map_dir=str(self.map_dir),
            spent_sats=self.ledger.spent,
            budget_sats=self.budget,
            stopped_by=self.stopped_by,
            model=model_name,
        )

        def write() -> None:
            out.mkdir(parents=True, exist_ok=True)
            (out / TREE_NAME).write_bytes(msgspec.json.format(msgspec.json.encode(tree), indent=2) + b"\n")
            (out / ANSWER_NAME).write_text(md, encoding="utf-8")

        await anyio.to_thread.run_sync(write)
        log.info(
            "ask_finished",
            ask_id=self.ask_id,
            mode=mode,
            sub_calls=summary.sub_calls,
            spent_sats=summary.spent_sats,
            claims=summary.claims,
            wall_s=summary.wall_s,
        )
        return summary


# --- the market's caller -----------------------------------------------------------------------


class BuyerCaller:
    """Sub-calls as the buyer's own jobs: assigned, re-issued, paid and trailed like map files."""

    def __init__(self, buyer: BuyerDaemon, privacy: str = "auto") -> None:
        self.buyer = buyer
        self.per_call_sats = math.ceil(max(0, buyer.config.bid_msats) / 1000)
        self.privacy = privacy
        self.private = False
        self.run_id: str | None = None
        self.jobs: dict[int, ActiveJob] = {}
        self.sent: list[str] = []

    async def start(self, question: str, repo_map: RepoMap) -> str:
        buyer = self.buyer
        if await buyer.scheduler.wait_for_node(buyer.config.pickup_timeout_s) is None:
            raise AskError("provider_offline", "no provider node is online; start one with: pylon node up")
        sched = buyer.scheduler
        # Sub-calls quote the repo's code: an ask over a private repo (a local path, or a map
        # that ran private) is private too, unless the user said otherwise.
        try:
            self.private = self.privacy == "private" or (
                self.privacy == "auto"
                and (repo_map.run_id in sched.private_runs or is_private(repo_map.repo or repo_map.root))
            )
        except ValueError as exc:
            raise AskError("bad_input", str(exc)) from exc
        # The ask's root event: every sub-call's `e` root tag points at it, so the trail and
        # `pylon job list --run` group them. A private ask's root is sealed to the buyer.
        root = private_jobs.build_run_root(
            buyer.keys,
            sched.sealer,
            RunRoot(
                repo=f"ask: {repo_map.repo or repo_map.root}",
                snapshot_sha256=repo_map.snapshot_sha256,
                files=0,
                commit=repo_map.commit,
            ),
            private=self.private,
        )
        await buyer.pool.publish(root, wait_ok=10)
        self.run_id = root.id
        if self.private:
            private_runs.mark(sched, root.id)
        # A row in the runs table (state 'ask', which no resume picks up) lets `pylon-tui` and
        # RunsReq show the ask's jobs as one run that finishes.
        assert buyer.store is not None
        buyer.store.insert_ask_run(
            run_id=root.id,
            question=question,
            root=repo_map.root,
            snapshot=repo_map.snapshot_sha256,
            started=time.time(),
        )
        return root.id

    def finish(self, out_dir: str | None) -> None:
        if self.run_id is not None and self.buyer.store is not None:
            self.buyer.store.finish_ask_run(
                self.run_id, sub_calls=len(self.sent), finished=time.time(), out_dir=out_dir
            )

    def model_node(self) -> str | None:
        """With a model node in the swarm the model answers (the least-loaded such node); with
        none, None: the buyer picks any node and the deterministic pipeline answers. A re-issued
        attempt may still land on a node without a model; the tree says which mode answered."""
        now = time.time()
        registry = self.buyer.registry
        best: tuple[float, str] | None = None
        for e in registry.nodes.values():
            ann = e.announce
            if (
                ann is None
                or MODEL_EXECUTOR not in ann.executors
                or not ann.models
                or not registry.usable(e, now)
            ):
                continue
            load = e.assigned_now / e.slots()
            if best is None or load < best[0]:
                best = (load, e.pubkey)
        return best[1] if best else None

    def live_state(self, node: AskNode) -> tuple[str, str | None] | None:
        job = self.jobs.get(node.id)
        return (job.tele.state.value, job.tele.provider_pubkey) if job is not None else None

    async def call(
        self, node: AskNode, *, path: str, language: str, text: str, tasks: tuple[str, ...]
    ) -> CallResult:
        from pylon.daemon.buyer.scheduler import SubmitError, UnknownJob

        sched = self.buyer.scheduler
        try:
            job = await sched.submit(
                path,
                text,
                language=language,
                run_id=self.run_id,
                tasks=tasks,
                node=self.model_node(),
                private=self.private,
            )
        except SubmitError as exc:
            return CallResult(status=JobState.FAILED.value, error=exc.code.value, cost_sats=0)
        self.jobs[node.id] = job
        self.sent.append(job.tele.job_id)
        node.job_id = job.tele.job_id
        with anyio.move_on_after(SUB_CALL_TIMEOUT_S):
            await job.done.wait()
        if not job.done.is_set():
            sched.cancel(job.tele.job_id, None)
        t = job.tele
        result: FileResult | None = None
        if t.state == JobState.COMPLETED:
            try:
                result = await sched.result(t.job_id)
            except UnknownJob:
                result = None
        self.jobs.pop(node.id, None)
        return CallResult(
            status=t.state.value,
            job_id=t.job_id,
            node=t.provider_pubkey,
            cost_sats=cost_of(t, self.per_call_sats),
            result=result,
            error=t.error.value if t.error else None,
        )


class AskCoordinator:
    def __init__(self, buyer: BuyerDaemon) -> None:
        self.buyer = buyer
        self.asks: dict[str, AskProgress] = {}

    async def route_asks(self, req: rpc.AsksReq, ctx: CallContext) -> AskList:
        return AskList(asks=list(self.asks.values()))

    async def ask(self, req: rpc.AskReq, ctx: CallContext | None) -> AskSummary:
        caller = BuyerCaller(self.buyer, req.privacy)

        async def progress(p: AskProgress) -> None:
            self.asks[p.ask_id] = p
            while len(self.asks) > KEEP_ASKS:  # the TUI's history; answers stay on disk
                del self.asks[next(iter(self.asks))]
            if ctx is not None:
                await ctx.progress(p)
            rpc_server = self.buyer.rpc
            if rpc_server is not None and rpc_server.has_subscribers("ask"):
                rpc_server.publish("ask", p)

        out_dir: str | None = None
        try:
            engine = AskEngine(
                caller,
                map_dir=resolve_map_dir(req.run_or_dir),
                question=req.question,
                fanout=req.fanout,
                depth=req.depth,
                budget_sats=req.budget_sats,
                out_dir=Path(req.out_dir) if req.out_dir else None,
                on_progress=progress,
            )
            summary = await engine.run()
            out_dir = str(Path(summary.artifacts["answer"]).parent)
        except AskError as exc:
            raise RpcFailure(exc.code, exc.message) from exc
        finally:
            caller.finish(out_dir)
        return summary


def attach_ask(buyer: BuyerDaemon) -> None:
    asker = AskCoordinator(buyer)
    buyer.routes.add(rpc.AskReq, asker.ask)
    buyer.routes.add(rpc.AsksReq, asker.route_asks)
