"""`pylon map REPO [--out DIR]` and `pylon map query RUN_OR_DIR "words"`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pylon.cli.group import cli, json_option
from pylon.cli.map_follow import RunLost, follow_run
from pylon.cli.output import emit_json, esc, fail, stderr, stdout
from pylon.cli.rpc_call import human_error
from pylon.home import buyer_socket, pylon_home
from pylon.repomap.gitsafe import public_repo
from pylon.repomap.llm_map import DEFAULT_TOKENS, MIN_TOKENS
from pylon.repomap.privacy import is_private
from pylon.repomap.snapshot import is_url
from pylon.rpc.client import CLOSED, DaemonNotRunning, RpcError, call_sync
from pylon.schemas import rpc

# How long `pylon map` waits for a lost buyer to come back and finish the run.
REATTACH_TIMEOUT_S = 600.0


class MapFailed(Exception):
    """The map call failed; printed by the caller once the progress bar is gone."""


def map_call(sock: Path, req: rpc.MapReq, on_progress: Callable[[dict[str, Any]], None] | None) -> Any:
    """The map call; if the buyer goes away mid-run, wait for it to come back and finish it.

    Failures raise MapFailed (not print): a live progress bar must stop before the message."""
    run: dict[str, str] = {}

    def progress(p: dict[str, Any]) -> None:
        run["id"] = p["run_id"]
        if on_progress is not None:
            on_progress(p)

    try:
        return call_sync(sock, req, timeout=None, on_progress=progress)
    except DaemonNotRunning as exc:
        raise MapFailed(str(exc)) from exc
    except RpcError as exc:
        if exc.code != CLOSED or "id" not in run:
            raise MapFailed(human_error(exc)) from exc
    stderr.print(
        f"[yellow]lost the buyer mid-run[/]; waiting for it to come back and finish run "
        f"{run['id'][:16]} (Ctrl-C stops waiting; the run goes on)"
    )
    try:
        return follow_run(sock, run["id"], timeout=REATTACH_TIMEOUT_S, on_progress=on_progress)
    except RunLost as lost:
        raise MapFailed(str(lost)) from lost


def check_repo_arg(repo: str) -> str:
    """A local path is checked here, before any bar is drawn; a URL is the buyer's to clone."""
    if is_url(repo):
        return repo
    p = Path(repo).expanduser()
    if not p.exists():
        fail(f"{repo}: no such directory (bad_input)")
    if not p.is_dir():
        fail(f"{repo} is not a directory; pylon map takes a repository folder or a git URL (bad_input)")
    return str(p.resolve())


def run_map(
    repo: str,
    out: Path | None,
    *,
    show_progress: bool = True,
    socket: Path | None = None,
    tokens: int = DEFAULT_TOKENS,
    fresh: bool = False,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    privacy: str = "auto",
) -> dict[str, Any]:
    # Decided here, on the URL as typed (credentials included), and sent explicitly.
    try:
        privacy = "private" if is_private(repo, privacy) else "public"
    except ValueError as exc:
        fail(str(exc))
    req = rpc.MapReq(
        repo=check_repo_arg(repo),
        out_dir=str(out.resolve()) if out else None,
        tokens=tokens,
        fresh=fresh,
        include=list(include),
        exclude=list(exclude),
        privacy=privacy,
    )
    sock = socket or buyer_socket()
    if not show_progress:
        try:
            return map_call(sock, req, None)
        except MapFailed as exc:
            fail(str(exc))
    # The bar starts with the first progress report: anything that fails before (no buyer, a
    # bad repository, no node) prints on a clean line, and a failure later stops it first.
    bar = Progress(
        TextColumn("[bold]mapping[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=stderr,
        transient=False,
    )
    task: list[Any] = []

    def on_progress(p: dict[str, Any]) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(escape(public_repo(repo)), total=None, failed=0))
        bar.update(
            task[0],
            total=p["files"],
            completed=p["completed"] + p["failed"],
            failed=p["failed"],
            description=f"{escape(public_repo(repo))} ({p['run_id'][:10]}…)",
        )

    try:
        res = map_call(sock, req, on_progress)
    except MapFailed as exc:
        bar.stop()
        fail(str(exc))
    finally:
        bar.stop()
    return res


def resolve_run_dir(run_or_dir: str) -> Path:
    """A map's output directory, or a run id (a unique prefix will do) resolved to where that
    run wrote its artifacts, `--out` or the default, by asking the buyer; without a buyer,
    the default maps folder is searched."""
    p = Path(run_or_dir).expanduser()
    if p.exists():
        return p
    from pylon.ids import HEX, normalize

    typed = normalize(run_or_dir)
    if typed and set(typed) <= HEX:
        try:
            runs = call_sync(buyer_socket(), rpc.RunsReq(), timeout=30)["runs"]
        except (DaemonNotRunning, RpcError, OSError, TimeoutError):
            runs = None
        if runs is not None:
            from pylon.cli import resolve

            run = resolve.run(typed)
            if run.get("out_dir") and Path(run["out_dir"]).is_dir():
                return Path(run["out_dir"])
            fail(f"run {run['run_id'][:16]} wrote no artifacts where it said ({run.get('out_dir')})")
    maps = pylon_home() / "maps"
    if maps.is_dir():
        hits = [d for d in maps.iterdir() if d.name.startswith(typed[:16]) or typed.startswith(d.name)]
        if len(hits) == 1:
            return hits[0]
    fail(f"{run_or_dir}: not a map output directory or a known run id")


