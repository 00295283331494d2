"""What the buyer and node screens share: status line, refresh tick, `/`, `?`, kill-switch plumbing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pylon.schemas import rpc
from pylon.tui.link import LinkState
from pylon.tui.messages import LinkChanged
from pylon.tui.screens.help import HelpScreen
from pylon.tui.screens.kill import send_control
from pylon.tui.widgets.conn_bar import ConnBar
from pylon.tui.widgets.filter_bar import FilterBar
from textual.binding import Binding
from textual.screen import Screen

if TYPE_CHECKING:
    from pylon.tui.app import PylonApp

PaletteEntry = tuple[str, str, Callable[[], Any]]


class MainScreen(Screen[None]):
    """A screen attached to a daemon. Subclasses compose their panes and implement `flush`."""

    KILL_ACTIONS: frozenset[str] = frozenset()
    ACTION_HELP: dict[str, str] = {}
    HELP_TITLE = ""
    COMMON_BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("question_mark", "help", "Help"),
        Binding("escape", "back", "Back / clear filter", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    @property
    def papp(self) -> PylonApp:
        return self.app  # type: ignore[return-value]

    def on_mount(self) -> None:
        self.set_interval(self.papp.flush_s, self.flush, name="flush")
        self.conn_bar.show(self.papp.link.state)

    @property
    def conn_bar(self) -> ConnBar:
        return self.query_one(ConnBar)

    # --- refresh ----------------------------------------------------------------------------------

    def flush(self) -> None:
        """Apply what changed in the model to the widgets (called a few times a second)."""
        raise NotImplementedError

    def on_link_changed(self, message: LinkChanged) -> None:
        self.link_changed(message.state)

    def link_changed(self, state: LinkState) -> None:
        if not self.is_mounted:
            return  # on_mount shows the link's state itself
        self.conn_bar.show(state)
        self.refresh_bindings()
        if state.connected:
            self.flush()

    # --- keys -------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.KILL_ACTIONS and self.papp.read_only:
            return False  # --read-only: the kill switches are gone, from the footer and the palette
        return True

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self))

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    def action_back(self) -> None:
        bar = self.query_one(FilterBar)
        if bar.value or bar.display:
            bar.action_clear_filter()

    def on_filter_bar_updated(self, message: FilterBar.Updated) -> None:
        self.apply_filter(message.text)
        if message.done:
            self.focus_main()

    def apply_filter(self, text: str) -> None:
        raise NotImplementedError

    def focus_main(self) -> None:
        """Give the focus back to the pane in view."""

    def palette(self) -> Iterator[PaletteEntry]:
        """Every screen action with a description, for the command palette (gated like the keys)."""
        for b in self.BINDINGS:
            if not isinstance(b, Binding) or not b.description:
                continue
            action = b.action.split("(")[0]
            if not self.check_action(action, ()):
                continue
            doc = self.ACTION_HELP.get(action, b.description)
            yield b.description, f"{doc}  [{b.key}]", lambda a=b.action: self.run_action(a)

    # --- kill switches --------------------------------------------------------------------------

    def kill(
        self,
        req: rpc.Request,
        *,
        confirm: tuple[str, str] | None = None,
        done: Callable[[Any], str] | None = None,
    ) -> None:
        send_control(self, req, confirm=confirm, done=done)
