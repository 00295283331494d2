"""A table that follows a keyed collection and redraws only the rows that changed.

Textual's DataTable re-renders every visible cell whenever any cell changes (its render cache
is keyed on a table-wide update counter), which at thousands of rows and a few updates a second
costs a frame or more per update. This table is built on the Line API instead: each row is
rendered once per version into a cached Strip, a changed row invalidates only itself, and adding
rows does not disturb the rows already drawn. `sync` applies a model's Changes: new rows are
added, changed rows re-rendered, gone rows removed; only a new filter (or a reload) rebuilds.
The cursor stays on its row (by key) when rows move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from pylon.tui.model import Changes
from pylon.tui.widgets.grows_in_place import GrowsInPlace
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cells = tuple[str | Text, ...]
CELL_PAD = 1


class LiveTable(GrowsInPlace, ScrollView, can_focus=True):
    """Subclasses set COLUMNS ((key, label, width), …) and implement `cells`."""

    COLUMNS: tuple[tuple[str, str, int], ...] = ()
    SORT_KEY: str | None = None  # a column to keep the rows ordered by
    SORT_REVERSE = False

    COMPONENT_CLASSES: ClassVar[set[str]] = {"live-table--header", "live-table--even", "live-table--cursor"}
    DEFAULT_CSS = """
    LiveTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        & > .live-table--header { text-style: bold; background: $panel; color: $foreground; }
        & > .live-table--even { background: $surface-lighten-1 50%; }
        & > .live-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .live-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select", "Open"),
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "First", show=False),
        Binding("end", "edge(1)", "Last", show=False),
    ]

    cursor_row: reactive[int] = reactive(0, always_update=True)

    class RowSelected(Message):
        """Enter (or a double click) on a row."""

        def __init__(self, table: LiveTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> LiveTable:
            return self.table

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filter_text = ""
        self._keys: list[str] = []  # rows in display order
        self._pos: dict[str, int] = {}
        self._cells: dict[str, Cells] = {}
        self._version: dict[str, int] = {}
        self._strips: LRUCache[tuple[Any, ...], Strip] = LRUCache(2048)
        self._style_gen = 0
        self._sort_col = next((i for i, c in enumerate(self.COLUMNS) if c[0] == self.SORT_KEY), None)
        self.table_width = sum(w + 2 * CELL_PAD for _, _, w in self.COLUMNS)
        self.rendered = 0  # rows rendered into strips (cache misses), for the benchmark

    # --- what subclasses provide ---------------------------------------------------------------

    def cells(self, item: Mapping[str, Any]) -> Cells:
        raise NotImplementedError

    def search_text(self, item: Mapping[str, Any], cells: Cells) -> str:
        return " ".join(c.plain if isinstance(c, Text) else c for c in cells).lower()

    def include(self, item: Mapping[str, Any]) -> bool:
        """Whether the item belongs in this table at all (before the operator's filter)."""
        return True

    # --- syncing ---------------------------------------------------------------------------------

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
        selected = self.selected_key()  # before rows move: the cursor stays on this row
        structural = False
        changed: list[str] = []
        for key in changes.removed:
            structural |= self._forget(key)
        for key in changes.keys:
            item = items.get(key)
            cells = self.cells(item) if item is not None else None
            if item is None or cells is None or not self._matches(item, cells):
                structural |= self._forget(key)
                continue
            old = self._cells.get(key)
            if old == cells:
                continue
            self._cells[key] = cells
            self._version[key] = self._version.get(key, 0) + 1
            if old is None:
                self._keys.append(key)
                structural = True
            else:
                changed.append(key)
        if structural:
            self._reorder(selected)
        else:
            for key in changed:
                self.refresh_line(self._pos[key] + 1)

    def rebuild(self, items: Mapping[str, Mapping[str, Any]], keys: Iterable[str]) -> None:
        selected = self.selected_key()
        self._cells.clear()
        self._keys = []
        for key in keys:
            item = items.get(key)
            if item is None:
                continue
            cells = self.cells(item)
            if self._matches(item, cells):
                self._cells[key] = cells
                self._version[key] = self._version.get(key, 0) + 1
                self._keys.append(key)
        self._reorder(selected)

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

    def _forget(self, key: str) -> bool:
        return self._cells.pop(key, None) is not None

    def _reorder(self, selected: str | None) -> None:
        """Rows came or went: fix the order and positions, keep the cursor on `selected`'s row."""
        if selected is not None and selected not in self._cells:
            selected = None
        self._keys = [k for k in self._keys if k in self._cells]
        if self._sort_col is not None:
            col = self._sort_col
            self._keys.sort(key=lambda k: _plain(self._cells[k][col]), reverse=self.SORT_REVERSE)
        self._pos = {k: i for i, k in enumerate(self._keys)}
        self.virtual_size = Size(self.table_width, len(self._keys) + 1)
        if selected is not None:
            self.cursor_row = self._pos[selected]
        else:
            self.cursor_row = min(self.cursor_row, max(0, len(self._keys) - 1))
        self.refresh()

    # --- rendering ----------------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._style_gen += 1  # a theme or focus change: every cached row is stale
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y == 0:
            strip = self._header_strip()
        else:
            index = scroll_y + y - 1
            if index >= len(self._keys):
                return Strip.blank(width, self.rich_style)
            strip = self._row_strip(index)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _header_strip(self) -> Strip:
        cache_key = ("header", self._style_gen)
        strip = self._strips.get(cache_key)
        if strip is None:
            style = self.rich_style + self.get_component_rich_style("live-table--header")
            strip = self._render_cells(tuple(label for _, label, _ in self.COLUMNS), style, None)
            self._strips[cache_key] = strip
        return strip

    def _row_strip(self, index: int) -> Strip:
        key = self._keys[index]
        cursor = index == self.cursor_row
        even = index % 2 == 1
        cache_key = (key, self._version.get(key, 0), cursor, cursor and self.has_focus, even, self._style_gen)
        strip = self._strips.get(cache_key)
        if strip is None:
            base = self.rich_style
            if even:
                base += self.get_component_rich_style("live-table--even")
            post = self.get_component_rich_style("live-table--cursor") if cursor else None
            strip = self._render_cells(self._cells[key], base, post)
            self._strips[cache_key] = strip
            self.rendered += 1
        return strip

    def _render_cells(self, cells: Cells, base: Style, post: Style | None) -> Strip:
        line = Text(no_wrap=True, end="")
        pad = " " * CELL_PAD
        for (_, _, width), cell in zip(self.COLUMNS, cells, strict=True):
            text = cell.copy() if isinstance(cell, Text) else Text(cell)
            text.truncate(width, overflow="ellipsis", pad=True)
            line.append(pad)
            line.append_text(text)
            line.append(pad)
        segments = Segment.apply_style(line.render(self.app.console), base, post)
        return Strip(list(segments), self.table_width)

    # --- the cursor ---------------------------------------------------------------------------------

    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self._keys) - 1))

    def watch_cursor_row(self, old: int, new: int) -> None:
        if old != new:
            self.refresh_line(old + 1)
        self.refresh_line(new + 1)
        self._scroll_to_cursor()

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.size.height - 1)  # the header takes a line
        top = int(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)

    def on_focus(self, event: events.Focus) -> None:
        self.refresh_line(self.cursor_row + 1)

    def on_blur(self, event: events.Blur) -> None:
        self.refresh_line(self.cursor_row + 1)

    def action_cursor(self, delta: int) -> None:
        self.cursor_row += delta

    def action_page(self, direction: int) -> None:
        self.cursor_row += direction * max(1, self.size.height - 2)

    def action_edge(self, end: int) -> None:
        self.cursor_row = len(self._keys) - 1 if end else 0

    def action_select(self) -> None:
        key = self.selected_key()
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        index = int(self.scroll_y) + offset.y - 1
        if 0 <= index < len(self._keys):
            self.cursor_row = index
            if event.chain >= 2:
                self.action_select()

    # --- reading it back -----------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._keys)

    @property
    def shown_keys(self) -> list[str]:
        return list(self._keys)

    def selected_key(self) -> str | None:
        if not self._pos:
            return None
        return self._keys[min(self.cursor_row, len(self._pos) - 1)]

    def select_key(self, key: str) -> bool:
        index = self._pos.get(key)
        if index is None:
            return False
        self.cursor_row = index
        return True

    def row_cells(self, key: str) -> Cells | None:
        return self._cells.get(key)


def _plain(value: str | Text) -> str:
    return value.plain if isinstance(value, Text) else value
