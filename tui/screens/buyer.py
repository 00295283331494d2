"""Attached to the buyer: the swarm, its nodes, the runs as trees, every job, and the log."""

from __future__ import annotations

from pylon.schemas import rpc
from pylon.tui.model import BuyerModel, Changes, short
from pylon.tui.screens.base import MainScreen
from pylon.tui.screens.kill import ban_provider
from pylon.tui.widgets.ask_tree import AskTree
from pylon.tui.widgets.conn_bar import ConnBar
from pylon.tui.widgets.filter_bar import FilterBar
from pylon.tui.widgets.jobs_table import JobsTable
from pylon.tui.widgets.log_pane import LogPane
from pylon.tui.widgets.nodes_table import NodesTable
from pylon.tui.widgets.runs_tree import RunsTree
from pylon.tui.widgets.swarm_stats import SwarmStats
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Input, TabbedContent, TabPane

TABS = ("swarm", "nodes", "runs", "jobs", "log")
AGE_REFRESH_TICKS = 4  # "last heartbeat 3s ago" ticks on even when nothing else changes


def _merge(into: Changes, more: Changes) -> None:
    into.keys |= more.keys
    into.removed |= more.removed
    into.all = into.all or more.all


class BuyerScreen(MainScreen):
    HELP_TITLE = "buyer"
    KILL_ACTIONS = frozenset({"cancel_selected", "stop_all", "ban"})
    BINDINGS = [
        Binding("ctrl+k", "cancel_selected", "Cancel"),
        Binding("S", "stop_all", "Stop all"),
        Binding("b", "ban", "Ban/unban"),
        Binding("1", "tab('swarm')", "Swarm", show=False),
        Binding("2", "tab('nodes')", "Nodes", show=False),
        Binding("3", "tab('runs')", "Runs", show=False),
        Binding("4", "tab('jobs')", "Jobs", show=False),
        Binding("5", "tab('log')", "Log", show=False),
        *MainScreen.COMMON_BINDINGS,
    ]
    ACTION_HELP = {
        "cancel_selected": "cancel the selected run or job (Runs, Jobs tabs; asks first)",
        "stop_all": "stop everything: cancel every outstanding job and stop paying (asks first)",
        "ban": "ban or unban the selected provider (Nodes tab; asks first)",
        "tab": "show a tab: 1 swarm, 2 nodes, 3 runs, 4 jobs, 5 log",
        "filter": "filter the nodes, runs, jobs or log in view",
        "help": "this help",
        "back": "clear the filter",
        "app.quit": "quit (the daemon keeps running)",
    }

    def __init__(self) -> None:
        super().__init__()
        self._tick = 0
        self._filters: dict[str, str] = {}
        # Changes wait here until their tab is shown: a hidden 2,000-row table costs nothing.
        self._pending: dict[str, Changes] = {
            "nodes": Changes(all=True),
            "jobs": Changes(all=True),
            "runs": Changes(all=True),
            "asks": Changes(all=True),
            "run_jobs": Changes(all=True),
        }

    @property
    def model(self) -> BuyerModel:
        return self.papp.buyer_model

    def compose(self) -> ComposeResult:
        clock = self.papp.clock
        yield Header()
        yield ConnBar(clock, read_only=self.papp.read_only, id="conn")
        with TabbedContent(initial="swarm", id="tabs"):
            with TabPane("Swarm [1]", id="swarm"):
                yield SwarmStats(self.model, id="swarm-stats")
            with TabPane("Nodes [2]", id="nodes"):
                yield NodesTable(clock, id="nodes-table")
            with TabPane("Runs [3]", id="runs"):
                yield RunsTree(self.model, id="runs-tree")
                # The asks (`pylon ask`) beside the runs; out of the way until there is one.
                yield AskTree(self.model.node_name, id="ask-tree")
            with TabPane("Jobs [4]", id="jobs"):
                yield JobsTable(self.model.node_name, id="jobs-table")
            with TabPane("Log [5]", id="log"):
                yield LogPane(id="log-pane")
        yield FilterBar(id="filter")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(FilterBar).display = False
        self.query_one(AskTree).display = False
        self.query_one(SwarmStats).show_rate()

    # --- refresh ----------------------------------------------------------------------------------

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active or "swarm"

    def flush(self) -> None:
        m = self.model
        self._tick += 1
        swarm = self.query_one(SwarmStats)
        if m.status_changed or m.stats_changed:
            m.status_changed = m.stats_changed = False
            swarm.show()
            self.conn_bar.set_extra("BUYER STOPPED" if (m.status or {}).get("stopped") else "")
        if m.roll_rate() or self._tick == 1:
            swarm.show_rate()
        _merge(self._pending["nodes"], m.node_changes.take())
        if self._tick % AGE_REFRESH_TICKS == 0:
            self._pending["nodes"].keys |= m.nodes
        jobs = m.job_changes.take()
        _merge(self._pending["jobs"], jobs)
        runs = m.run_changes.take()
        if runs:
            swarm.show_runs()
        _merge(self._pending["runs"], runs)
        _merge(self._pending["run_jobs"], jobs)
        _merge(self._pending["asks"], m.ask_changes.take())
        lines = m.take_log()
        if lines:
            self.query_one("#log-pane", LogPane).add_lines(lines)
            self.query_one("#swarm-log", LogPane).add_lines(lines)
        self._sync_visible()

    def _sync_visible(self) -> None:
        tab = self.active_tab
        m = self.model
        if tab == "nodes" and self._pending["nodes"]:
            self.query_one(NodesTable).sync(m.nodes, self._pending["nodes"].take())
        elif tab == "jobs" and self._pending["jobs"]:
            self.query_one(JobsTable).sync(m.jobs, self._pending["jobs"].take())
        elif tab == "runs" and (self._pending["runs"] or self._pending["run_jobs"]):
            self.query_one(RunsTree).sync(self._pending["runs"].take(), self._pending["run_jobs"].take())
        if tab == "runs" and self._pending["asks"]:
            changed = self._pending["asks"].take()
            asks = self.query_one(AskTree)
            asks.sync(m.asks, list(m.asks) if changed.all else changed.keys)
            asks.display = bool(m.asks)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self._sync_visible()
        self.refresh_bindings()
        # Each tab keeps its own filter: show the one of the tab we came to.
        bar = self.query_one(FilterBar)
        text = self._filters.get(self.active_tab, "")
        if bar.value != text:
            with bar.prevent(Input.Changed):
                bar.value = text
        bar.display = bool(text) or bar.has_focus
        if not bar.has_focus:
            self.focus_main()

    def focus_main(self) -> None:
        widget = {
            "nodes": "#nodes-table",
            "runs": "#runs-tree",
            "jobs": "#jobs-table",
            "log": "#log-pane",
        }.get(self.active_tab)
        if widget is not None:
            self.query_one(widget).focus()

    def action_tab(self, tab: str) -> None:
        if tab in TABS:
            self.query_one(TabbedContent).active = tab

    def action_filter(self) -> None:
        if self.active_tab == "swarm":  # the overview has nothing to narrow: filter the nodes
            self.query_one(TabbedContent).active = "nodes"
        super().action_filter()

    def apply_filter(self, text: str) -> None:
        tab, m = self.active_tab, self.model
        self._filters[tab] = text
        if tab == "nodes":
            self.query_one(NodesTable).set_filter(text, m.nodes)
        elif tab == "jobs":
            self.query_one(JobsTable).set_filter(text, m.jobs)
        elif tab == "runs":
            self.query_one(RunsTree).set_filter(text)
        elif tab == "log":
            self.query_one("#log-pane", LogPane).set_filter(text)

    # --- kill switches --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = super().check_action(action, parameters)
        if not allowed:
            return allowed
        if action == "cancel_selected":
            return self.active_tab in ("runs", "jobs")
        if action == "ban":
            return self.active_tab == "nodes"
        return True

    def selected_target(self) -> tuple[str, str] | None:
        """("run", id) or ("job", id) under the cursor in the pane in view."""
        tab = self.active_tab
        if tab == "jobs":
            key = self.query_one(JobsTable).selected_key()
            return ("job", key) if key else None
        if tab == "runs":
            data = self.query_one(RunsTree).selected()
            if data is None:
                return None
            return ("run", data[1]) if data[0] in ("run", "dir") else data
        return None

    def action_cancel_selected(self) -> None:
        target = self.selected_target()
        if target is None:
            self.notify("select a run or a job first (Runs or Jobs tab)", severity="warning")
            return
        kind, ident = target
        m = self.model
        if kind == "run":
            run = m.runs.get(ident, {})
            counts = m.run_counts(ident)
            open_jobs = sum(n for s, n in counts.items() if s not in ("completed", "failed", "cancelled"))
            self.kill(
                rpc.CancelReq(run_id=ident),
                confirm=(
                    f"Cancel run {short(ident, 12)}?",
                    f"{run.get('repo') or ''}\n{open_jobs} outstanding subtasks will be cancelled; "
                    "finished results are kept.",
                ),
                done=lambda r: f"run {short(ident, 12)}: {r.get('cancelled', 0)} jobs cancelled",
            )
        else:
            job = m.jobs.get(ident, {})
            self.kill(
                rpc.CancelReq(job_id=ident),
                confirm=(
                    f"Cancel job {short(ident, 12)}?",
                    f"{job.get('path') or ''} ({job.get('state', '?')} on "
                    f"{m.node_name(job.get('provider_pubkey'))})\nIts result will not be accepted or paid.",
                ),
                done=lambda r: f"job {short(ident, 12)} cancelled",
            )

    def action_stop_all(self) -> None:
        outstanding = (self.model.status or {}).get("outstanding", "?")
        self.kill(
            rpc.StopAllReq(),
            confirm=(
                "STOP EVERYTHING?",
                f"Cancels all {outstanding} outstanding jobs and stops paying.\n"
                "The buyer takes no new jobs until it is restarted.",
            ),
            done=lambda r: f"stopped: {r.get('cancelled', 0)} jobs cancelled, payments off",
        )

    def action_ban(self) -> None:
        pk = self.query_one(NodesTable).selected_key() if self.active_tab == "nodes" else None
        if pk is None:
            self.notify("select a provider in the Nodes tab first", severity="warning")
            return
        ban_provider(self, self.model, pk)
