"""The log pane: what happened, newest at the bottom (markup lines from the model's log buffer)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pylon.tui.widgets.grows_in_place import GrowsInPlace
from textual.widgets import RichLog


class LogPane(GrowsInPlace, RichLog):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=True, wrap=False, max_lines=2000, auto_scroll=True, **kwargs)
        self.filter_text = ""
        self._all: list[str] = []

    def add_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self._all.append(line)
            if self._matches(line):
                self.write(line)
        if len(self._all) > 4000:
            del self._all[:2000]

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip().lower()
        self.clear()
        for line in self._all:
            if self._matches(line):
                self.write(line)

    def _matches(self, line: str) -> bool:
        return not self.filter_text or all(w in line.lower() for w in self.filter_text.split())
