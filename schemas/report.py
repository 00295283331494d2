"""`pylon report`: the launch scoreboard against the v0.1 targets and measured pricing."""

from __future__ import annotations

import msgspec
from pylon.schemas.telemetry import GlobalStats


class TargetCheck(msgspec.Struct, kw_only=True):
    name: str  # providers_with_jobs | jobs_completed | p50_e2e_s | success_rate | p95_e2e_s
    target: str  # human form, e.g. ">= 20", "< 30 s"
    actual: float | None
    met: bool


class PricingAssumptions(msgspec.Struct, kw_only=True):
    """The stated cost model the prices follow from; change it with `pylon report --sats-per-hour`."""

    node_sats_per_hour: float  # what one node should earn per hour its executor is busy
    basis: str  # where that number comes from, in words


class Pricing(msgspec.Struct, kw_only=True):
    """Three ways to price a repo-file job, all derived from the measured completed jobs."""

    assumptions: PricingAssumptions
    jobs_measured: int  # completed jobs with an exec time
    median_exec_s: float | None
    p95_exec_s: float | None
    median_input_kb: float | None
    exec_s_per_kb: float | None  # total exec seconds / total input KB
    per_exec_second_msats: float  # node_sats_per_hour * 1000 / 3600
    flat_per_job_msats: int | None  # covers the median job
    flat_per_job_p95_msats: int | None  # covers 95 % of jobs
    per_kb_input_msats: float | None
    min_payable_msats: int  # Cashu sat keysets cannot pay less than one sat
    jobs_per_node_hour: float | None  # one slot, back to back, at the median exec time
    recommendation: str


class LaunchReport(msgspec.Struct, kw_only=True):
    source: str  # "daemon" (the buyer's telemetry) or "replay" (rebuilt from the relay)
    generated_at: float
    all_met: bool
    targets: list[TargetCheck]
    providers_with_jobs: int
    stats: GlobalStats
    pricing: Pricing
