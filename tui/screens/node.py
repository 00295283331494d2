"""Attached to one provider node: its state, queue and running jobs, recent jobs, failures, earnings."""

from __future__ import annotations

from pylon.schemas import rpc
from pylon.tui.model import NodeModel, short
from pylon.tui.screens.base import MainScreen
from pylon.tui.screens.detail import DetailScreen
from pylon.tui.widgets.conn_bar import ConnBar
from pylon.tui.widgets.filter_bar import FilterBar
from pylon.tui.widgets.live_table import LiveTable
from pylon.tui.widgets.log_pane import LogPane
from pylon.tui.widgets.node_jobs_table import ActiveJobsTable, NodeJobsTable
from pylon.tui.widgets.node_summary import Failures, NodeSummary
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Header, Static


class NodeScreen(MainScreen):
    HELP_TITLE = "node"
    KILL_ACTIONS = frozenset({"pause_resume", "drain", "abort"})
    BINDINGS = [
        Binding("p", "pause_resume", "Pause/resume"),
        Binding("d", "drain", "Drain"),
        Binding("ctrl+k", "abort", "Abort job"),
        *MainScreen.COMMON_BINDINGS,
    ]
    ACTION_HELP = {
        "pause_resume": "pause the node (take no new jobs; running ones finish) or resume it",
        "drain": "drain: finish what is queued and running, take nothing new (p resumes)",
        "abort": "abort the selected queued or running job (asks first)",
        "filter": "filter the node's jobs and log",
        "help": "this help",
        "back": "clear the filter",
        "app.quit": "quit (the node keeps running)",
    }

    @property
    def model(self) -> NodeModel:
        return self.papp.node_model

    @property
    def recent(self) -> NodeJobsTable:
        return self.query_one("#recent-jobs", NodeJobsTable)

    def compose(self) -> ComposeResult:
        yield Header()
        yield ConnBar(self.papp.clock, read_only=self.papp.read_only, id="conn")
        with Horizontal(id="node-top"):
            yield NodeSummary("waiting for the node's status…", id="node-summary")
            yield Failures("", id="node-failures")
        yield Static("active jobs: queued and running (ctrl+k aborts the selected one)", classes="caption")
        yield ActiveJobsTable(id="active-jobs")
        yield Static("recent jobs", classes="caption")
        yield NodeJobsTable(id="recent-jobs")
        yield LogPane(id="node-log")
        yield FilterBar(id="filter")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(FilterBar).display = False
        self.query_one(ActiveJobsTable).focus()

    def flush(self) -> None:
        m = self.model
        if m.status_changed:
            m.status_changed = False
            self.query_one(NodeSummary).show(m)
            self.query_one(Failures).show(m)
            self.refresh_bindings()
        changes = m.job_changes.take()
        if changes:
            self.query_one(ActiveJobsTable).sync(m.jobs, changes)
            self.recent.sync(m.jobs, changes)
        lines = m.take_log()
        if lines:
            self.query_one(LogPane).add_lines(lines)

    def apply_filter(self, text: str) -> None:
        m = self.model
        self.query_one(ActiveJobsTable).set_filter(text, m.jobs)
        self.recent.set_filter(text, m.jobs)
        self.query_one(LogPane).set_filter(text)

    def focus_main(self) -> None:
        self.query_one(ActiveJobsTable).focus()

    # --- drill down -----------------------------------------------------------------------------

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        job = self.model.jobs.get(event.key)
        if job is not None:
            self.app.push_screen(DetailScreen(f"job {job['job_id']}", job))

    # --- kill switches --------------------------------------------------------------------------

    @property
    def node_state(self) -> str:
        return str((self.model.status or {}).get("state", "unknown"))

    def action_pause_resume(self) -> None:
        if self.node_state == "online":
            self.kill(rpc.PauseReq(), done=self._state_note)
        else:
            self.kill(rpc.ResumeReq(), done=self._state_note)

    def action_drain(self) -> None:
        if self.node_state == "draining":
            self.notify("already draining (p resumes)")
            return
        self.kill(rpc.DrainReq(), done=self._state_note)

    def _state_note(self, status: dict[str, object]) -> str:
        self.model.set_status(status)  # the reply is the new status: show it without waiting for a push
        return f"node {status.get('name')} is {status.get('state')}"

    def selected_job(self) -> str | None:
        focused = self.focused
        table = focused if isinstance(focused, NodeJobsTable) else self.query_one(ActiveJobsTable)
        key = table.selected_key()
        if key is None:
            return None
        job = self.model.jobs.get(key)
        return key if job is not None and job.get("state") in ("queued", "running") else None

    def action_abort(self) -> None:
        jid = self.selected_job()
        if jid is None:
            self.notify("select a queued or running job first", severity="warning")
            return
        job = self.model.jobs[jid]
        self.kill(
            rpc.AbortJobReq(job_id=jid),
            confirm=(
                f"Abort job {short(jid, 12)}?",
                f"{job.get('path')} ({job.get('state')}, from buyer {short(job.get('buyer'))})\n"
                "The buyer is told it was cancelled; the work done so far is lost.",
            ),
            done=lambda r: f"job {short(jid, 12)} aborted",
        )
