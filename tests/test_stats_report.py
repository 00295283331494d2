"""`pylon report`: the v0.1 launch scoreboard and the pricing heuristics, on known telemetry rows."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from pylon.schemas.errors import ErrorCode
from pylon.schemas.telemetry import JobState, JobTelemetry

from pylon.cli.main import cli
from pylon.stats.compute import global_stats
from pylon.stats.report import build_report, pricing


def rows(
    n_done: int, n_failed: int, providers: int, *, e2e: float, exec_s: float, kb: int
) -> list[JobTelemetry]:
    out = []
    for i in range(n_done + n_failed):
        done = i < n_done
        out.append(
            JobTelemetry(
                job_id=f"{i:064x}",
                state=JobState.COMPLETED if done else JobState.FAILED,
                provider_pubkey=f"{i % providers:064x}",
                submitted=1000.0 + i,
                published=1000.0 + i + e2e,
                end_to_end=e2e if done else None,
                exec_time=exec_s if done else None,
                bytes_in=kb * 1024,
                error=None if done else ErrorCode.TIMEOUT,
                attempts=1,
            )
        )
    return out


def by_name(report) -> dict:
    return {t.name: t for t in report.targets}


def test_a_launch_that_meets_every_target() -> None:
    jobs = rows(200, 0, 20, e2e=12.5, exec_s=3.6, kb=8)
    rep = build_report(jobs, global_stats(jobs, online_nodes=20), source="replay")
    assert rep.all_met and rep.providers_with_jobs == 20
    checks = by_name(rep)
    assert [
        checks[k].actual
        for k in ("providers_with_jobs", "jobs_completed", "p50_e2e_s", "success_rate", "p95_e2e_s")
    ] == [20, 200, 12.5, 1.0, 12.5]
    p = rep.pricing
    # 100 sats per busy hour = 27.778 msat per exec second; a 3.6 s job costs 100 msat.
    assert p.per_exec_second_msats == 27.778 and p.flat_per_job_msats == 100 == p.flat_per_job_p95_msats
    assert p.exec_s_per_kb == 0.45 and p.per_kb_input_msats == 12.5 and p.median_input_kb == 8
    assert p.jobs_per_node_hour == 1000 and p.jobs_measured == 200
    assert p.recommendation.startswith("charge a flat 1 sat per job")  # 100 msat is under the 1-sat floor


def test_each_target_just_missed() -> None:
    # 199 jobs over 19 providers, 11 failed (94.8 %), median exactly 30 s, p95 exactly 45 s.
    done = rows(188, 0, 19, e2e=30.0, exec_s=1.0, kb=1)
    slow = rows(11, 0, 19, e2e=45.0, exec_s=1.0, kb=1)
    for i, j in enumerate(slow):
        j.job_id = f"{500 + i:064x}"
    failed = rows(0, 11, 19, e2e=0, exec_s=0, kb=1)
    for i, j in enumerate(failed):
        j.job_id = f"{900 + i:064x}"
    jobs = done + slow + failed
    stats = global_stats(jobs)
    assert stats.jobs_completed == 199 and stats.p50_e2e_s == 30.0 and stats.p95_e2e_s == 45.0
    rep = build_report(jobs, stats, source="daemon")
    checks = by_name(rep)
    assert not rep.all_met and rep.providers_with_jobs == 19
    assert not any(c.met for c in checks.values()), checks
    assert checks["success_rate"].actual == round(199 / 210, 4)


def test_pricing_follows_the_stated_assumption() -> None:
    jobs = rows(10, 0, 2, e2e=60.0, exec_s=72.0, kb=4)
    p = pricing(jobs, sats_per_hour=500)
    rate = 500 * 1000 / 3600
    assert p.assumptions.node_sats_per_hour == 500
    assert p.flat_per_job_msats == math.ceil(72.0 * rate) == 10_000
    assert p.per_kb_input_msats == round(18.0 * rate, 3)
    assert "per exec second" in p.recommendation and "a flat 10 sat per job" in p.recommendation

    empty = pricing([])
    assert empty.flat_per_job_msats is None and empty.per_kb_input_msats is None and empty.jobs_measured == 0
    assert "nothing to price" in empty.recommendation
    with pytest.raises(ValueError):
        pricing(jobs, sats_per_hour=0)


def test_report_without_a_daemon_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYLON_HOME", str(tmp_path))
    res = CliRunner().invoke(cli, ["report", "--json"])
    assert res.exit_code == 1 and res.stdout == ""
    assert "not running" in res.stderr and "--replay" in res.stderr
    bad = CliRunner().invoke(cli, ["report", "--sats-per-hour", "-5"])
    assert bad.exit_code == 1 and "--sats-per-hour must be positive" in bad.stderr
