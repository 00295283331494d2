"""Spot checks at work: a share of deterministic results is computed again on another node.

Listens for accepted results; for the ones the policy picks (`pylon.daemon.spot_check`), submits
the same input as a new job (tagged `check` → the original job) to a node other than the one that
answered. Agreement is recorded for both. A disagreement goes to a third node and the majority
wins: the out-voted result is replaced in the store (so it never reaches `repo_map.json`), its
provider loses standing, and once a provider failed a check every other result it gave in the
runs still open is checked too. After `distrust_after` failed checks a provider gets no more jobs
(`distrusted = "exclude"`) or keeps getting them unpaid (`"unpaid"`). A disagreement no majority
settles (no third node free, or three different answers) leaves the first result in place: the
run's summary names the file and `repo_map.json` marks it `disputed`.

A check is an ordinary job of the scheduler: assigned, paid and trailed like any other; it has
no run of its own (the run's counts stay the files'), and the run's summary says what checking
cost. The coordinator waits for a run's checks (`settle`) before it writes the artifacts.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup
from pylon.daemon.buyer.scheduler import ResultAccepted, SchedulerEvent, SubmitError, UnknownJob
from pylon.daemon.buyer.spot_check_policy import SpotCheckPolicy, Verdict, checkable, compare, vote
from pylon.schemas import rpc
from pylon.schemas.events import FileResult
from pylon.schemas.telemetry import JobState, JobTelemetry

from pylon.logs import get_logger

if TYPE_CHECKING:
    from pylon.daemon.buyer.daemon import BuyerDaemon
    from pylon.daemon.buyer.store import BuyerStore

log = get_logger("pylon.spot_checks")

CHECK_TRIES = 2
_FAILED: object = object()  # a check job that was sent and did not complete
NODE_WAIT_S = 5.0  # how long a check waits for a second node before it is skipped


class SpotChecks:
    def __init__(self, buyer: BuyerDaemon, policy: SpotCheckPolicy) -> None:
        self.buyer = buyer
        self.policy = policy
        self.mode = buyer.config.distrusted
        self._tg: TaskGroup | None = None
        self._checked: set[str] = set()  # jobs checked (or being checked) already
        self._pending: dict[str, int] = {}  # run id → checks not finished
        self._settled: dict[str, anyio.Event] = {}
        self._backlog: list[JobTelemetry] = []  # accepted before start (a resumed run's results)

    # --- wiring ---------------------------------------------------------------------------

    async def start(self, tg: TaskGroup) -> None:
        self._tg = tg
        for provider, (passed, failed) in (await self._store().standings()).items():
            s = self.policy.of(provider)
            s.passed, s.failed = passed, failed
            self.buyer.registry.entry(provider).checks = (passed, failed)
            self._apply_distrust(provider)
        for tele in self._backlog:
            self._spawn(tele, forced=False)
        self._backlog.clear()

    def _store(self) -> BuyerStore:
        assert self.buyer.store is not None
        return self.buyer.store

    def on_scheduler_event(self, ev: SchedulerEvent) -> None:
        if not isinstance(ev, ResultAccepted):
            return
        tele = ev.tele
        # Checks are of map runs' files; a check job itself has no run and is never checked.
        if tele.run_id is None or tele.job_id in self._checked or not tele.provider_pubkey:
            return
        if self._tg is None:
            self._backlog.append(tele)
            return
        self._spawn(tele, forced=False)

    def _spawn(self, tele: JobTelemetry, *, forced: bool) -> None:
        """Count the check as pending at once (the run must not settle before it), decide in a task."""
        assert self._tg is not None
        run = tele.run_id or ""
        self._pending[run] = self._pending.get(run, 0) + 1
        self._tg.start_soon(self._check_then_settle, tele, forced)

    async def _check_then_settle(self, tele: JobTelemetry, forced: bool) -> None:
        try:
            await self._check(tele, forced)
        except Exception as exc:  # a check that breaks must not take the buyer down
            log.warning("spot_check_failed", job_id=tele.job_id, error=str(exc))
        finally:
            self._one_done(tele.run_id or "")

    def _one_done(self, run: str) -> None:
        self._pending[run] -= 1
        if self._pending[run] <= 0:
            self._pending.pop(run, None)
            ev = self._settled.pop(run, None)
            if ev is not None:
                ev.set()

    async def settle(self, run_id: str) -> None:
        """Wait until every check of the run's results is decided."""
        while self._pending.get(run_id, 0) > 0:
            ev = self._settled.setdefault(run_id, anyio.Event())
            await ev.wait()

    # --- one check ------------------------------------------------------------------------

    async def _check(self, tele: JobTelemetry, forced: bool) -> None:
        sched = self.buyer.scheduler
        subject = tele.provider_pubkey
        assert subject is not None
        try:
            original = await sched.result(tele.job_id)
        except UnknownJob:
            return
        if tele.job_id in self._checked:
            return
        if forced:
            if not checkable(original):
                return
        elif not self.policy.should_check(tele.run_id, subject, original):
            return  # not now; it may still be checked if its provider fails a check later
        self._checked.add(tele.job_id)
        text = await self._store().input_text(tele.job_id)
        if text is None:
            return
        first = await self._run_check(tele, original, text, avoid=frozenset({subject}))
        if first is None:
            return
        checker, result, _ = first
        verdict = compare(original, result)
        if verdict == Verdict.INCOMPARABLE:
            log.info("spot_check_incomparable", job_id=tele.job_id, subject=subject[:12])
            return
        if verdict == Verdict.AGREED:
            self._record(subject, True)
            self._record(checker, True)
            log.info("spot_check_agreed", job_id=tele.job_id, path=tele.path, subject=subject[:12])
            return
        log.warning("spot_check_disagreed", job_id=tele.job_id, path=tele.path, subject=subject[:12])
        third = await self._run_check(tele, original, text, avoid=frozenset({subject, checker}))
        if third is None:
            # No third node: nobody is out-voted, and the run's summary names the file.
            self._outcome(tele, "undecided")
            return
        referee, tie_break, _ = third
        parties = [
            (subject, original, tele.job_id),
            (checker, result, first[2]),
            (referee, tie_break, third[2]),
        ]
        outcome = vote([r for _, r, _ in parties])
        if outcome.winner is None:
            log.warning("spot_check_no_majority", job_id=tele.job_id, path=tele.path)
            self._outcome(tele, "undecided")
            return
        for i, (provider, _, _) in enumerate(parties):
            self._record(provider, i not in outcome.losers)
        if 0 not in outcome.losers:
            self._outcome(tele, "upheld")
        elif await self._overturn(tele, parties[outcome.winner][2], subject):
            self._outcome(tele, "overturned")
        else:  # the winner's result is not in the store: the loser's stays, in dispute
            self._outcome(tele, "undecided")

    def _outcome(self, tele: JobTelemetry, outcome: str) -> None:
        self._store().put_check_outcome(
            job_id=tele.job_id, run_id=tele.run_id, path=tele.path, outcome=outcome, at=time.time()
        )

    async def _run_check(
        self, tele: JobTelemetry, original: FileResult, text: str, *, avoid: frozenset[str]
    ) -> tuple[str, FileResult, str] | None:
        """A check job on a node outside `avoid`, tried twice (a check that timed out on a busy
        node must not leave a result standing unchecked): (its node, result, job id), or None."""
        for _ in range(CHECK_TRIES):
            answer = await self._run_check_once(tele, original, text, avoid=avoid)
            if answer is not _FAILED:
                return answer  # type: ignore[return-value]  # an answer, or None: no other node
        return None

    async def _run_check_once(
        self, tele: JobTelemetry, original: FileResult, text: str, *, avoid: frozenset[str]
    ) -> tuple[str, FileResult, str] | object | None:
        sched = self.buyer.scheduler
        node = await sched.wait_for_node(NODE_WAIT_S, avoid)
        if node is None:
            log.info("spot_check_skipped", job_id=tele.job_id, reason="no other node")
            return None
        try:
            job = await sched.submit(
                tele.path,
                text,
                language=tele.language,
                node=node,
                avoid=avoid,
                check_of=tele.job_id,
                private=tele.run_id in sched.private_runs,  # a private file's check is sealed too
            )
        except SubmitError as exc:
            log.info("spot_check_skipped", job_id=tele.job_id, reason=exc.message)
            return None
        check_id = job.tele.job_id

        def note(checker: str | None, verdict: str) -> None:
            self._store().put_check(
                check_job_id=check_id,
                job_id=tele.job_id,
                run_id=tele.run_id,
                subject=tele.provider_pubkey or "",
                checker=checker,
                verdict=verdict,
                at=time.time(),
            )

        note(None, "pending")
        await job.done.wait()
        done = job.tele
        if done.state != JobState.COMPLETED or not done.provider_pubkey:
            note(done.provider_pubkey, "failed")
            return _FAILED
        result = await sched.result(check_id)
        note(done.provider_pubkey, compare(original, result).value)
        return done.provider_pubkey, result, check_id

    async def _overturn(self, tele: JobTelemetry, winner_job: str, loser: str) -> bool:
        """The original result lost the vote: the winning check's result takes its place (False
        when that result is not in the store, and the original stays)."""
        store = self._store()
        row = await store.result_row(winner_job)
        if row is None:
            return False
        result_id, provider, content = row
        store.put_result(tele.job_id, result_id, provider, content)
        log.warning("spot_check_overturned", job_id=tele.job_id, path=tele.path, loser=loser[:12])
        return True

    # --- standing -------------------------------------------------------------------------

    def _record(self, provider: str, agreed: bool) -> None:
        was_suspect = self.policy.suspect(provider)
        self.policy.record(provider, agreed)
        s = self.policy.of(provider)
        self._store().put_standing(provider, s.passed, s.failed)
        self.buyer.registry.entry(provider).checks = (s.passed, s.failed)
        if not agreed and not was_suspect and self._tg is not None:
            # Pending in every open run from now: the re-checks are found in the store only
            # once the task runs, and a run whose last check ends meanwhile must not settle
            # (and write the provider's other results) before they are counted.
            runs = set(self.buyer.scheduler.runs)
            for run in runs:
                self._pending[run] = self._pending.get(run, 0) + 1
            self._tg.start_soon(self._recheck_all_of, provider, runs)
        self._apply_distrust(provider)

    def _apply_distrust(self, provider: str) -> None:
        if not self.policy.distrusted(provider):
            return
        entry = self.buyer.registry.entry(provider)
        if self.mode == "exclude" and not entry.banned:
            entry.banned = True
            log.warning("provider_distrusted", pubkey=provider[:12], mode=self.mode)

    async def _recheck_all_of(self, provider: str, runs: set[str]) -> None:
        """A provider just failed a check: every other result it gave in open runs gets one too."""
        try:
            for tele in await self._store().completed_jobs_of(provider, runs):
                if tele.job_id not in self._checked:
                    self._spawn(tele, forced=True)
        finally:
            for run in runs:
                self._one_done(run)

    def may_pay(self, provider: str) -> bool:
        return not self.policy.distrusted(provider)

    def counts(self, provider: str) -> tuple[int, int]:
        s = self.policy.standing.get(provider)
        return (s.passed, s.failed) if s else (0, 0)

    async def run_summary(self, run_id: str) -> rpc.CheckSummary:
        checked, agreed, disagreed, jobs, cost = await self._store().run_check_totals(run_id)
        overturned, disputed = await self._store().run_disputes(run_id)
        return rpc.CheckSummary(
            checked=checked,
            agreed=agreed,
            disagreed=disagreed,
            check_jobs=jobs,
            cost_msats=cost,
            overturned=overturned,
            disputed=disputed,
        )


def attach_spot_checks(buyer: BuyerDaemon) -> None:
    """`pylon buyer up` calls this; `--spot-check 0` turns checking off."""
    if buyer.config.spot_check <= 0:
        return
    checks = buyer.spot_checks = SpotChecks(
        buyer,
        SpotCheckPolicy(
            buyer.config.spot_check, distrust_after=buyer.config.distrust_after, rng=random.Random()
        ),
    )
    buyer.listen(checks.on_scheduler_event)
    buyer.on_start(checks.start)


__all__ = ["SpotChecks", "attach_spot_checks"]
