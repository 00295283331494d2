"""The launch scoreboard (v0.1 targets) and pricing heuristics from measured jobs.

Targets (v0.1): at least 20 providers that completed a job, at least 200 completed jobs,
median end-to-end under 30 s, success rate at least 95 %, p95 end-to-end under 45 s.

Pricing starts from one stated assumption, what a node should earn per hour its executor is
busy (`node_sats_per_hour`), and spreads it over the measured work:

- per second of execution: node_sats_per_hour × 1000 / 3600 msats;
- flat per job: that rate × the median (and p95) execution time, rounded up to a msat;
- per KB of input: that rate × (total exec seconds / total input KB), a through-the-origin
  fit of cost to size.

Cashu's sat keysets cannot move less than one sat, so a price below 1000 msats is paid as one
sat per job; the recommendation says when that floor, not the measurement, sets the price.
"""

from __future__ import annotations

import math
import time

from pylon.schemas.report import LaunchReport, Pricing, PricingAssumptions, TargetCheck
from pylon.schemas.telemetry import GlobalStats, JobState, JobTelemetry
from pylon.stats.compute import median, percentile

MIN_PROVIDERS = 20
MIN_JOBS = 200
MAX_P50_E2E_S = 30.0
MIN_SUCCESS = 0.95
MAX_P95_E2E_S = 45.0

# 100 sats ≈ $0.10 at 1 sat ≈ $0.001 (BTC ≈ $100k): ~25 W of power at $0.30/kWh ($0.008/h) plus
# wear of a $600 desktop over three years ($0.023/h), times three so running a node is worth it.
DEFAULT_SATS_PER_HOUR = 100.0
DEFAULT_BASIS = (
    "100 sats per busy node-hour ≈ $0.10/h at BTC ≈ $100k: power (~25 W at $0.30/kWh) and "
    "wear of a small desktop (~$0.03/h), times three as the operator's margin"
)
MSATS_PER_SAT = 1000


def targets(stats: GlobalStats, providers_with_jobs: int) -> list[TargetCheck]:
    p50, p95 = stats.p50_e2e_s, stats.p95_e2e_s
    return [
        TargetCheck(
            name="providers_with_jobs",
            target=f">= {MIN_PROVIDERS}",
            actual=providers_with_jobs,
            met=providers_with_jobs >= MIN_PROVIDERS,
        ),
        TargetCheck(
            name="jobs_completed",
            target=f">= {MIN_JOBS}",
            actual=stats.jobs_completed,
            met=stats.jobs_completed >= MIN_JOBS,
        ),
        TargetCheck(
            name="p50_e2e_s",
            target=f"< {MAX_P50_E2E_S:g} s",
            actual=p50,
            met=p50 is not None and p50 < MAX_P50_E2E_S,
        ),
        TargetCheck(
            name="success_rate",
            target=f">= {MIN_SUCCESS:.0%}",
            actual=stats.success_rate,
            met=stats.jobs_completed + stats.jobs_failed > 0 and stats.success_rate >= MIN_SUCCESS,
        ),
        TargetCheck(
            name="p95_e2e_s",
            target=f"< {MAX_P95_E2E_S:g} s",
            actual=p95,
            met=p95 is not None and p95 < MAX_P95_E2E_S,
        ),
    ]


def pricing(
    jobs: list[JobTelemetry], *, sats_per_hour: float = DEFAULT_SATS_PER_HOUR, basis: str = DEFAULT_BASIS
) -> Pricing:
    if not sats_per_hour > 0:
        raise ValueError(f"sats_per_hour must be positive, got {sats_per_hour}")
    done = [j for j in jobs if j.state == JobState.COMPLETED and j.exec_time is not None]
    execs = sorted(j.exec_time for j in done if j.exec_time is not None)
    sized = [j for j in done if j.bytes_in > 0]
    total_exec = sum(j.exec_time or 0.0 for j in sized)
    total_kb = sum(j.bytes_in for j in sized) / 1024
    rate = sats_per_hour * MSATS_PER_SAT / 3600  # msats per exec second
    med, p95 = median(execs), percentile(execs, 0.95)
    flat = math.ceil(med * rate) if med is not None else None
    flat95 = math.ceil(p95 * rate) if p95 is not None else None
    s_per_kb = total_exec / total_kb if total_kb > 0 else None
    per_kb = round(s_per_kb * rate, 3) if s_per_kb is not None else None
    per_hour = round(3600 / med, 1) if med else None
    if flat is None:
        advice = "no completed jobs with timing yet: nothing to price from"
    elif flat95 is not None and flat95 < MSATS_PER_SAT:
        advice = (
            f"charge a flat 1 sat per job: the measured cost ({flat} msat median, {flat95} msat p95) "
            f"is below the 1-sat Cashu floor, so per-second or per-KB pricing would round up anyway"
        )
    else:
        advice = (
            f"charge per exec second ({rate:.1f} msat/s) or per input KB ({per_kb} msat/KB), "
            f"with a floor of 1 sat; a flat {math.ceil((flat95 or flat) / MSATS_PER_SAT)} sat per job "
            f"covers 95 % of jobs"
        )
    return Pricing(
        assumptions=PricingAssumptions(node_sats_per_hour=sats_per_hour, basis=basis),
        jobs_measured=len(execs),
        median_exec_s=med,
        p95_exec_s=p95,
        median_input_kb=round(m / 1024, 3) if (m := median(j.bytes_in for j in sized)) is not None else None,
        exec_s_per_kb=round(s_per_kb, 6) if s_per_kb is not None else None,
        per_exec_second_msats=round(rate, 3),
        flat_per_job_msats=flat,
        flat_per_job_p95_msats=flat95,
        per_kb_input_msats=per_kb,
        min_payable_msats=MSATS_PER_SAT,
        jobs_per_node_hour=per_hour,
        recommendation=advice,
    )


def build_report(
    jobs: list[JobTelemetry],
    stats: GlobalStats,
    *,
    source: str,
    sats_per_hour: float = DEFAULT_SATS_PER_HOUR,
    basis: str | None = None,
) -> LaunchReport:
    """The scoreboard: `stats` as the buyer (or the replay) computed them, `jobs` its rows."""
    providers = len({j.provider_pubkey for j in jobs if j.state == JobState.COMPLETED and j.provider_pubkey})
    checks = targets(stats, providers)
    if basis is None:
        basis = DEFAULT_BASIS if sats_per_hour == DEFAULT_SATS_PER_HOUR else "given on the command line"
    return LaunchReport(
        source=source,
        generated_at=round(time.time(), 3),
        all_met=all(c.met for c in checks),
        targets=checks,
        providers_with_jobs=providers,
        stats=stats,
        pricing=pricing(jobs, sats_per_hour=sats_per_hour, basis=basis),
    )
