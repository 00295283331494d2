"""A DataTable that follows a keyed collection and redraws only the rows that changed.

Rows are keyed by the item's id. `sync` adds the rows that appeared, rewrites only the cells
whose text changed, and removes the rows that went away or stopped matching the filter; only
a new filter (or a full reload) rebuilds the table. The cursor stays on its row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pylon.tui.model import Changes
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

Cells = tuple[str | Text, ...]


class LiveTable(DataTable[str | Text]):
    """Subclasses set COLUMNS ((key, label, width or None), …) and implement `cells`."""

    COLUMNS: tuple[tuple[str, str, int | None], ...] = ()
    SORT_KEY: str | None = None  # a column to keep the rows ordered by (re-sorted when rows are added)
    SORT_REVERSE = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.filter_text = ""
        self._shown: dict[str, Cells] = {}
        self._haystack: dict[str, str] = {}
        self.updates = 0  # cells rewritten (for the benchmark)

    def on_mount(self) -> None:
        for key, label, width in self.COLUMNS:
            self.add_column(label, key=key, width=width)

    # --- what subclasses provide ---------------------------------------------------------------

    def cells(self, item: Mapping[str, Any]) -> Cells:
        raise NotImplementedError

    def search_text(self, item: Mapping[str, Any], cells: Cells) -> str:
        return " ".join(c.plain if isinstance(c, Text) else c for c in cells).lower()

    def include(self, item: Mapping[str, Any]) -> bool:
        """Whether the item belongs in this table at all (before the operator's filter)."""
        return True

    # --- syncing -------------------------------------------------------------------------------

    def sync(
        self,
        items: Mapping[str, Mapping[str, Any]],
        changes: Changes,
        order: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        """Bring the table in line with `items` given what changed; `order` lists keys for a rebuild."""
        if changes.all:
            self.rebuild(items, order() if order else items.keys())
            return
        added = False
        for key in changes.removed:
            self._drop(key)
        for key in changes.keys:
            item = items.get(key)
            if item is None:
                self._drop(key)
                continue
            cells = self.cells(item)
            if not self._matches(item, cells):
                self._drop(key)
                continue
            old = self._shown.get(key)
            if old is None:
                self.add_row(*cells, key=key)
                added = True
            elif old != cells:
                for (col, _, _), before, after in zip(self.COLUMNS, old, cells, strict=True):
                    if before != after:
                        try:
                            self.update_cell(key, col, after)
                        except CellDoesNotExist:
                            continue
                        self.updates += 1
            self._shown[key] = cells
        if added and self.SORT_KEY:
            self.sort(self.SORT_KEY, key=_sort_key, reverse=self.SORT_REVERSE)

    def rebuild(self, items: Mapping[str, Mapping[str, Any]], keys: Iterable[str]) -> None:
        selected = self.selected_key()
        self.clear()
        self._shown.clear()
        rows = []
        for key in keys:
            item = items.get(key)
            if item is None:
                continue
            cells = self.cells(item)
            if self._matches(item, cells):
                rows.append((key, cells))
                self._shown[key] = cells
        for key, cells in rows:
            self.add_row(*cells, key=key)
        if self.SORT_KEY and rows:
            self.sort(self.SORT_KEY, key=_sort_key, reverse=self.SORT_REVERSE)
        if selected is not None and selected in self._shown:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def set_filter(
        self,
        text: str,
        items: Mapping[str, Mapping[str, Any]],
        order: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.filter_text = text.strip().lower()
        self.rebuild(items, order() if order else items.keys())

    def _matches(self, item: Mapping[str, Any], cells: Cells) -> bool:
        if not self.include(item):
            return False
        if not self.filter_text:
            return True
        return all(word in self.search_text(item, cells) for word in self.filter_text.split())

    def _drop(self, key: str) -> None:
        if self._shown.pop(key, None) is not None:
            try:
                self.remove_row(key)
            except RowDoesNotExist:
                pass

    # --- selection -------------------------------------------------------------------------------

    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except CellDoesNotExist:
            return None
        return row_key.value

    def select_key(self, key: str) -> bool:
        if key not in self._shown:
            return False
        self.move_cursor(row=self.get_row_index(key), animate=False)
        return True

    @property
    def shown_keys(self) -> list[str]:
        return list(self._shown)


def _sort_key(value: Any) -> Any:
    return value.plain if isinstance(value, Text) else value
