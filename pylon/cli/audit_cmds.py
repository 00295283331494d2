"""`pylon trail JOB_ID` (a job's provenance, from the relay alone) and `pylon report` (the launch scoreboard).

Exit codes of `pylon trail`: 0 when the trail was built, whether or not it verifies (the
document says which link failed; `--strict` turns an unverified trail into exit 2); 1 when
the relay has no request with that id, or no relay answers.
"""

from __future__ import annotations

from typing import Any

import anyio
import click
import msgspec

from pylon.cli import resolve
from pylon.cli.group import cli, json_option, relay_option
from pylon.cli.output import emit_json, esc, fail, secs, short, stderr, stdout
from pylon.home import buyer_socket
from pylon.logs import configure_logging
from pylon.schemas import rpc
from pylon.schemas.provenance import Trail
from pylon.schemas.report import LaunchReport
from pylon.schemas.telemetry import GlobalStats, JobTelemetry

TRAIL_UNVERIFIED_EXIT = 2
REPORT_UNMET_EXIT = 2


def _relays(relays: tuple[str, ...]) -> list[str]:
    from pylon.daemon.config import default_relays

    return list(relays) or default_relays()


@cli.command("trail")
@click.argument("job_id")
@relay_option
@click.option("--timeout", type=float, default=10.0, show_default=True, help="seconds per relay query")
@click.option("--strict", is_flag=True, help="exit 2 when the trail does not verify")
@json_option
def trail_cmd(job_id: str, relays: tuple[str, ...], timeout: float, strict: bool, as_json: bool) -> None:
    """The provenance chain of JOB_ID (request → feedback → result → payment → receipt), each event checked.

    Reads the relay directly; no daemon needed. JOB_ID may also be the id of a later link
    (an attempt, result, payment or receipt). Exit 0 when the trail was built, verified or
    not (--strict: 2 when it does not verify); 1 when the relay has no such job or no relay
    answers.
    """
    from pylon.provenance.fetch import RelayUnavailable
    from pylon.provenance.trail import build_trail_from_relays

    configure_logging()  # to stderr: stdout carries only the answer
    job_id = trail_id(job_id)
    urls = _relays(relays)
    try:
        trail = anyio.run(lambda: build_trail_from_relays(urls, job_id, timeout=timeout))
    except RelayUnavailable as exc:
        fail(str(exc))
    if not trail.found:
        fail(f"not_found: no job {job_id} on {', '.join(urls)}")
    if as_json:
        emit_json(trail)
    else:
        _print_trail(trail)
    if strict and not trail.verified:
        raise SystemExit(TRAIL_UNVERIFIED_EXIT)


def trail_id(typed: str) -> str:
    """A full event id as it is; a prefix resolved against the buyer's jobs (the trail itself
    needs no daemon, but only the buyer knows which job a prefix names)."""
    from pylon.ids import HEX, is_full_id, normalize
    from pylon.rpc.client import DaemonNotRunning

    wanted = normalize(typed)
    if is_full_id(wanted):
        return wanted
    if not set(wanted) <= HEX or not wanted:
        fail(f"{typed!r} is not an event id (64 hex characters, or a unique prefix of a job id)")
    try:
        from pylon.rpc.client import call_sync

        call_sync(buyer_socket(), rpc.StatusReq(), timeout=5)
    except (DaemonNotRunning, OSError, TimeoutError):
        fail(
            f"{typed!r} is a prefix, and resolving it needs the buyer (not running): give the whole "
            "64-character id, or start the stack with: pylon up"
        )
    return resolve.job_id(typed)


