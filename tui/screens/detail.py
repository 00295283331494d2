"""A plain key/value view of one record (a node's job), opened with Enter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pylon.tui.fmt import clock_time
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

TIME_FIELDS = {"received", "started", "finished", "submitted", "picked_up", "published", "paid"}


class DetailScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss", "Back"), Binding("q", "dismiss", "Back", show=False)]

    def __init__(self, title: str, record: Mapping[str, Any]) -> None:
        super().__init__()
        self.title_text = title
        self.record = record

    def compose(self) -> ComposeResult:
        table = Table(
            title=self.title_text, show_header=False, expand=True, title_style="bold", show_edge=False
        )
        table.add_column(style="dim", justify="right", width=14)
        table.add_column()
        for key, value in self.record.items():
            if key in TIME_FIELDS and isinstance(value, int | float):
                shown = f"{clock_time(value)}  ({value:.3f})"
            else:
                shown = "-" if value is None or value == "" else str(value)
            table.add_row(key, Text(shown))
        with VerticalScroll(id="detail-box"):
            yield Static(table)
