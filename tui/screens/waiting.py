"""Before the first welcome from a socket of unknown kind (`--socket PATH`): say what we wait for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pylon.tui.messages import LinkChanged
from pylon.tui.widgets.conn_bar import ConnBar
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

if TYPE_CHECKING:
    from pylon.tui.app import PylonApp


class WaitingScreen(Screen[None]):
    BINDINGS = [Binding("q", "app.quit", "Quit")]

    def compose(self) -> ComposeResult:
        app: PylonApp = self.app  # type: ignore[assignment]
        yield Header()
        yield ConnBar(app.clock, read_only=app.read_only, id="conn")
        yield Static(Text(f"waiting for a pylon daemon to answer on {app.link.source.label} …"), id="waiting")
        yield Footer()

    def on_link_changed(self, message: LinkChanged) -> None:
        self.query_one(ConnBar).show(message.state)
