"""`pylon ask RUN_OR_DIR "question" [--fanout K] [--depth D] [--budget-sats N] [--out DIR]`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import click
from rich.live import Live
from rich.text import Text

from pylon.cli.group import cli, json_option
from pylon.cli.output import emit_json, fail, stderr, stdout
from pylon.cli.rpc_call import call
from pylon.home import buyer_socket
from pylon.schemas import rpc

STATE_MARK = {"completed": "✓", "failed": "✗", "cancelled": "✗", "processing": "…", "assigned": "→"}


def render_progress(p: dict[str, Any]) -> Text:
    """The live view of an ask on stderr: one line per round, then the sub-calls still going."""
    nodes = [n for n in p["nodes"] if n["depth"] >= 0]
    text = Text()
    budget = f" of {p['budget_sats']}" if p.get("budget_sats") is not None else ""
    text.append(f"ask {p['ask_id'][:12]}  ", style="bold")
    text.append(f"round {p['depth']}  spent {p['spent_sats']}{budget} sats\n")
    for depth in sorted({n["depth"] for n in nodes}):
        counts = Counter(n["status"] for n in nodes if n["depth"] == depth)
        parts = "  ".join(f"{STATE_MARK.get(s, '·')}{c} {s}" for s, c in sorted(counts.items()))
        text.append(f"  depth {depth}: {sum(counts.values())} sub-calls  {parts}\n")
    for n in [n for n in nodes if n["status"] in ("assigned", "processing", "pending")][:8]:
        text.append(
            f"    {STATE_MARK.get(n['status'], '·')} {n['path']} [{', '.join(n['focus'][:3])}]\n", style="dim"
        )
    return text


def run_ask(req: rpc.AskReq, *, show_progress: bool, socket: Path | None = None) -> dict[str, Any]:
    sock = socket or buyer_socket()
    if not show_progress:
        return call(sock, req, timeout=None)
    with Live(Text("asking…"), console=stderr, transient=False, refresh_per_second=4) as live:
        res = call(sock, req, timeout=None, on_progress=lambda p: live.update(render_progress(p)))
    return res


@cli.command("ask")
@click.argument("run_or_dir")
@click.argument("question", nargs=-1, required=True)
@click.option("--fanout", type=int, default=8, show_default=True, help="sub-queries per round at most")
@click.option("--depth", type=int, default=2, show_default=True, help="rounds of follow-ups after the first")
@click.option("--budget-sats", type=int, default=None, help="the most the whole ask may cost (sats)")
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), default=None, help="where to write answer.md"
)
@json_option
def ask_cmd(
    run_or_dir: str,
    question: tuple[str, ...],
    fanout: int,
    depth: int,
    budget_sats: int | None,
    out_dir: Path | None,
    as_json: bool,
) -> None:
    """Ask a question of a mapped repo; the swarm answers it in sub-queries over the map."""
    q = " ".join(question).strip()
    if not q:
        fail('usage: pylon ask RUN_OR_DIR "question"')
    if fanout < 1 or depth < 0 or (budget_sats is not None and budget_sats < 0):
        fail("--fanout must be at least 1, --depth and --budget-sats not negative")
    p = Path(run_or_dir).expanduser()
    target = str(p.resolve()) if p.exists() else run_or_dir  # a run id is looked up by the buyer
    req = rpc.AskReq(
        run_or_dir=target,
        question=q,
        fanout=fanout,
        depth=depth,
        budget_sats=budget_sats,
        out_dir=str(out_dir.expanduser().resolve()) if out_dir else None,
    )
    res = run_ask(req, show_progress=not as_json)
    if as_json:
        emit_json(res)
        return
    budget = f" of {res['budget_sats']}" if res.get("budget_sats") is not None else ""
    stdout.print(
        f"ask [bold]{res['ask_id'][:16]}[/] answered by [bold]{res['mode']}[/]: {res['completed']}/"
        f"{res['sub_calls']} sub-calls in {res['rounds']} round(s), {res['claims']} cited claims, "
        f"{res['spent_sats']}{budget} sats, {res['wall_s']:.2f}s"
        + (f"; stopped by {', '.join(res['stopped_by'])}" if res.get("stopped_by") else "")
    )
    for name, path in res["artifacts"].items():
        stdout.print(f"  {name:<7} {path}")
