"""A node's own panel: state, executor and model, counters, earnings, failures by reason."""

from __future__ import annotations

from typing import Any

from pylon.tui.fmt import STATE_STYLE, sats, uptime
from pylon.tui.model import NodeModel
from rich.table import Table
from rich.text import Text
from textual.widgets import Static


class NodeSummary(Static):
    def show(self, m: NodeModel) -> None:
        st = m.status
        if st is None:
            self.update("waiting for the node's status…")
            return
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", justify="right")
        grid.add_column()
        state = str(st.get("state"))
        grid.add_row("state", Text(f" {state.upper()} ", style=f"bold reverse {STATE_STYLE.get(state, '')}"))
        grid.add_row("node", Text.assemble((str(st.get("name", "")), "bold"), f"  {st.get('pubkey', '')}"))
        models = ", ".join(st.get("models") or []) or "none"
        grid.add_row("executor", Text(f"{st.get('executor')}   models: {models}"))
        grid.add_row(
            "slots",
            f"{st.get('running', 0)} running / {st.get('max_concurrency', 1)} max, "
            f"{st.get('queued', 0)} queued",
        )
        grid.add_row(
            "jobs",
            Text.assemble(
                (f"{st.get('completed', 0)} completed", "green"),
                "  ",
                (f"{st.get('failed', 0)} failed", "red" if st.get("failed") else ""),
            ),
        )
        grid.add_row("uptime", uptime(st.get("uptime_s")))
        earned = Text(sats(st.get("earned_msats")), style="bold")
        if m.wallet is not None:
            earned.append(f"   wallet {m.wallet.get('balance_sats', 0):,} sat at {m.wallet.get('mint', '?')}")
        elif m.wallet_note:
            earned.append(f"   {m.wallet_note}", style="dim")
        grid.add_row("earned", earned)
        self.update(grid, layout=False)  # fixed height: a heartbeat's new figures need no layout pass


class Failures(Static):
    _last: tuple[Any, ...] | None = None

    def show(self, m: NodeModel) -> None:
        st: dict[str, Any] = m.status or {}
        key = (
            tuple(sorted((st.get("failures") or {}).items())),
            tuple(sorted((st.get("dropped") or {}).items())),
        )
        if key == self._last:
            return  # unchanged: skip the redraw (most heartbeats)
        self._last = key
        table = Table(title="failures by reason", expand=True, title_style="bold", show_edge=False)
        table.add_column("reason")
        table.add_column("jobs", justify="right")
        failures = st.get("failures") or {}
        for reason, n in sorted(failures.items(), key=lambda kv: (-kv[1], kv[0])):
            table.add_row(Text(str(reason), style="red"), str(n))
        if not failures:
            table.add_row(Text("none", style="dim"), "")
        dropped = st.get("dropped") or {}
        if dropped:
            table.add_section()
            for reason, n in sorted(dropped.items()):
                table.add_row(Text(f"dropped: {reason}", style="dim"), str(n))
        self.update(table)
