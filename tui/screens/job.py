"""One buyer job, drilled into: its telemetry and its provenance trail
(request → feedback → result → payment → receipt, each link verified or not)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pylon.schemas import rpc
from pylon.tui.fmt import clock_time, sats, secs, state_text
from pylon.tui.model import short
from pylon.tui.screens.kill import send_control
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from pylon.rpc.client import RpcError

if TYPE_CHECKING:
    from pylon.tui.app import PylonApp

ROLES = ("request", "feedback", "result", "payment", "receipt")


class JobScreen(Screen[None]):
    HELP_TITLE = "job"
    KILL_ACTIONS = frozenset({"cancel_job"})
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "reload", "Reload"),
        Binding("ctrl+k", "cancel_job", "Cancel job"),
        Binding("question_mark", "help", "Help"),
    ]
    ACTION_HELP = {
        "cancel_job": "cancel this job if it is still outstanding (asks first)",
        "reload": "fetch the telemetry and the trail again",
    }

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.telemetry: dict[str, Any] | None = None
        self.trail: dict[str, Any] | None = None
        self.trail_error: str | None = None

    @property
    def papp(self) -> PylonApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text.assemble(("job ", "dim"), (self.job_id, "bold")), id="job-title")
        with Horizontal(id="job-body"):
            yield Static("loading telemetry…", id="job-telemetry")
            with Vertical(id="job-trail"):
                yield Static("loading the provenance trail…", id="trail-status")
                yield DataTable(id="trail-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#trail-table", DataTable)
        for key, label, width in (
            ("role", "role", 9),
            ("kind", "kind", 5),
            ("id", "event", 14),
            ("author", "author", 14),
            ("at", "at", 9),
            ("valid", "valid", 9),
        ):
            table.add_column(label, key=key, width=width)
        self.run_worker(self.load(), exclusive=True, group="job-load")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.KILL_ACTIONS and self.papp.read_only:
            return False
        return True

    async def load(self) -> None:
        link = self.papp.link
        try:
            self.telemetry = await link.call(rpc.JobStatusReq(job_id=self.job_id))
        except RpcError as exc:
            self.query_one("#job-telemetry", Static).update(
                Text(f"telemetry unavailable: {exc.message}", "red")
            )
        else:
            self.show_telemetry()
        try:
            self.trail = await link.call(rpc.TrailReq(job_id=self.job_id), timeout=20)
            self.trail_error = None
        except RpcError as exc:
            self.trail, self.trail_error = None, exc.message
        self.show_trail()

    def name_of(self, pubkey: str | None) -> str:
        if not pubkey:
            return "-"
        m = self.papp.buyer_model
        if m.status and pubkey == m.status.get("pubkey"):
            return "buyer (us)"
        return m.node_name(pubkey)

    def show_telemetry(self) -> None:
        t = self.telemetry or {}
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", justify="right")
        grid.add_column()
        grid.add_row("state", state_text(t.get("state"), mark=True))
        grid.add_row("path", Text(f"{t.get('path', '')}  ({t.get('language') or '?'})"))
        grid.add_row("run", Text(str(t.get("run_id") or "-")))
        prov = t.get("provider_pubkey")
        grid.add_row("provider", Text(f"{self.name_of(prov)}  {short(prov, 16)}"))
        grid.add_row("attempts", str(t.get("attempts", 0)))
        if t.get("error"):
            grid.add_row("error", Text(str(t["error"]), style="bold red"))
        grid.add_row("", "")
        for key in ("submitted", "picked_up", "started", "finished", "published", "received", "paid"):
            grid.add_row(key.replace("_", " "), clock_time(t.get(key)))
        grid.add_row("", "")
        grid.add_row("queue wait", secs(t.get("queue_wait")))
        grid.add_row("exec", secs(t.get("exec_time")))
        grid.add_row("publish", secs(t.get("publish_time")))
        grid.add_row("end to end", Text(secs(t.get("end_to_end")), style="bold"))
        grid.add_row("bytes", f"{t.get('bytes_in', 0):,} in / {t.get('bytes_out', 0):,} out")
        grid.add_row("result", short(t.get("result_id"), 16))
        grid.add_row("paid", f"{'yes' if t.get('is_paid') else 'no'}  {sats(t.get('amount_msats'))}")
        self.query_one("#job-telemetry", Static).update(grid)

    def show_trail(self) -> None:
        status = self.query_one("#trail-status", Static)
        table = self.query_one("#trail-table", DataTable)
        table.clear()
        if self.trail is None:
            status.update(
                Text.assemble(
                    ("provenance trail unavailable: ", "bold yellow"),
                    (self.trail_error or "no answer", "yellow"),
                )
            )
            return
        chain = self.trail.get("chain") or []
        verified = bool(self.trail.get("verified"))
        status.update(
            Text.assemble(
                ("provenance trail  ", "bold"),
                (
                    "✔ verified: every link present and valid" if verified else "✖ not verified",
                    "bold green" if verified else "bold red",
                ),
            )
        )
        present = set()
        for i, link in enumerate(chain):
            present.add(link.get("role"))
            valid = bool(link.get("valid"))
            table.add_row(
                Text(str(link.get("role", "?"))),
                str(link.get("kind", "")),
                Text(short(link.get("id"), 12)),
                Text(self.name_of(link.get("pubkey"))),
                clock_time(link.get("created_at")),
                Text("✔ valid" if valid else "✖ INVALID", style="green" if valid else "bold red"),
                key=f"{i}",
            )
        answered = any(link.get("role") == "result" and link.get("on_path") for link in chain)
        for role in ROLES:
            if role not in present:
                # A node acknowledges only a job it has not answered within half a second: the
                # result on the path stands for the pickup.
                if role == "feedback" and answered:
                    note = Text("in the result", style="dim")
                else:
                    note = Text("missing", style="dim yellow")
                table.add_row(role, "", "", "", "", note, key=f"missing-{role}")

    def action_reload(self) -> None:
        self.run_worker(self.load(), exclusive=True, group="job-load")

    def action_help(self) -> None:
        from pylon.tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen(self))

    def action_cancel_job(self) -> None:
        send_control(
            self,
            rpc.CancelReq(job_id=self.job_id),
            confirm=(f"Cancel job {short(self.job_id, 12)}?", "Its result will not be accepted or paid."),
            done=lambda r: f"job {short(self.job_id, 12)} cancelled",
            after=lambda r: self.load(),
        )
