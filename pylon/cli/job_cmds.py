"""`pylon job submit|status|results|list` and `pylon stats`: jobs and figures from the buyer."""

from __future__ import annotations

from pathlib import Path

import anyio
import click

from pylon.cli import resolve
from pylon.cli.group import cli, json_option, relay_option
from pylon.cli.output import emit_json, esc, fail, secs, short, stdout
from pylon.cli.rpc_call import call
from pylon.home import buyer_socket
from pylon.logs import configure_logging
from pylon.schemas import rpc

MAX_FILE_BYTES = 1024 * 1024


def read_input_file(path: Path) -> str:
    """The CLI's own checks, so a bad file is a clear error before any daemon sees it."""
    if not path.exists():
        fail(f"{path}: no such file")
    if not path.is_file():
        fail(f"{path}: not a regular file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        fail(f"too_large: {path} is {size} bytes; files up to {MAX_FILE_BYTES} bytes (1 MiB) map")
    data = path.read_bytes()
    if b"\x00" in data:
        fail(f"bad_input: {path} is binary (NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(f"bad_input: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})")


@cli.group()
def job() -> None:
    """Submit jobs and look at them."""


@job.group("submit")
def job_submit() -> None:
    """Submit a job."""


@job_submit.command("repo-file")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path))
@click.option("--language", default=None, help="override language detection")
@json_option
def submit_repo_file(input_path: Path, language: str | None, as_json: bool) -> None:
    """Map one file: symbols, imports, summary."""
    text = read_input_file(input_path)
    res = call(buyer_socket(), rpc.SubmitReq(path=str(input_path), text=text, language=language), timeout=60)
    if as_json:
        emit_json(res)
    else:
        stdout.print(f"submitted [bold]{res['job_id']}[/]")


@job.command("status")
@click.argument("job_id")
@json_option
def job_status(job_id: str, as_json: bool) -> None:
    """A job's state and telemetry. JOB_ID may be a unique prefix, as lists show it."""
    t = call(buyer_socket(), rpc.JobStatusReq(job_id=resolve.job_id(job_id)))
    if as_json:
        emit_json(t)
        return
    stdout.print(
        f"[bold]{t['job_id']}[/]  {esc(t['path'])}  state=[bold]{t['state']}[/]  "
        f"provider={short(t['provider_pubkey'])}"
        f"  attempts={t['attempts']}  paid={t['is_paid']}"
    )
    if t.get("error"):
        stdout.print(f"error: [red]{esc(t['error'])}[/]")
    stdout.print(
        f"queue_wait={secs(t['queue_wait'])} exec={secs(t['exec_time'])} publish={secs(t['publish_time'])} "
        f"end_to_end={secs(t['end_to_end'])}"
    )


@job.command("results")
@click.argument("job_id")
@json_option
def job_results(job_id: str, as_json: bool) -> None:
    """The result payload of a completed job. JOB_ID may be a unique prefix."""
    r = call(buyer_socket(), rpc.JobResultsReq(job_id=resolve.job_id(job_id)))
    if as_json:
        emit_json(r)
        return
    # Everything here is a node's words about a file: printed as text, never read as markup
    # (a summary quoting `[tool.uv]` must show it).
    stdout.print(f"[bold]{esc(r['path'])}[/] ({esc(r['language'])}, {r['lines']} lines)")
    for s in r["symbols"]:
        stdout.print(f"  {s['line']:>5}  {s['kind']:<10} {s['name']}", markup=False, highlight=False)
    if r["imports"]:
        stdout.print("imports: " + ", ".join(r["imports"]), markup=False, highlight=False)
    stdout.print(r["summary"], markup=False, highlight=False)


@job.command("list")
@click.option("--run", "run_id", default=None, help="only this run's jobs (a run id or a unique prefix)")
@json_option
def job_list(run_id: str | None, as_json: bool) -> None:
    """Jobs, oldest first (optionally of one run)."""
    res = call(buyer_socket(), rpc.JobListReq(run_id=resolve.run_id(run_id) if run_id else None))
    if as_json:
        emit_json(
            {
                "jobs": [
                    {k: j[k] for k in ("job_id", "run_id", "state", "provider_pubkey", "paid")} | j
                    for j in res["jobs"]
                ]
            }
        )
        return
    from rich.table import Table

    table = Table("job", "path", "state", "provider", "paid", "e2e")
    for j in res["jobs"]:
        table.add_row(
            short(j["job_id"]),
            esc(j["path"]),
            j["state"],
            short(j["provider_pubkey"]),
            "yes" if j["paid"] else "no",
            secs(j["end_to_end"]),
        )
    stdout.print(table)


@cli.command()
@click.option("--provider", default=None, help="per-provider figures: a node name (n0) or a pubkey prefix")
@click.option("--replay", is_flag=True, help="rebuild from the relay into a fresh database")
@relay_option
@json_option
def stats(provider: str | None, replay: bool, relays: tuple[str, ...], as_json: bool) -> None:
    """Global or per-provider swarm statistics."""
    if replay:
        from pylon.daemon.config import default_relays
        from pylon.provenance.fetch import RelayUnavailable
        from pylon.stats.replay import replay_stats

        configure_logging()  # logs to stderr: stdout carries only the JSON
        try:
            res = anyio.run(lambda: replay_stats(list(relays) or default_relays(), provider=provider))
        except RelayUnavailable as exc:
            fail(str(exc))
        import msgspec

        res = msgspec.to_builtins(res)
    else:
        res = call(buyer_socket(), rpc.StatsReq(provider=resolve.provider(provider) if provider else None))
    if as_json:
        emit_json(res)
        return
    _print_stats(res, provider)


def _print_stats(res: dict, provider: str | None) -> None:
    from pylon.cli import stats_view

    if provider:
        stats_view.print_provider(res)
        return
    from pylon.rpc.client import DaemonNotRunning, RpcError, call_sync

    try:  # which of the online nodes serve and which are paused is the registry's to say
        nodes = call_sync(buyer_socket(), rpc.NodesReq(), timeout=10)["nodes"]
    except (DaemonNotRunning, RpcError, OSError, TimeoutError):  # --replay, no buyer: counts alone
        nodes = None
    stats_view.print_global(res, nodes)
