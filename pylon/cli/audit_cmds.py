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

from pylon.cli.group import cli, json_option, relay_option
from pylon.cli.output import emit_json, fail, secs, short, stderr, stdout
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
    job_id = job_id.strip().lower()
    if len(job_id) != 64 or any(c not in "0123456789abcdef" for c in job_id):
        fail(f"{job_id!r} is not an event id (64 hex characters)")
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


def _print_trail(trail: Trail) -> None:
    from rich.tree import Tree

    mark = "[bold green]verified[/]" if trail.verified else "[bold red]not verified[/]"
    through = (
        f" (holds through {trail.verified_through})" if trail.verified_through and not trail.verified else ""
    )
    tree = Tree(f"job [bold]{trail.job_id}[/]  {mark}{through}")
    for link in trail.chain:
        sym = "[green]✓[/]" if link.valid else "[red]✗[/]"
        path = "" if link.on_path else " [dim](off path)[/]"
        node = tree.add(
            f"{sym} {link.role:<8} {link.kind}  {short(link.id, 16)}  by {short(link.pubkey)}  "
            f"at {link.created_at}{path}  [dim]{link.detail}[/]"
        )
        for p in link.problems:
            node.add(f"[red]{p}[/]")
    for check in trail.checks:
        verdict = {True: "[green]agreed[/]", False: "[red]disagreed[/]", None: "[yellow]not compared[/]"}
        by = f"by {short(check.pubkey)}" if check.pubkey else "no answer"
        tree.add(
            f"  check    {short(check.job_id, 16)}  {by}  {verdict[check.agreed]}  [dim]{check.detail}[/]"
        )
    stdout.print(tree)
    missing = [p for p in trail.problems if not p.startswith("invalid ")]
    for p in missing:
        stdout.print(f"[yellow]• {p}[/]")


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
            fail(f"{exc.code}: {exc.message}")
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


def _print_report(rep: LaunchReport) -> None:
    from rich.table import Table

    table = Table("target", "goal", "measured", "", title=f"Pylon v0.1 launch scoreboard ({rep.source})")
    for t in rep.targets:
        table.add_row(t.name, t.target, _fmt(t.actual), "[green]✓[/]" if t.met else "[red]✗[/]")
    stdout.print(table)
    s = rep.stats
    stdout.print(
        f"completed {s.jobs_completed}  failed {s.jobs_failed}  {s.jobs_per_min:.1f} jobs/min  "
        f"p50 {secs(s.p50_e2e_s)}  p95 {secs(s.p95_e2e_s)}  online nodes {s.online_nodes}"
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
        stderr.print("[yellow]not every launch target is met yet[/]")
