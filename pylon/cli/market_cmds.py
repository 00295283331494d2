"""`pylon up` (a whole local market) and `pylon demo` (the hero run)."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from pylon.cli.group import cli, json_option
from pylon.cli.output import emit_json, fail, stderr, stdout
from pylon.cli.stack_state import clear_state, write_state
from pylon.cli.up_view import StopSignal, fund_once, print_up_banner, stopped_summary, wait_for_stop
from pylon.defaults import MINT_PORT, RELAY_PORT
from pylon.home import pylon_home
from pylon.localmarket.launcher import DEMO_FUND_SATS, LocalMarket, paid_market_args
from pylon.rpc.client import RpcError
from pylon.schemas import rpc

# The v0.1 launch targets (DESIGN, issue 4's scoreboard).
TARGETS = {"providers": 20, "jobs": 200, "success_rate": 0.95, "p50_e2e_s": 30.0, "p95_e2e_s": 45.0}


def project_source() -> Path:
    """This checkout (when run from one), else the installed pylon package: maps offline."""
    import pylon

    pkg = Path(pylon.__file__).resolve().parent
    root = pkg.parent
    return root if (root / "pyproject.toml").exists() else pkg


@cli.command("up")
@click.option(
    "--nodes",
    type=click.IntRange(0, 200),
    default=3,
    show_default=True,
    help="how many provider nodes to start (deterministic executor, named n0, n1, …)",
)
@click.option("--relay-port", type=int, default=RELAY_PORT, show_default=True)
@click.option(
    "--mint/--no-mint", "with_mint", default=True, show_default=True, help="start the testnet mint too"
)
@click.option("--mint-port", type=int, default=MINT_PORT, show_default=True)
@click.option("--heartbeat", type=float, default=2.0, show_default=True)
@click.option("--verbose", is_flag=True, help="daemon logs at info level")
@json_option
def up(
    nodes: int,
    relay_port: int,
    with_mint: bool,
    mint_port: int,
    heartbeat: float,
    verbose: bool,
    as_json: bool,
) -> None:
    """Relay, mint, buyer and N nodes for a laptop; Ctrl-C stops them all."""
    node_args, buyer_args = paid_market_args(with_mint)
    market = LocalMarket(
        home=pylon_home(),
        nodes=nodes,
        relay_port=relay_port,
        with_mint=with_mint,
        mint_port=mint_port if with_mint else 0,
        heartbeat_s=heartbeat,
        quiet=not verbose,
        node_args=node_args,
        buyer_args=buyer_args,
    )
    try:
        with stderr.status(f"starting relay{', mint' if with_mint else ''}, buyer and {nodes} nodes…"):
            market.start(timeout=120)
            balance, funded = fund_once(market) if with_mint else (None, 0)
    except (TimeoutError, RuntimeError, RpcError, OSError) as exc:
        market.stop()
        fail(str(exc))
    info = {
        "home": str(market.home),
        "relay": market.relay_url,
        "mint": market.mint_url,
        "nodes": market.node_names(),
        "logs": str(market.home / "logs"),
        "buyer_balance_sats": balance,
        "funded_sats": funded,
    }
    # Caught before anything says "up": SIGTERM's default action would end us without stopping
    # the market, and a Ctrl-C sent the moment the banner shows must stop it cleanly.
    stop = StopSignal()
    write_state(market.home, info)
    if as_json:
        emit_json(info)
    else:
        print_up_banner(market, info, funded)
    try:
        wait_for_stop(market, stop, live=not as_json)
    finally:
        if not as_json:
            stderr.print("stopping…")
        clear_state(market.home)
        market.stop()
        if not as_json:
            stderr.print(f"stopped: {stopped_summary(market)}", highlight=False)


DEMO_HEARTBEAT_S = 2.0


@cli.command("demo")
@click.option("--nodes", type=int, default=20, show_default=True)
@click.option("--repo", default=None, help="path or URL to map (default: Pylon's own source)")
@click.option("--repeat", type=int, default=1, show_default=True, help="map it K times in a row")
@click.option("--mint/--no-mint", "with_mint", default=True, show_default=True)
@click.option("--keep", is_flag=True, help="keep the demo's PYLON_HOME (artifacts are kept either way)")
@json_option
def demo(nodes: int, repo: str | None, repeat: int, with_mint: bool, keep: bool, as_json: bool) -> None:
    """The hero run: spin up a local market, map a repo, show the results, tear it down."""
    from pylon.cli import demo_out
    from pylon.cli.map_cmds import run_map

    t_start = time.perf_counter()
    target = repo or str(project_source())
    home = Path(tempfile.mkdtemp(prefix="pylon-demo-"))
    try:  # before anything starts: a ./pylon-out the demo did not write is never deleted
        out_root = demo_out.claim(Path.cwd() / "pylon-out")
    except demo_out.DemoOutError as exc:
        fail(str(exc))
    node_args, buyer_args = paid_market_args(with_mint)
    market = LocalMarket(
        home=home,
        nodes=nodes,
        with_mint=with_mint,
        # 2 s, as `pylon up`: twenty nodes on a laptop's few cores send heartbeats seconds late
        # under the map's load, and 1 s intervals had live nodes taken for lost.
        heartbeat_s=DEMO_HEARTBEAT_S,
        node_args=node_args,
        buyer_args=buyer_args,
    )
    runs: list[dict[str, Any]] = []
    try:
        with stderr.status(f"starting relay{', mint' if with_mint else ''}, buyer and {nodes} nodes…"):
            market.start(timeout=180)
            if with_mint:
                market.fund("buyer", DEMO_FUND_SATS)
        t_up = time.perf_counter() - t_start
        stderr.print(f"[green]market up[/] in {t_up:.1f}s: {nodes} nodes online")
        for i in range(repeat):
            out = out_root / f"run-{i + 1}" if repeat > 1 else out_root
            demo_out.reset(out, out_root)
            res = run_map(target, out, show_progress=not as_json, socket=market.socket_of("buyer"))
            runs.append(res)
        if with_mint:  # payments run behind the results: let them land before the scoreboard
            market.wait_paid(timeout=60)
        stats = market.call("buyer", rpc.StatsReq())
        jobs = market.call("buyer", rpc.JobListReq())["jobs"]
    except (TimeoutError, RuntimeError, RpcError, OSError) as exc:
        market.stop()
        fail(str(exc))
    finally:
        market.stop()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    total_s = time.perf_counter() - t_start
    board = scoreboard(runs, stats, jobs, paid=with_mint)
    doc = {
        "repo": target,
        "nodes": nodes,
        "runs": runs,
        "scoreboard": board,
        "up_s": round(t_up, 2),
        "total_s": round(total_s, 2),
        "home": str(home) if keep else None,
    }
    if as_json:
        emit_json(doc)
        return
    last = runs[-1]
    stdout.rule("[bold]Pylon demo")
    stdout.print(f"mapped [bold]{target}[/] {len(runs)}× with {nodes} nodes")
    for name, path in last["artifacts"].items():
        stdout.print(f"  {name:<9} {path}")
    overview = Path(last["artifacts"]["overview"]).read_text().splitlines()
    stdout.rule("overview.md (first lines)")
    stdout.print("\n".join(overview[:30]), markup=False, highlight=False)
    stdout.rule("scoreboard vs. v0.1 targets")
    table = Table("metric", "value", "target", "ok")
    for row in board["rows"]:
        table.add_row(
            row["metric"], str(row["value"]), row["target"], "[green]yes[/]" if row["ok"] else "[red]no[/]"
        )
    stdout.print(table)
    walls = [r["wall_s"] for r in runs]
    stdout.print(
        f"map wall time: {min(walls):.2f}s best, {statistics.median(walls):.2f}s median; "
        f"stack up in {t_up:.1f}s; whole demo {total_s:.1f}s"
    )


def scoreboard(
    runs: list[dict[str, Any]], stats: dict[str, Any], jobs: list[dict[str, Any]], *, paid: bool = False
) -> dict[str, Any]:
    providers = len(
        {j["provider_pubkey"] for j in jobs if j["state"] == "completed" and j["provider_pubkey"]}
    )
    all_ok = all(r["failed"] == 0 for r in runs)
    rows = [
        {
            "metric": "providers with ≥1 job",
            "value": providers,
            "target": f"≥ {TARGETS['providers']}",
            "ok": providers >= TARGETS["providers"],
        },
        {
            "metric": "jobs",
            "value": stats["jobs_total"],
            "target": f"≥ {TARGETS['jobs']}",
            "ok": stats["jobs_total"] >= TARGETS["jobs"],
        },
        {
            "metric": "success rate",
            "value": stats["success_rate"],
            "target": f"≥ {TARGETS['success_rate']}",
            "ok": stats["success_rate"] >= TARGETS["success_rate"],
        },
        {
            "metric": "p50 end-to-end (s)",
            "value": stats["p50_e2e_s"],
            "target": f"< {TARGETS['p50_e2e_s']}",
            "ok": stats["p50_e2e_s"] is not None and stats["p50_e2e_s"] < TARGETS["p50_e2e_s"],
        },
        {
            "metric": "p95 end-to-end (s)",
            "value": stats["p95_e2e_s"],
            "target": f"< {TARGETS['p95_e2e_s']}",
            "ok": stats["p95_e2e_s"] is not None and stats["p95_e2e_s"] < TARGETS["p95_e2e_s"],
        },
        {
            "metric": "runs with every file mapped",
            "value": f"{sum(r['failed'] == 0 for r in runs)}/{len(runs)}",
            "target": "all",
            "ok": all_ok,
        },
    ]
    completed = [j for j in jobs if j["state"] == "completed"]
    n_paid = sum(1 for j in completed if j.get("paid"))
    if paid:
        rows.append(
            {
                "metric": "completed jobs paid (testnet ecash)",
                "value": f"{n_paid}/{len(completed)}",
                "target": "all",
                "ok": n_paid == len(completed),
            }
        )
    return {
        "providers": providers,
        "jobs": stats["jobs_total"],
        "success_rate": stats["success_rate"],
        "p50_e2e_s": stats["p50_e2e_s"],
        "p95_e2e_s": stats["p95_e2e_s"],
        "paid_jobs": n_paid,
        "rows": rows,
    }
