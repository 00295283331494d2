"""The `/` filter: an input docked at the bottom that narrows the table in view as you type."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class FilterBar(Input):
    BINDINGS = [Binding("escape", "clear_filter", "Clear filter", show=True)]

    class Updated(Message):
        def __init__(self, text: str, done: bool = False) -> None:
            super().__init__()
            self.text = text
            self.done = done  # Enter: keep the filter and go back to the table

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(placeholder="filter: words to match (Enter keeps it, Esc clears)", **kwargs)

    def open(self) -> None:
        self.display = True
        self.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Updated(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.display = bool(self.value)
        self.post_message(self.Updated(self.value, done=True))

    def action_clear_filter(self) -> None:
        self.value = ""
        self.display = False
        self.post_message(self.Updated("", done=True))
