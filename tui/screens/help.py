"""`?`: the keys of the screen underneath, what they do, and whether they apply right now."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

GENERAL = (
    ("enter", "drill down into the selected row"),
    ("ctrl+p", "command palette: every action by name"),
    ("tab / shift+tab", "move between panes"),
    ("↑ ↓ pgup pgdn", "move the cursor"),
)


def key_label(key: str) -> str:
    return {"question_mark": "?", "slash": "/", "escape": "esc"}.get(key, key)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(self.keys_table(), id="help-keys")

    def keys_table(self) -> Table:
        title = getattr(self.under, "HELP_TITLE", type(self.under).__name__)
        table = Table(
            title=f"{title}: keys",
            caption="esc, ? or q closes this",
            expand=True,
            show_edge=False,
            title_style="bold",
        )
        table.add_column("key", style="bold cyan", width=16)
        table.add_column("action")
        table.add_column("now", width=14)
        read_only = bool(getattr(self.app, "read_only", False))
        keys: dict[str, list[str]] = {}
        for b in self.under.BINDINGS:
            if isinstance(b, Binding) and b.description:
                keys.setdefault(b.action.split("(")[0], []).append(key_label(b.key))
        for action, labels in keys.items():
            allowed = self.under.check_action(action, ())
            if allowed:
                now = Text("available", style="green")
            elif read_only and action in getattr(self.under, "KILL_ACTIONS", ()):
                now = Text("read-only", style="yellow")
            else:
                now = Text("not here", style="dim")
            doc = getattr(self.under, "ACTION_HELP", {}).get(action, action.replace("_", " "))
            table.add_row(" ".join(labels), doc, now)
        table.add_section()
        for key, doc in GENERAL:
            table.add_row(key, doc, "")
        return table
