"""The per-job telemetry row (DESIGN §4) and the stats derived from it."""

from __future__ import annotations

import enum

import msgspec
from pylon.schemas.errors import ErrorCode


class JobState(enum.StrEnum):
    SUBMITTED = "submitted"
    ASSIGNED = "assigned"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})


class JobTelemetry(msgspec.Struct, kw_only=True):
    """One job as the buyer saw it. Times are unix seconds (float, ms precision)."""

    job_id: str
    run_id: str | None = None
    path: str = ""
    language: str = ""
    state: JobState = JobState.SUBMITTED
    buyer_pubkey: str = ""
    provider_pubkey: str | None = None
    submitted: float | None = None
    picked_up: float | None = None
    started: float | None = None
    finished: float | None = None
    published: float | None = None
    paid: float | None = None
    queue_wait: float | None = None
    exec_time: float | None = None
    publish_time: float | None = None
    end_to_end: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    result_id: str | None = None
    result_hash: str | None = None
    error: ErrorCode | None = None
    attempts: int = 0
    amount_msats: int = 0
    is_paid: bool = False
    payment_event_id: str | None = None
    # Local clock at the buyer when the result verified: the true end of the loop as the buyer
    # saw it. Not derivable from events, so replayed stats use `end_to_end` instead.
    received: float | None = None


class ProviderCount(msgspec.Struct):
    pubkey: str
    completed: int
    name: str = ""


class GlobalStats(msgspec.Struct, kw_only=True):
    online_nodes: int
    jobs_completed: int
    jobs_failed: int
    jobs_total: int
    success_rate: float
    jobs_per_min: float
    p50_e2e_s: float | None
    p95_e2e_s: float | None
    top_providers: list[ProviderCount]
    p50_queue_wait_s: float | None = None
    p50_exec_s: float | None = None
    p50_publish_s: float | None = None
    dropped_events: dict[str, int] = {}
    # Spot checks (deterministic map results computed again on another node); None: none ran.
    checked_share: float | None = None  # of completed map jobs, the share that was checked
    disagreement_rate: float | None = None  # of checked jobs, the share some node disagreed on
    jobs_recent: int = 0  # jobs completed in the last `recent_s` seconds
    recent_s: float = 300.0
    last_completed_at: float | None = None  # unix time of the last completed job


class ProviderStats(msgspec.Struct, kw_only=True):
    pubkey: str
    name: str = ""
    online: bool = False
    uptime_s: float | None = None
    completed: int
    failed: int
    failure_reasons: dict[str, int]
    median_runtime_s: float | None
    median_e2e_s: float | None = None
    earned_msats: int = 0
    checks_passed: int = 0  # spot checks of its results that another node agreed with
    checks_failed: int = 0