def _print_trail(trail: Trail) -> None:
    """One row per event, columns aligned, times local, amounts in sat; the details wrap in
    their own column, never through another (and are the relay's words: never markup)."""
    import time

    from rich.table import Table

    mark = "[bold green]verified[/]" if trail.verified else "[bold red]not verified[/]"
    through = (
        f" (holds through {trail.verified_through})" if trail.verified_through and not trail.verified else ""
    )
    stdout.print(f"job [bold]{trail.job_id}[/]  {mark}{through}", highlight=False)
    days = {time.strftime("%Y-%m-%d", time.localtime(link.created_at)) for link in trail.chain}
    fmt = "%H:%M:%S" if len(days) <= 1 else "%Y-%m-%d %H:%M:%S"
    if len(days) == 1:
        stdout.print(f"on {days.pop()} ({time.strftime('%Z')})", highlight=False)
    table = Table(box=None, pad_edge=False, show_edge=False, highlight=False)
    for col in ("", "step", "kind", "event", "by", "at", "detail"):
        table.add_column(col, no_wrap=col != "detail", overflow="fold" if col == "detail" else "ellipsis")
    for link in trail.chain:
        sym = "[green]✓[/]" if link.valid else "[red]✗[/]"
        detail = esc(link.detail) + (" [dim](off path)[/]" if not link.on_path else "")
        for p in link.problems:
            detail += f"\n[red]{esc(p)}[/]"
        table.add_row(
            sym,
            link.role,
            str(link.kind),
            short(link.id, 12),
            short(link.pubkey, 12),
            time.strftime(fmt, time.localtime(link.created_at)),
            detail,
        )
    stdout.print(table)
    for check in trail.checks:
        verdict = {True: "[green]agreed[/]", False: "[red]disagreed[/]", None: "[yellow]not compared[/]"}
        by = f"by {short(check.pubkey, 12)}" if check.pubkey else "no answer"
        stdout.print(f"check  {short(check.job_id, 12)}  {by}  {verdict[check.agreed]}")
    missing = [p for p in trail.problems if not p.startswith("invalid ")]
    for p in missing:
        stdout.print(f"[yellow]• {esc(p)}[/]")


# --- report ------------------------------------------------------------------------------------


async def _daemon_rows() -> tuple[GlobalStats, list[JobTelemetry]]:
    """The buyer's stats and every job's telemetry over one socket connection."""
    from pylon.rpc.client import RpcClient

    async with await RpcClient.connect(buyer_socket()) as client:
        stats = msgspec.convert(await client.call(rpc.StatsReq()), GlobalStats)
        listing = await client.call(rpc.JobListReq(limit=10_000_000), timeout=120)
        jobs = []
        for item in listing["jobs"]:
            jobs.append(
                msgspec.convert(await client.call(rpc.JobStatusReq(job_id=item["job_id"])), JobTelemetry)
            )
    return stats, jobs


@cli.command("report")
@click.option("--replay", is_flag=True, help="rebuild from the relay instead of asking the buyer daemon")
@relay_option
@click.option("--buyer", "buyer_pubkey", default=None, help="with --replay: only this buyer's jobs")
@click.option(
    "--sats-per-hour",
    type=float,
    default=None,
    help="what a node should earn per busy hour (the pricing assumption; default 100)",
)
@click.option("--strict", is_flag=True, help="exit 2 when any launch target is missed")
@json_option
def report_cmd(
    replay: bool,
    relays: tuple[str, ...],
    buyer_pubkey: str | None,
    sats_per_hour: float | None,
    strict: bool,
    as_json: bool,
) -> None:
    """The v0.1 launch scoreboard and mainnet pricing heuristics from measured jobs."""
    from pylon.stats.report import DEFAULT_SATS_PER_HOUR, build_report

    configure_logging()  # to stderr: stdout carries only the answer
    if sats_per_hour is not None and not sats_per_hour > 0:
        fail("--sats-per-hour must be positive")
    if replay:
        from pylon.provenance.fetch import RelayUnavailable
        from pylon.stats.replay import replay as do_replay

        urls = _relays(relays)
        try:
            r = anyio.run(lambda: do_replay(urls, buyer=buyer_pubkey))
        except RelayUnavailable as exc:
            fail(str(exc))
        stats, jobs, source = r.global_stats(), r.jobs, "replay"
    else:
        from pylon.rpc.client import DaemonNotRunning, RpcError

        try:
            stats, jobs = anyio.run(_daemon_rows)
        except DaemonNotRunning as exc:
            fail(f"{exc} (or use --replay to rebuild from the relay)")
        except RpcError as exc:
            fail(f"{exc.message} ({exc.code})")
        source = "daemon"
    try:
        rep = build_report(jobs, stats, source=source, sats_per_hour=sats_per_hour or DEFAULT_SATS_PER_HOUR)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        emit_json(rep)
    else:
        _print_report(rep)
    if strict and not rep.all_met:
        raise SystemExit(REPORT_UNMET_EXIT)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# What each launch target measures, and the unit its measured value is shown in.
