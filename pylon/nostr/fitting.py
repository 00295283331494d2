"""Publish the events that can be too big (input chunks, results and their parts) so that they
fit every relay in use, re-fitting when a relay teaches a smaller limit by refusing.

Each round builds the events for the pool's current budget (RelayPool.budget(): the smallest
limits across relays); a `too large` refusal lowers that relay's limit, and the next round
builds new, smaller events (never the same event again). Rounds are bounded; what still does
not fit is a FitFailure with the relays' own reasons, for the caller to report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import anyio
import msgspec

from pylon.keys import NostrKeys
from pylon.logs import get_logger
from pylon.nostr import nip90, private_jobs
from pylon.nostr.budget import Budget
from pylon.nostr.event import NostrEvent
from pylon.nostr.refusals import Refusal
from pylon.nostr.relay_client import PublishError, PublishResult, RelayPool
from pylon.schemas.events import FileResult, JobRequest, ResultTiming

log = get_logger("pylon.fitting")

MAX_REFITS = 4
OK_TIMEOUT_S = 10.0


class FitOutcome(msgspec.Struct):
    """What became of a fitted publish: `ok`, or why not (`too_large`: no size fits)."""

    ok: bool
    too_large: bool = False
    reason: str = ""
    event_id: str = ""
    refits: int = 0
    parts: int = 0


async def publish_all(
    pool: RelayPool, events: Sequence[NostrEvent], *, only: Iterable[str] | None = None
) -> list[PublishResult]:
    """Publish concurrently (one RTT for all of them, not one each); results in order."""
    out: list[PublishResult | None] = [None] * len(events)
    targets = None if only is None else set(only)

    async def one(i: int, ev: NostrEvent) -> None:
        out[i] = await pool.publish_checked(ev, timeout=OK_TIMEOUT_S, only=targets)

    async with anyio.create_task_group() as tg:
        for i, ev in enumerate(events):
            tg.start_soon(one, i, ev)
    return [r for r in out if r is not None]


def _too_large(results: Iterable[PublishResult]) -> set[str]:
    return {u for r in results for u in r.refused_as(Refusal.TOO_LARGE)}


def _smaller(pool: RelayPool, before: tuple[int, int, int]) -> bool:
    return tuple(pool.budget()) < before


async def publish_chunks(pool: RelayPool, keys: NostrKeys, text: str) -> list[str]:
    """Chunk `text` for the relays in use and publish the chunks; returns their ids.

    A re-fit goes to every relay: the request lists one set of chunk ids for all of them.
    Raises PublishError (with the relays' reasons) when no fitting is accepted.
    """
    for round_ in range(MAX_REFITS + 1):
        budget = pool.budget()
        try:
            _, chunks = nip90.build_chunks(keys, text, budget)
        except nip90.InputTooLarge as exc:
            raise PublishError(str(exc)) from exc
        results = await publish_all(pool, chunks)
        big = _too_large(results)
        if big and _smaller(pool, tuple(budget)) and round_ < MAX_REFITS:
            log.info("chunks_refit", relays=sorted(big), content=pool.budget().content, chunks=len(chunks))
            continue
        bad = [r for r in results if not r.ok and r.refused]
        if bad:
            raise PublishError(f"relay rejected an input chunk: {bad[0].reason()}", bad[0])
        return [c.id for c in chunks]
    raise AssertionError("unreachable")


async def publish_sealed_request(
    pool: RelayPool, build: Callable[[Budget], tuple[NostrEvent, list[NostrEvent]]]
) -> NostrEvent:
    """A private request (private_jobs.build_request, given the budget by `build`) whose
    sealed chunks are published fitted to the relays in use; returns the request to publish.
    Raises PublishError (with the relays' reasons) when no fitting is accepted."""
    for round_ in range(MAX_REFITS + 1):
        budget = pool.budget()
        try:
            req, chunks = build(budget)
        except nip90.InputTooLarge as exc:
            raise PublishError(str(exc)) from exc
        results = await publish_all(pool, chunks)
        big = _too_large(results)
        if big and _smaller(pool, tuple(budget)) and round_ < MAX_REFITS:
            log.info(
                "sealed_chunks_refit", relays=sorted(big), content=pool.budget().content, chunks=len(chunks)
            )
            continue
        bad = [r for r in results if not r.ok and r.refused]
        if bad:
            raise PublishError(f"relay rejected an input chunk: {bad[0].reason()}", bad[0])
        return req
    raise AssertionError("unreachable")


async def publish_result(
    pool: RelayPool,
    keys: NostrKeys,
    *,
    request: JobRequest,
    result: FileResult,
    timing: ResultTiming,
    amount_msats: int = 0,
    sealer: private_jobs.Sealer | None = None,
) -> FitOutcome:
    """Publish a result (and its parts) that fits every relay; re-fit for the relays that
    refused it as too large. A relay that never answers keeps the event for replay and is
    not a failure; refusals from every relay are. An encrypted request's result is sealed
    back to the buyer with `sealer` (private_jobs)."""
    only: set[str] | None = None
    accepted_somewhere = ""
    last_reason = ""
    for round_ in range(MAX_REFITS + 1):
        budget = pool.budget()
        try:
            ev, parts = private_jobs.build_result_with_parts(
                keys,
                sealer,
                request=request,
                result=result,
                timing=timing,
                amount_msats=amount_msats,
                budget=budget,
            )
        except nip90.ResultTooLarge as exc:
            return FitOutcome(ok=bool(accepted_somewhere), too_large=True, reason=str(exc), refits=round_)
        targets = set(only) if only is not None else set(pool.urls)
        part_results = await publish_all(pool, parts, only=targets)
        big = _too_large(part_results)
        # The result goes where every part went (or might still go: no answer is not a no).
        for r in part_results:
            targets -= {o.relay for o in r.refused}
        res = await pool.publish_checked(ev, timeout=OK_TIMEOUT_S, only=targets) if targets else None
        if res is not None:
            big |= _too_large([res])
            if res.ok or (not res.refused and res.unanswered):
                accepted_somewhere = accepted_somewhere or ev.id
        reasons = [r.reason() for r in [*part_results, *([res] if res else [])] if r.refused]
        last_reason = "; ".join(dict.fromkeys(reasons)) or last_reason
        if not big:
            if accepted_somewhere:
                return FitOutcome(ok=True, event_id=accepted_somewhere, refits=round_, parts=len(parts))
            return FitOutcome(ok=False, reason=last_reason or "no relay accepted the result", refits=round_)
        if not _smaller(pool, tuple(budget)) or round_ == MAX_REFITS:
            break
        log.info("result_refit", job_id=request.job_id, relays=sorted(big), content=pool.budget().content)
        only = big
    if accepted_somewhere:
        log.warning("result_not_on_every_relay", job_id=request.job_id, reason=last_reason[:300])
        return FitOutcome(ok=True, event_id=accepted_somewhere, reason=last_reason, refits=MAX_REFITS)
    return FitOutcome(ok=False, too_large=True, reason=last_reason, refits=MAX_REFITS)
