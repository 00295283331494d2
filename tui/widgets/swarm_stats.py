"""The swarm at a glance: figures, a jobs/min sparkline, and the top providers."""

from __future__ import annotations

from typing import Any

from pylon.tui.fmt import pct, secs
from pylon.tui.model import RATE_BUCKET_S, RATE_BUCKETS, BuyerModel, short
from pylon.tui.widgets.log_pane import LogPane
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static


class Figures(Static):
    """Big numbers: online nodes, outstanding, completed, failed, success rate, latency, rate,
    and what the scheduler did about the swarm (re-issues, backups, moves, slots declined)."""

    _last: tuple[str, ...] | None = None

    def show(self, m: BuyerModel) -> None:
        st, stats = m.status or {}, m.stats or {}
        online = st.get("online_nodes", m.online_count())
        failed = stats.get("jobs_failed", st.get("failed"))
        values = (
            f"{online} / {len(m.nodes)}",
            str(st.get("outstanding", "-")),
            str(stats.get("jobs_completed", st.get("completed", "-"))),
            str("-" if failed is None else failed),
            pct(m.success_rate()),
            secs(stats.get("p50_e2e_s")),
            secs(stats.get("p95_e2e_s")),
            f"{stats.get('jobs_per_min', 0.0):.1f}" if stats else "-",
            *_scheduler_values(st),
        )
        if values == self._last:
            return  # the same figures: skip the redraw
        self._last = values
        styles = (
            "bold green" if online else "bold red",
            "bold cyan",
            "bold green",
            "bold red" if failed else "bold",
            "bold",
            "bold",
            "bold",
            "bold cyan",
            "bold yellow" if values[8] not in ("0", "-") else "bold",
            "bold",
            "bold",
            "bold",
        )
        labels = (
            "online nodes",
            "outstanding",
            "completed",
            "failed",
            "success rate",
            "p50 end-to-end",
            "p95 end-to-end",
            "jobs/min",
            "re-issued",
            "backups won/sent",
            "moved sooner",
            "slots declined",
        )
        figs = [
            Text.assemble((f"{label}\n", "dim"), (value, style))
            for label, value, style in zip(labels, values, styles, strict=True)
        ]
        grid = Table.grid(padding=(0, 3))
        for _ in range(4):
            grid.add_column(justify="left")
        grid.add_row(*figs[:4])
        grid.add_row(Text(""), Text(""), Text(""), Text(""))
        grid.add_row(*figs[4:8])
        grid.add_row(Text(""), Text(""), Text(""), Text(""))
        grid.add_row(*figs[8:])
        self.update(grid, layout=False)  # a fixed-height panel: new figures need no layout pass


def _scheduler_values(st: dict[str, Any]) -> tuple[str, str, str, str]:
    """Re-issued attempts, straggler copies that won / were sent, queued jobs moved to a node
    that finishes them sooner, free slots left for a sooner one; '-' from a buyer too old to say."""
    if "reissued" not in st:
        return ("-", "-", "-", "-")
    backups = st.get("backups") or {}
    return (
        str(sum((st.get("reissued") or {}).values())),
        f"{backups.get('won', 0)}/{backups.get('sent', 0)}",
        str(backups.get("moved", 0)),
        str(st.get("slots_declined", 0)),
    )


class RateSpark(Vertical):
    def compose(self) -> ComposeResult:
        minutes = RATE_BUCKETS * RATE_BUCKET_S / 60
        yield Static(f"jobs/min, last {minutes:g} min (one bar = {RATE_BUCKET_S:g}s)", classes="caption")
        yield Sparkline([0.0] * RATE_BUCKETS, summary_function=max, id="rate-spark")
        yield Static("", id="rate-now", classes="caption")

    def show(self, history: list[float]) -> None:
        self.query_one(Sparkline).data = history
        peak = max(history) if history else 0.0
        self.query_one("#rate-now", Static).update(
            f"now {history[-1]:.0f}/min · peak {peak:.0f}/min", layout=False
        )


class TopProviders(Static):
    """The five busiest providers (a fixed-height panel: redrawn without a layout pass)."""

    _last: list[tuple[str, str, str]] | None = None

    def show(self, m: BuyerModel) -> None:
        rows = [
            (p.get("name") or m.node_name(p["pubkey"]), short(p["pubkey"]), str(p["completed"]))
            for p in (m.stats or {}).get("top_providers", [])[:5]
        ]
        if rows == self._last:
            return
        self._last = rows
        table = Table(title="top providers", title_style="bold", expand=True, show_edge=False)
        table.add_column("provider", ratio=2, no_wrap=True, overflow="ellipsis")
        table.add_column("pubkey", width=8)
        table.add_column("completed", justify="right", width=9)
        for name, pubkey, completed in rows:
            table.add_row(Text(name), pubkey, completed)
        self.update(table, layout=False)


class RunsSummary(Static):
    """The latest runs, one line each, with a progress bar."""

    _last: list[tuple[Any, ...]] | None = None

    def show(self, m: BuyerModel) -> None:
        runs = sorted(m.runs.values(), key=lambda r: r.get("started") or 0)[-6:]
        key = [
            (
                r["run_id"],
                r.get("repo"),
                r.get("files"),
                r.get("completed"),
                r.get("failed"),
                r.get("finished"),
            )
            for r in runs
        ]
        if key == self._last:
            return
        self._last = key
        table = Table(title="runs", title_style="bold", expand=True, show_edge=False)
        table.add_column("run", width=14)
        table.add_column("repo", ratio=2, overflow="ellipsis", no_wrap=True)
        table.add_column("progress", ratio=1)
        table.add_column("done", justify="right", width=9)
        table.add_column("failed", justify="right", width=6)
        for r in reversed(runs):
            files = int(r.get("files") or 0)
            done = int(r.get("completed") or 0) + int(r.get("failed") or 0)
            finished = r.get("finished") is not None
            bar = ProgressBar(
                total=max(files, 1),
                completed=done,
                width=None,
                complete_style="green" if finished else "cyan",
            )
            table.add_row(
                short(r["run_id"], 12),
                Text(str(r.get("repo") or "")),
                bar,
                f"{done}/{files}",
                Text(str(r.get("failed") or 0), style="red" if r.get("failed") else "dim"),
            )
        if not runs:
            table.add_row("", Text("no runs yet: pylon map REPO", style="dim"), "", "", "")
        self.update(table, layout=False)


class SwarmStats(Vertical):
    def __init__(self, model: BuyerModel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    def compose(self) -> ComposeResult:
        with Horizontal(id="swarm-top"):
            yield Figures(id="figures")
            yield TopProviders(id="top-providers")
        yield RateSpark(id="rate")
        with Horizontal(id="swarm-bottom"):
            yield RunsSummary(id="runs-summary")
            yield LogPane(id="swarm-log")

    def show(self) -> None:
        self.query_one(Figures).show(self.model)
        self.query_one(TopProviders).show(self.model)

    def show_runs(self) -> None:
        self.query_one(RunsSummary).show(self.model)

    def show_rate(self) -> None:
        self.query_one(RateSpark).show(list(self.model.rate_history))
