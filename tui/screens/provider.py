"""One provider as the buyer sees it: its stats, failure reasons and the jobs it ran for us."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pylon.schemas import rpc
from pylon.tui.fmt import sats, secs, uptime
from pylon.tui.model import Changes
from pylon.tui.screens.kill import ban_provider
from pylon.tui.widgets.jobs_table import JobsTable
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from pylon.rpc.client import RpcError

if TYPE_CHECKING:
    from pylon.tui.app import PylonApp


class ProviderScreen(Screen[None]):
    HELP_TITLE = "provider"
    KILL_ACTIONS = frozenset({"ban"})
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("b", "ban", "Ban/unban"),
        Binding("r", "reload", "Reload"),
        Binding("question_mark", "help", "Help"),
    ]
    ACTION_HELP = {"ban": "ban or unban this provider (asks first)", "reload": "fetch its stats again"}

    def __init__(self, pubkey: str) -> None:
        super().__init__()
        self.pubkey = pubkey
        self.stats: dict[str, Any] | None = None

    @property
    def papp(self) -> PylonApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.title_text(), id="provider-title")
        yield Static("loading stats…", id="provider-stats")
        yield JobsTable(self.papp.buyer_model.node_name, id="provider-jobs")
        yield Footer()

    def title_text(self) -> Text:
        m = self.papp.buyer_model
        node = m.nodes.get(self.pubkey, {})
        t = Text.assemble(("provider ", "dim"), (m.node_name(self.pubkey), "bold"), f"  {self.pubkey}")
        if node.get("banned"):
            t.append("  BANNED", style="bold reverse red")
        return t

    def on_mount(self) -> None:
        self.show_jobs()
        self.run_worker(self.load(), exclusive=True, group="provider-load")
        self.set_interval(self.papp.flush_s * 4, self.refresh_title)

    def refresh_title(self) -> None:
        self.query_one("#provider-title", Static).update(self.title_text())

    def show_jobs(self) -> None:
        m = self.papp.buyer_model
        mine = {k: j for k, j in m.jobs.items() if j.get("provider_pubkey") == self.pubkey}
        self.query_one(JobsTable).sync(mine, Changes(all=True))

    async def load(self) -> None:
        try:
            self.stats = await self.papp.link.call(rpc.StatsReq(provider=self.pubkey))
        except RpcError as exc:
            self.query_one("#provider-stats", Static).update(Text(f"stats unavailable: {exc.message}", "red"))
            return
        self.show_stats()

    def show_stats(self) -> None:
        s = self.stats or {}
        grid = Table.grid(padding=(0, 3))
        for _ in range(6):
            grid.add_column()
        grid.add_row(
            Text(
                "online" if s.get("online") else "offline",
                style="bold green" if s.get("online") else "bold red",
            ),
            f"uptime {uptime(s.get('uptime_s'))}",
            Text(f"{s.get('completed', 0)} completed", style="green"),
            Text(f"{s.get('failed', 0)} failed", style="red" if s.get("failed") else ""),
            f"median run {secs(s.get('median_runtime_s'))}, e2e {secs(s.get('median_e2e_s'))}",
            f"earned {sats(s.get('earned_msats'))}",
        )
        reasons = s.get("failure_reasons") or {}
        if reasons:
            grid.add_row(
                Text("failures: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())), "red"),
                "",
                "",
                "",
                "",
                "",
            )
        self.query_one("#provider-stats", Static).update(grid)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.KILL_ACTIONS and self.papp.read_only:
            return False
        return True

    def action_ban(self) -> None:
        ban_provider(self, self.papp.buyer_model, self.pubkey)

    def action_reload(self) -> None:
        self.show_jobs()
        self.run_worker(self.load(), exclusive=True, group="provider-load")

    def action_help(self) -> None:
        from pylon.tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen(self))
