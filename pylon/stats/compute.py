"""Swarm statistics computed from telemetry rows (DESIGN §4), live or replayed."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping

from pylon.nostr.event import NostrEvent
from pylon.nostr.nip90 import ParsedResult
from pylon.schemas.telemetry import GlobalStats, JobState, JobTelemetry, ProviderCount, ProviderStats

RECENT_S = 300.0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already-sorted values (None for none)."""
    if not values:
        return None
    idx = min(len(values) - 1, max(0, round(q * len(values) + 0.5) - 1))
    return round(values[idx], 4)


def median(values: Iterable[float]) -> float | None:
    return percentile(sorted(values), 0.5)


def global_stats(
    jobs: list[JobTelemetry],
    *,
    online_nodes: int = 0,
    names: Mapping[str, str] | None = None,
    dropped: Mapping[str, int] | None = None,
    top: int = 10,
    now: float | None = None,
) -> GlobalStats:
    """`jobs_per_min` is the throughput over the span the jobs ran (first submitted to last
    done): a figure of the work, not of now. `jobs_recent` counts the jobs done in the last
    RECENT_S seconds before `now`, the figure that drops to 0 when the swarm goes idle."""
    completed = [j for j in jobs if j.state == JobState.COMPLETED]
    failed = [j for j in jobs if j.state == JobState.FAILED]
    e2e = sorted(j.end_to_end for j in completed if j.end_to_end is not None)
    finished_count = len(completed) + len(failed)
    span_min = 0.0
    if completed:
        first = min(j.submitted for j in jobs if j.submitted is not None)
        last = max(j.published for j in completed if j.published is not None)
        span_min = max((last - first) / 60.0, 1e-9)
    per = Counter(j.provider_pubkey for j in completed if j.provider_pubkey)
    names = names or {}
    done_at = [j.published for j in completed if j.published is not None]
    now = time.time() if now is None else now
    return GlobalStats(
        online_nodes=online_nodes,
        jobs_completed=len(completed),
        jobs_failed=len(failed),
        jobs_total=len(jobs),
        success_rate=round(len(completed) / finished_count, 4) if finished_count else 0.0,
        jobs_per_min=round(len(completed) / span_min, 2) if completed else 0.0,
        p50_e2e_s=percentile(e2e, 0.5),
        p95_e2e_s=percentile(e2e, 0.95),
        top_providers=[
            ProviderCount(pubkey=pk, completed=n, name=names.get(pk, "")) for pk, n in per.most_common(top)
        ],
        p50_queue_wait_s=median(j.queue_wait for j in completed if j.queue_wait is not None),
        p50_exec_s=median(j.exec_time for j in completed if j.exec_time is not None),
        p50_publish_s=median(j.publish_time for j in completed if j.publish_time is not None),
        dropped_events=dict(dropped or {}),
        jobs_recent=sum(1 for t in done_at if now - t <= RECENT_S),
        recent_s=RECENT_S,
        last_completed_at=max(done_at) if done_at else None,
    )


def provider_stats(
    jobs: list[JobTelemetry],
    pubkey: str,
    *,
    name: str = "",
    online: bool = False,
    uptime_s: float | None = None,
    failures_by_attempt: Mapping[str, int] | None = None,
    checks: tuple[int, int] = (0, 0),
) -> ProviderStats:
    mine = [j for j in jobs if j.provider_pubkey == pubkey]
    completed = [j for j in mine if j.state == JobState.COMPLETED]
    failed = [j for j in mine if j.state == JobState.FAILED]
    reasons: Counter[str] = Counter(j.error.value for j in failed if j.error is not None)
    for reason, n in (failures_by_attempt or {}).items():
        reasons[reason] += n
    return ProviderStats(
        pubkey=pubkey,
        name=name,
        online=online,
        uptime_s=uptime_s,
        completed=len(completed),
        failed=len(failed) + sum((failures_by_attempt or {}).values()),
        failure_reasons=dict(reasons),
        median_runtime_s=median(j.exec_time for j in completed if j.exec_time is not None),
        median_e2e_s=median(j.end_to_end for j in completed if j.end_to_end is not None),
        earned_msats=sum(j.amount_msats for j in completed if j.is_paid),
        checks_passed=checks[0],
        checks_failed=checks[1],
    )


def _dur(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return round(max(0.0, b - a), 4)


def apply_result(t: JobTelemetry, ev: NostrEvent, parsed: ParsedResult) -> None:
    """Fill a job's telemetry from its accepted result's tags (live and replay share this,
    which is what makes `pylon stats --replay` agree with the live figures)."""
    tm = parsed.timing
    t.provider_pubkey = ev.pubkey
    t.started = tm.started_ms / 1000 if tm.started_ms else None
    t.finished = tm.finished_ms / 1000 if tm.finished_ms else None
    t.published = tm.published_ms / 1000 if tm.published_ms else ev.created_at
    if t.picked_up is None:
        t.picked_up = tm.received_ms / 1000 if tm.received_ms else t.started
    if t.submitted is not None:
        t.queue_wait = _dur(t.submitted, t.started)
        t.end_to_end = _dur(t.submitted, t.published)
    t.exec_time = _dur(t.started, t.finished)
    t.publish_time = _dur(t.finished, t.published)
    t.result_id = ev.id
    t.result_hash = parsed.content_sha256
    t.bytes_out = len(ev.content.encode())
    t.amount_msats = parsed.amount_msats