_TARGET_WORDS = {
    "providers_with_jobs": ("nodes that did a job", "count"),
    "jobs_completed": ("jobs done", "count"),
    "p50_e2e_s": ("median, request→result", "s"),
    "success_rate": ("done of finished", "%"),
    "p95_e2e_s": ("p95, request→result", "s"),
}


def _measured(name: str, v: float | None) -> str:
    unit = _TARGET_WORDS.get(name, ("", ""))[1]
    if v is None:
        return "-"
    if unit == "%":
        return f"{v * 100:.1f} %"
    if unit == "s":
        return f"{v:.3f} s"
    if unit == "count":
        return f"{int(v):,}"
    return _fmt(v)


def _print_report(rep: LaunchReport) -> None:
    from rich.table import Table

    from pylon.stats.report import MIN_JOBS, MIN_PROVIDERS

    where = "this buyer's jobs" if rep.source == "daemon" else "jobs replayed from the relay"
    stdout.print(
        f"[bold]Pylon v0.1 launch targets[/], measured on {where}. They are the goals for the "
        f"public network ({MIN_PROVIDERS}+ providers, {MIN_JOBS}+ jobs), not a pass mark for a "
        "local stack: a laptop with a few nodes misses the provider count by design.",
        highlight=False,
    )
    table = Table("target", "what it measures", "goal", "measured", "")
    for t in rep.targets:
        words = _TARGET_WORDS.get(t.name, ("", ""))[0]
        goal = t.target.replace("95%", "95 %")
        table.add_row(
            t.name, words, goal, _measured(t.name, t.actual), "[green]✓[/]" if t.met else "[red]✗[/]"
        )
    stdout.print(table)
    s = rep.stats
    stdout.print(
        f"completed {s.jobs_completed}  failed {s.jobs_failed}  {s.jobs_per_min:.1f} jobs/min  "
        f"p50 {secs(s.p50_e2e_s)}  p95 {secs(s.p95_e2e_s)}  online nodes {s.online_nodes}"
    )
    if s.checked_share is not None:
        stdout.print(
            f"spot checks: {s.checked_share:.1%} of map jobs checked on a second node, "
            f"{(s.disagreement_rate or 0):.1%} of those disagreed"
        )
    p = rep.pricing
    stdout.print(
        f"\n[bold]pricing[/] (assumes {p.assumptions.node_sats_per_hour:g} sats per busy node-hour: "
        f"{p.assumptions.basis})"
    )
    stdout.print(
        f"  measured: {p.jobs_measured} jobs, median exec {secs(p.median_exec_s)}, "
        f"p95 exec {secs(p.p95_exec_s)}, median input {_fmt(p.median_input_kb)} KB"
    )
    stdout.print(
        f"  per exec second: {p.per_exec_second_msats:g} msat   flat per job: "
        f"{_fmt(p.flat_per_job_msats)} msat (p95 {_fmt(p.flat_per_job_p95_msats)})   "
        f"per input KB: {_fmt(p.per_kb_input_msats)} msat"
    )
    stdout.print(f"  [bold]{p.recommendation}[/]")
    if not rep.all_met:
        stderr.print(
            "[yellow]not every launch target is met yet[/] (expected on a local stack; --strict exits 2)"
        )
