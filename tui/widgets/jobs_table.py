"""The buyer's jobs table: every job it knows, updated in place as the pushes arrive."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pylon.tui.fmt import secs, state_text
from pylon.tui.messages import OpenJob
from pylon.tui.model import short
from pylon.tui.widgets.live_table import Cells, LiveTable


class JobsTable(LiveTable):
    COLUMNS = (
        ("job", "job", 10),
        ("path", "path", 44),
        ("state", "state", 13),
        ("provider", "provider", 14),
        ("attempts", "tries", 5),
        ("e2e", "time", 8),
        ("paid", "paid", 4),
        ("error", "error", 16),
        ("run", "run", 10),
    )

    def __init__(self, node_name: Callable[[str | None], str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_name = node_name

    def cells(self, item: Mapping[str, Any]) -> Cells:
        return (
            short(item["job_id"]),
            item.get("path") or "",
            state_text(item.get("state"), mark=True),
            self.node_name(item.get("provider_pubkey")),
            str(item.get("attempts") or 1),
            secs(item.get("end_to_end")),
            "yes" if item.get("paid") else "",
            item.get("error") or "",
            short(item.get("run_id")),
        )

    def search_text(self, item: Mapping[str, Any], cells: Cells) -> str:
        return f"{super().search_text(item, cells)} {item['job_id']} {item.get('run_id') or ''}"

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        event.stop()
        self.post_message(OpenJob(event.key))
