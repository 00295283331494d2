"""`pylon map REPO [--out DIR]` and `pylon map query RUN_OR_DIR "words"`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pylon.cli.group import cli, json_option
from pylon.cli.map_follow import RunLost, follow_run
from pylon.cli.output import emit_json, fail, stderr, stdout
from pylon.cli.rpc_call import call
from pylon.home import buyer_socket, pylon_home
from pylon.repomap.privacy import is_private
from pylon.rpc.client import RpcError
from pylon.schemas import rpc

# How long `pylon map` waits for a lost buyer to come back and finish the run.
REATTACH_TIMEOUT_S = 600.0


def map_call(sock: Path, req: rpc.MapReq, on_progress: Callable[[dict[str, Any]], None] | None) -> Any:
    """The map call; if the buyer goes away mid-run, wait for it to come back and finish it."""
    run: dict[str, str] = {}

    def progress(p: dict[str, Any]) -> None:
        run["id"] = p["run_id"]
        if on_progress is not None:
            on_progress(p)

    try:
        return call(sock, req, timeout=None, on_progress=progress, reraise_closed=True)
    except RpcError as exc:  # the connection was lost (CLOSED): other errors already failed
        if "id" not in run:
            fail(f"{exc.code}: {exc.message}")
    stderr.print(
        f"[yellow]lost the buyer mid-run[/]; waiting for it to come back and finish run "
        f"{run['id'][:16]} (Ctrl-C stops waiting; the run goes on)"
    )
    try:
        return follow_run(sock, run["id"], timeout=REATTACH_TIMEOUT_S, on_progress=on_progress)
    except RunLost as lost:
        fail(str(lost))


def run_map(
    repo: str,
    out: Path | None,
    *,
    show_progress: bool = True,
    socket: Path | None = None,
    privacy: str = "auto",
) -> dict[str, Any]:
    repo_arg = repo
    if "://" not in repo and not repo.startswith("git@"):
        repo_arg = str(Path(repo).expanduser().resolve())
    # Decided here, on the URL as typed (credentials included), and sent explicitly.
    privacy = "private" if is_private(repo, privacy) else "public"
    req = rpc.MapReq(repo=repo_arg, out_dir=str(out.resolve()) if out else None, privacy=privacy)
    if not show_progress:
        return map_call(socket or buyer_socket(), req, None)
    with Progress(
        TextColumn("[bold]mapping[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=stderr,
        transient=False,
    ) as bar:
        task = bar.add_task(repo, total=None, failed=0)

        def on_progress(p: dict[str, Any]) -> None:
            bar.update(
                task,
                total=p["files"],
                completed=p["completed"] + p["failed"],
                failed=p["failed"],
                description=f"{repo} ({p['run_id'][:10]}…)",
            )

        res = map_call(socket or buyer_socket(), req, on_progress)
        bar.update(task, total=res["files"], completed=res["completed"] + res["failed"], failed=res["failed"])
    return res


def resolve_run_dir(run_or_dir: str) -> Path:
    p = Path(run_or_dir).expanduser()
    if p.exists():
        return p
    maps = pylon_home() / "maps"
    if maps.is_dir():
        hits = [
            d for d in maps.iterdir() if d.name.startswith(run_or_dir[:16]) or run_or_dir.startswith(d.name)
        ]
        if len(hits) == 1:
            return hits[0]
    fail(f"{run_or_dir}: not a map output directory or a known run id")


@cli.command("map")
@click.argument("args", nargs=-1, required=True)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), default=None, help="where to write the artifacts"
)
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
    args: tuple[str, ...], out_dir: Path | None, limit: int, privacy: str | None, as_json: bool
) -> None:
    """Map REPO_PATH_OR_URL across the swarm; or search a run: `pylon map query RUN_OR_DIR "words"`."""
    if args[0] == "query":
        if len(args) < 3:
            fail('usage: pylon map query RUN_OR_DIR "words"')
        _query(args[1], " ".join(args[2:]), limit, as_json)
        return
    if len(args) != 1:
        fail(f"usage: pylon map REPO_PATH_OR_URL [--out DIR] (got {len(args)} arguments)")
    res = run_map(args[0], out_dir, show_progress=not as_json, privacy=privacy or "auto")
    if as_json:
        emit_json(res)
        return
    stdout.print(
        f"run [bold]{res['run_id']}[/]: {res['completed']}/{res['files']} files mapped by "
        f"{res['providers']} providers in {res['wall_s']:.2f}s ({res['failed']} failed)"
        + (", private (NIP-44 encrypted jobs)" if res.get("private") else "")
    )
    if res.get("skipped"):
        stdout.print("skipped: " + ", ".join(f"{n} {r}" for r, n in sorted(res["skipped"].items())))
    for name, path in res["artifacts"].items():
        stdout.print(f"  {name:<9} {path}")


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
        stdout.print(f"[bold]{h.path}[/]  {h.score:.2f}  {syms}")
        if h.summary:
            stdout.print(f"    {h.summary.splitlines()[0][:120]}")
