"""`pylon stats --replay`: rebuild the buyer's telemetry from the relay and compute the same stats.

The relay holds every signed step of every job, so the rows the live buyer keeps in SQLite
(DESIGN §4) can be derived again by anyone: requests give the job, its attempts and its
submitted time (`submitted_ms`, the same value the live buyer stores); feedback and results
replay the buyer's state machine; kind-9321 nutzaps mark jobs paid. The rows go into a
FRESH BuyerStore (a temp file) and through `pylon.stats.compute` exactly as in
`BuyerDaemon.stats()`, so live and replayed figures agree.

The state machine follows `daemon/buyer/scheduler.py` event by event, ordered by the events' own
millisecond stamps (request `submitted_ms`, feedback `at_ms`, result `published`):

- feedback and results count only from the node the attempt was `p`-tagged to, tagging the
  buyer, with a result's `x` hash, payload and input hash checked (`nip90.parse_result`);
- `processing` on the current attempt is the pickup; `error` closes the attempt, and the job
  fails when the code is not retryable (bad_input, too_large, cancelled) or it was the last
  of MAX_ATTEMPTS attempts; a re-issued request closes the attempt it replaces (timeout);
- the first valid result of any attempt, while the job is open, completes it;
- a job whose last attempt is older than `stale_after_s` with no result and no successor
  failed (the live buyer's pickup + result timeouts ran out).

What events cannot say: a job the buyer cancelled locally replays as failed once stale,
and an attempt closed by a timeout is `timeout` if the node had picked it up, else
`provider_offline` (the live buyer asks whether the node was still heartbeating).
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pylon.daemon.buyer.store import BuyerStore
from pylon.logs import get_logger
from pylon.nostr import nip61, nip90, private_jobs
from pylon.nostr.event import InvalidEvent, NostrEvent, verify_event
from pylon.nostr.filters import Filter
from pylon.nostr.heartbeat import ONLINE_INTERVALS, parse_heartbeat
from pylon.nostr.nip89 import parse_announce
from pylon.provenance.fetch import RawReader
from pylon.schemas import kinds
from pylon.schemas.errors import NO_RETRY, ErrorCode
from pylon.schemas.events import Feedback, FeedbackStatus, Heartbeat, JobRequest
from pylon.schemas.telemetry import GlobalStats, JobState, JobTelemetry, ProviderStats
from pylon.stats.compute import apply_result, global_stats, provider_stats

log = get_logger("pylon.stats.replay")

MAX_ATTEMPTS = 3  # BuyerConfig.max_attempts

STALE_AFTER_S = 75.0  # pickup timeout (10 s) + result timeout (60 s) + slack
ID_BATCH = 100  # ids per `#e` filter: a batch's feedback and results stay well under a page


@dataclass
class _Attempt:
    ev: NostrEvent
    req: JobRequest
    issued_ms: int
    picked: bool = False
    picked_ms: int | None = None  # the node's stamp on its `processing` feedback
    outcome: str | None = None  # completed | failed
    error: str | None = None

    def close(self, outcome: ErrorCode | str) -> None:
        if self.outcome is not None:
            return
        value = outcome.value if isinstance(outcome, ErrorCode) else outcome
        self.outcome = "completed" if value == "completed" else "failed"
        self.error = None if value == "completed" else value


@dataclass
class _Job:
    attempts: list[_Attempt]
    feedback: list[tuple[NostrEvent, Feedback]] = field(default_factory=list)  # (event, Feedback)
    results: list[tuple[NostrEvent, nip90.ParsedResult]] = field(default_factory=list)
    payments: list[NostrEvent] = field(default_factory=list)


@dataclass
class Replay:
    """What the relay says, as telemetry rows read back from a fresh BuyerStore."""

    jobs: list[JobTelemetry]
    online: set[str]
    names: dict[str, str]
    heartbeats: dict[str, Heartbeat]
    dropped: dict[str, int]
    failures_by_attempt: dict[str, int] = field(default_factory=dict)  # for `provider`, when asked
    truncated_pages: int = 0

    def global_stats(self) -> GlobalStats:
        return global_stats(self.jobs, online_nodes=len(self.online), names=self.names, dropped=self.dropped)

    def provider_stats(self, provider: str) -> ProviderStats:
        hb = self.heartbeats.get(provider)
        return provider_stats(
            self.jobs,
            provider,
            name=self.names.get(provider, ""),
            online=provider in self.online,
            # A node that is not online has no uptime, whatever its last heartbeat said (it
            # stays on the relay a while: expirations leave room for clock skew).
            uptime_s=hb.uptime_s if hb and provider in self.online else None,
            failures_by_attempt=self.failures_by_attempt,
        )


async def replay_stats(
    relays: list[str], provider: str | None = None, buyer: str | None = None, **kwargs: float
) -> GlobalStats | ProviderStats:
    """Global stats (or one provider's) rebuilt from `relays`; `buyer` limits to one buyer's jobs."""
    r = await replay(relays, buyer=buyer, provider=provider, **kwargs)
    return r.provider_stats(provider) if provider else r.global_stats()


async def replay(
    relays: Sequence[str],
    *,
    buyer: str | None = None,
    provider: str | None = None,
    timeout: float = 10.0,
    stale_after_s: float = STALE_AFTER_S,
    now: float | None = None,
) -> Replay:
    """Fetch, replay and store into a fresh BuyerStore; raises RelayUnavailable."""
    dropped: Counter[str] = Counter()
    now = time.time() if now is None else now
    async with RawReader(relays, timeout=timeout) as reader:
        hbs, names = await _swarm(reader, dropped)
        jobs = await _fetch_jobs(reader, buyer, list(names), dropped)
        truncated = reader.truncated
        if reader.incomplete:
            dropped["incomplete_queries"] += reader.incomplete
    rows: list[JobTelemetry] = []
    attempt_rows: list[tuple[object, ...]] = []
    for job in jobs.values():
        tele = _replay_job(job, now, stale_after_s)
        rows.append(tele)
        for a in job.attempts:
            attempt_rows.append(
                (a.ev.id, tele.job_id, a.req.assigned, a.issued_ms / 1000, a.outcome, a.error)
            )
            if a.req.assigned and a.req.assigned not in names:
                names[a.req.assigned] = a.req.assigned[:8]  # the live registry knows every assigned node
    rows.sort(key=lambda t: (t.submitted or 0, t.job_id))
    online = {pk for pk, (hb, at) in hbs.items() if now - at <= ONLINE_INTERVALS * hb.interval_s}
    with tempfile.TemporaryDirectory(prefix="pylon-replay-") as tmp:
        db = await BuyerStore.open(Path(tmp) / "telemetry.db")
        try:
            for t in rows:
                db.put(t)
            db.insert_attempts(attempt_rows)
            stored = await db.all_jobs()
            by_attempt = await db.failures_by_attempt(provider) if provider else {}
        finally:
            await db.close()
    if truncated:
        dropped["truncated_pages"] += truncated
    log.debug("replayed", jobs=len(stored), online=len(online), dropped=dict(dropped))
    return Replay(
        jobs=stored,
        online=online,
        names=names,
        heartbeats={pk: hb for pk, (hb, _) in hbs.items()},
        dropped=dict(dropped),
        failures_by_attempt=by_attempt,
        truncated_pages=truncated,
    )


# --- fetching ----------------------------------------------------------------------------------


def _verified(ev: NostrEvent, dropped: Counter[str]) -> bool:
    try:
        verify_event(ev)
    except InvalidEvent as exc:
        dropped[exc.reason] += 1
        return False
    return True


async def _swarm(
    reader: RawReader, dropped: Counter[str]
) -> tuple[dict[str, tuple[Heartbeat, int]], dict[str, str]]:
    """Newest heartbeat per node (with its created_at) and the names the live registry would show."""
    hbs: dict[str, tuple[Heartbeat, int]] = {}
    announced: dict[str, tuple[str, int]] = {}
    for ev in await reader.query([Filter(kinds=[kinds.HEARTBEAT]), Filter(kinds=[kinds.ANNOUNCE])]):
        if not _verified(ev, dropped):
            continue
        try:
            if ev.kind == kinds.HEARTBEAT:
                hb = parse_heartbeat(ev)
                if ev.pubkey not in hbs or ev.created_at >= hbs[ev.pubkey][1]:
                    hbs[ev.pubkey] = (hb, ev.created_at)
            elif ev.kind == kinds.ANNOUNCE:
                ann = parse_announce(ev)
                if ev.pubkey not in announced or ev.created_at >= announced[ev.pubkey][1]:
                    announced[ev.pubkey] = (ann.name, ev.created_at)
        except InvalidEvent as exc:
            dropped[exc.reason] += 1
    names: dict[str, str] = {}
    for pk in set(hbs) | set(announced):
        if pk in announced:
            names[pk] = announced[pk][0]
        elif pk in hbs and hbs[pk][0].name:
            names[pk] = hbs[pk][0].name
        else:
            names[pk] = pk[:8]
    return hbs, names


def _tags_p(ev: NostrEvent, pubkey: str) -> bool:
    return any(len(t) > 1 and t[1] == pubkey for t in ev.tags_named("p"))


async def _fetch_jobs(
    reader: RawReader, buyer: str | None, nodes: list[str], dropped: Counter[str]
) -> dict[str, _Job]:
    req_filter = Filter(kinds=[kinds.JOB_REQUEST], authors=[buyer] if buyer else None)
    # A second holding more requests than a page: ask per assigned node instead.
    split = (lambda f: [f.replace(p=nodes)]) if nodes else None
    jobs: dict[str, _Job] = {}
    retries: list[tuple[NostrEvent, JobRequest]] = []
    for ev in await reader.query([req_filter], split=split):
        if nip90.is_chunk(ev) or nip90.is_run_root(ev) or nip90.is_cancel(ev) or not _verified(ev, dropped):
            continue
        try:
            req = private_jobs.parse_request(ev, None)  # a private job: its public view
        except InvalidEvent as exc:
            dropped[exc.reason] += 1
            continue
        if req.retry_of:
            retries.append((ev, req))
        else:
            jobs[ev.id] = _Job(
                attempts=[_Attempt(ev=ev, req=req, issued_ms=req.submitted_ms or ev.created_at * 1000)]
            )
    for ev, req in retries:
        job = jobs.get(req.retry_of or "")
        if job is None or ev.pubkey != job.attempts[0].ev.pubkey:
            dropped["orphan_attempt"] += 1
            continue
        job.attempts.append(_Attempt(ev=ev, req=req, issued_ms=req.submitted_ms or ev.created_at * 1000))
    attempt_job: dict[str, str] = {}
    for job_id, job in jobs.items():
        job.attempts[1:] = sorted(
            job.attempts[1:], key=lambda a: (_attempt_no(a.ev), a.issued_ms, a.ev.created_at, a.ev.id)
        )
        for a in job.attempts:
            attempt_job[a.ev.id] = job_id

    ids = list(attempt_job)
    for i in range(0, len(ids), ID_BATCH):
        batch = ids[i : i + ID_BATCH]
        answers = [
            ev
            for ev in await reader.query([Filter(kinds=[kinds.JOB_FEEDBACK, kinds.JOB_RESULT], e=batch)])
            if _verified(ev, dropped)
        ]
        # Feedback first: a result too big for one event is carried by `partial` feedback parts.
        parts = {ev.id: ev for ev in answers if ev.kind == kinds.JOB_FEEDBACK}
        for ev in sorted(answers, key=lambda e: e.kind != kinds.JOB_FEEDBACK):
            _file_answer(ev, jobs, attempt_job, parts, dropped)
    # A nutzap tags the request the node answered (`job`: an attempt id) and the result, or
    # for a prepayment the attempt again: look payments up by attempt id.
    for i in range(0, len(ids), ID_BATCH):
        for ev in await reader.query([Filter(kinds=[kinds.NUTZAP], e=ids[i : i + ID_BATCH])]):
            if not _verified(ev, dropped):
                continue
            marked = {t[3]: t[1] for t in ev.tags_named("e") if len(t) >= 4}
            job_id = attempt_job.get(marked.get("job", ""))
            if job_id is not None:
                jobs[job_id].payments.append(ev)
    return jobs


def _attempt_no(ev: NostrEvent) -> int:
    """The request's `attempt` param: orders re-issues made within one millisecond."""
    for t in ev.tags_named("param"):
        if len(t) >= 3 and t[1] == "attempt":
            try:
                return int(t[2])
            except ValueError:
                break
    return 1


def _file_answer(
    ev: NostrEvent,
    jobs: dict[str, _Job],
    attempt_job: dict[str, str],
    parts: dict[str, NostrEvent],
    dropped: Counter[str],
) -> None:
    """Sort a feedback or result onto its job, with the checks the live buyer makes."""
    try:
        if ev.kind == kinds.JOB_FEEDBACK:
            fb = nip90.parse_feedback(ev)
            att_id = fb.job_id
        else:
            att_id = nip90.result_job_id(ev) or ""
        job_id = attempt_job.get(att_id)
        if job_id is None:
            raise InvalidEvent("unknown_job")
        job = jobs[job_id]
        att = next(a for a in job.attempts if a.ev.id == att_id)
        if not _tags_p(ev, job.attempts[0].ev.pubkey):
            raise InvalidEvent("not_for_buyer")  # the live buyer subscribes by #p
        if ev.kind == kinds.JOB_FEEDBACK:
            if att.req.assigned and ev.pubkey != att.req.assigned:
                raise InvalidEvent("feedback_from_unassigned")
            job.feedback.append((ev, fb))
        else:
            if att.req.assigned and ev.pubkey != att.req.assigned:
                raise InvalidEvent("result_from_unassigned")
            parsed = private_jobs.parse_result_for_stats(
                ev, [parts[p] for p in nip90.result_part_ids(ev) if p in parts], None
            )
            first = job.attempts[0].req
            if parsed.result.input_sha256 and parsed.result.input_sha256 != first.sha256:
                raise InvalidEvent("result_for_other_input")
            job.results.append((ev, parsed))
    except InvalidEvent as exc:
        dropped[exc.reason] += 1


# --- the buyer's state machine, replayed -------------------------------------------------------


def _replay_job(job: _Job, now: float, stale_after_s: float) -> JobTelemetry:
    first = job.attempts[0]
    req = first.req
    t = JobTelemetry(
        job_id=first.ev.id,
        run_id=req.run_id,
        path=req.path,
        language=req.language,
        state=JobState.ASSIGNED,
        buyer_pubkey=first.ev.pubkey,
        provider_pubkey=req.assigned,
        submitted=(req.submitted_ms or first.ev.created_at * 1000) / 1000,
        attempts=len(job.attempts),
        bytes_in=req.size,
    )
    by_id = {a.ev.id: a for a in job.attempts}
    index = {a.ev.id: i for i, a in enumerate(job.attempts)}
    # (ms, attempt index, step, what, payload). Within one millisecond, news about an earlier
    # attempt came before the re-issue it caused, and an attempt is issued before news of it.
    timeline: list[tuple[int, int, int, str, object]] = []
    for idx, a in enumerate(job.attempts[1:], start=1):
        timeline.append((a.issued_ms, idx, 0, "issue", idx))
    for ev, fb in job.feedback:
        timeline.append((fb.at_ms or ev.created_at * 1000, index[fb.job_id], 1, "feedback", (ev, fb)))
    for ev, parsed in job.results:
        ms = parsed.timing.published_ms or ev.created_at * 1000
        timeline.append((ms, index[parsed.job_id], 2, "result", (ev, parsed)))
    timeline.sort(key=lambda x: x[:3])

    current = first
    issued = 1
    done = False
    won: _Attempt | None = None
    for *_, what, payload in timeline:
        if what == "issue":
            assert isinstance(payload, int)
            nxt = job.attempts[payload]
            current.close(ErrorCode.TIMEOUT if current.picked else ErrorCode.PROVIDER_OFFLINE)
            issued = payload + 1
            if not done:
                current = nxt
                t.provider_pubkey = nxt.req.assigned
                t.state = JobState.ASSIGNED
            continue
        if done:
            continue  # late news: the live buyer drops it
        if what == "feedback":
            ev, fb = payload  # type: ignore[misc]
            att = by_id[fb.job_id]
            if att is not current:
                continue
            if fb.status == FeedbackStatus.PROCESSING and not att.picked:
                att.picked = True
                att.picked_ms = fb.at_ms or None
                t.state = JobState.PROCESSING
                t.picked_up = (fb.at_ms / 1000) if fb.at_ms else ev.created_at
            elif fb.status == FeedbackStatus.ERROR and att.outcome is None:
                code = fb.error or ErrorCode.EXEC_ERROR
                att.close(code)
                if code in NO_RETRY or issued >= MAX_ATTEMPTS:
                    t.state, t.error, done = JobState.FAILED, code, True
            continue
        ev, parsed = payload  # type: ignore[misc]
        att = by_id[nip90.result_job_id(ev) or ""]
        if att is not current:
            current.close(ErrorCode.TIMEOUT)
            current = att
        # As live: the pickup is the winning attempt's own stamp (else its `received` tag).
        t.picked_up = att.picked_ms / 1000 if att.picked_ms else None
        _complete(t, ev, parsed)
        att.close("completed")
        won = att
        done = True

    if not done:
        last_issue = job.attempts[-1].issued_ms / 1000
        if now - last_issue > stale_after_s:
            code = (
                ErrorCode(current.error)
                if current.error
                else (ErrorCode.TIMEOUT if current.picked else ErrorCode.PROVIDER_OFFLINE)
            )
            current.close(code)
            t.state, t.error = JobState.FAILED, code
    if won is not None:
        _mark_paid(t, job.payments, won.ev.id)
    return t


def _complete(t: JobTelemetry, ev: NostrEvent, parsed: nip90.ParsedResult) -> None:
    """The same fields, from the same tags, as Scheduler._accept_result."""
    apply_result(t, ev, parsed)
    t.state = JobState.COMPLETED
    t.error = None


def _mark_paid(t: JobTelemetry, payments: list[NostrEvent], attempt_id: str) -> None:
    """Paid: a nutzap by the buyer to the node that made the winning result, naming that result
    (or, paid up front, the attempt it answered). The amount is what the nutzap states, as the
    live payer records it; a prepayment keeps the result's own amount (the live buyer's result
    handler writes it after the payment)."""
    for ev in sorted(payments, key=lambda e: (e.created_at, e.id)):
        try:
            zap = nip61.parse_nutzap(ev)
        except InvalidEvent:
            continue
        if ev.pubkey != t.buyer_pubkey or zap.node != t.provider_pubkey:
            continue
        if zap.result_id not in (t.result_id, attempt_id):
            continue
        t.is_paid = True
        t.paid = float(ev.created_at)
        t.payment_event_id = ev.id
        if zap.result_id == t.result_id:
            t.amount_msats = zap.amount_msats
        return