@cli.command("map")
@click.argument("args", nargs=-1, required=True)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), default=None, help="where to write the artifacts"
)
@click.option(
    "--tokens",
    type=click.IntRange(MIN_TOKENS, 1_000_000),
    default=DEFAULT_TOKENS,
    show_default=True,
    help="budget of repo_map.md, the map for a coding agent, in cl100k_base tokens",
)
@click.option("--fresh", is_flag=True, help="map every file again, even those an earlier run mapped")
@click.option("--include", multiple=True, metavar="GLOB", help="map only matching paths (repeatable)")
@click.option("--exclude", multiple=True, metavar="GLOB", help="leave matching paths out (repeatable)")
@click.option("--limit", type=int, default=10, show_default=True, help="with query: how many hits")
@click.option(
    "--public",
    "privacy",
    flag_value="public",
    help="publish inputs and results in the clear (default for public https URLs without credentials)",
)
@click.option(
    "--private",
    "privacy",
    flag_value="private",
    help="encrypt every job to its node with NIP-44 (default for local paths, ssh and credentialed URLs)",
)
@json_option
def map_cmd(
    args: tuple[str, ...],
    out_dir: Path | None,
    tokens: int,
    fresh: bool,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    limit: int,
    privacy: str | None,
    as_json: bool,
) -> None:
    """Map REPO_PATH_OR_URL across the swarm; or search a run: `pylon map query RUN_OR_DIR "words"`.

    Writes repo_map.json, repo_map.md (for a coding agent, --tokens), overview.md and a search
    index. Files an earlier run mapped with the same bytes are not sent again (--fresh: all are).
    Local paths, ssh and credentialed URLs map as private runs (NIP-44 encrypted jobs; --public
    opts out).
    """
    if args[0] == "query":
        if len(args) < 3:
            fail('usage: pylon map query RUN_OR_DIR "words"')
        _query(args[1], " ".join(args[2:]), limit, as_json)
        return
    if len(args) != 1:
        fail(f"usage: pylon map REPO_PATH_OR_URL [--out DIR] (got {len(args)} arguments)")
    res = run_map(
        args[0],
        out_dir,
        show_progress=not as_json,
        tokens=tokens,
        fresh=fresh,
        include=include,
        exclude=exclude,
        privacy=privacy or "auto",
    )
    if as_json:
        emit_json(res)
        return
    sent, cached = res.get("sent", res["files"]), res.get("cached", 0)
    how = f"{sent} jobs sent, {cached} reused from earlier runs" if cached else f"{sent} jobs sent"
    if not sent:
        how = "no jobs sent: every file was mapped before (--fresh maps them again)"
    stdout.print(
        f"run [bold]{res['run_id']}[/]: {res['completed']}/{res['files']} files mapped by "
        f"{res['providers']} providers in {res['wall_s']:.2f}s ({res['failed']} failed; {how})"
        + (", private (NIP-44 encrypted jobs)" if res.get("private") else ""),
        markup=True,
        highlight=False,
    )
    if res.get("skipped"):
        stdout.print(
            "skipped: " + ", ".join(f"{n} {r}" for r, n in sorted(res["skipped"].items())), markup=False
        )
    checks = res.get("checks")
    if checks and checks.get("check_jobs"):
        disputed = checks.get("disputed", [])
        stdout.print(
            f"spot checks: {checks['checked']} files computed again elsewhere, {checks['agreed']} agreed, "
            f"{checks.get('overturned', 0)} out-voted and replaced, {len(disputed)} disputed "
            f"({checks['check_jobs']} check jobs, {checks['cost_msats'] // 1000} sats)",
            markup=False,
            highlight=False,
        )
        if disputed:
            more = f" and {len(disputed) - 10} more" if len(disputed) > 10 else ""
            stdout.print(
                "  disputed (no majority; the first answer is kept): " + ", ".join(disputed[:10]) + more,
                markup=False,
                highlight=False,
            )
    for name, path in res["artifacts"].items():
        stdout.print(f"  {name:<11} {path}", markup=False, highlight=False)


def _query(run_or_dir: str, words: str, limit: int, as_json: bool) -> None:
    from pylon.repomap.search_index import SearchIndexError, query

    d = resolve_run_dir(run_or_dir)
    try:
        hits = query(d, words, limit=limit)
    except SearchIndexError as exc:
        fail(str(exc))
    import msgspec

    if as_json:
        emit_json({"hits": msgspec.to_builtins(hits)})
        return
    if not hits:
        stdout.print("no matches")
    for h in hits:
        syms = ", ".join(f"{s.kind} {s.name}:{s.line}" for s in h.symbols)
        stdout.print(f"[bold]{esc(h.path)}[/]  {h.score:.2f}  {esc(syms)}", highlight=False)
        if h.summary:
            stdout.print(f"    {h.summary.splitlines()[0][:120]}", markup=False, highlight=False)
