"""A mixin for scrolling widgets whose content grows while their own box stays the same size.

Textual declares `Widget.virtual_size` with `layout=True`, so every line added to a log, row
added to a table or leaf added to a tree re-lays-out the whole screen: tens of milliseconds,
twice a second while a run streams in. The widget's box does not move when its content grows,
so this redeclares the reactive without the layout pass and keeps the scrollbars in step the way
Textual's own no-layout path does (`Widget._size_updated(layout=False)` → `_scroll_update`).
A scrollbar that appears or goes still triggers a layout, through its own reactive.
"""

from __future__ import annotations

from textual.geometry import Size
from textual.reactive import Reactive


class GrowsInPlace:
    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def watch_virtual_size(self, size: Size) -> None:
        scroll_update = getattr(self, "_scroll_update", None)
        if scroll_update is not None:
            scroll_update(size)
