"""A node's jobs: the active ones (queued, running) and the recent ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pylon.tui.fmt import clock_time, sats, secs, state_text
from pylon.tui.model import ACTIVE_NODE_STATES, short
from pylon.tui.widgets.live_table import Cells, LiveTable


class NodeJobsTable(LiveTable):
    SORT_KEY = "received"
    SORT_REVERSE = True  # newest first

    COLUMNS = (
        ("job", "job", 10),
        ("path", "path", 40),
        ("state", "state", 12),
        ("buyer", "buyer", 10),
        ("received", "received", 10),
        ("took", "took", 8),
        ("error", "error", 16),
        ("paid", "paid", 10),
    )

    def cells(self, item: Mapping[str, Any]) -> Cells:
        started, finished = item.get("started"), item.get("finished")
        took = secs(finished - started) if started and finished else ("…" if started else "-")
        return (
            short(item["job_id"]),
            item.get("path") or "",
            state_text(item.get("state"), mark=True),
            short(item.get("buyer")),
            clock_time(item.get("received")),
            took,
            item.get("error") or "",
            sats(item.get("paid_msats")) if item.get("paid_msats") else "",
        )

    def search_text(self, item: Mapping[str, Any], cells: Cells) -> str:
        return f"{super().search_text(item, cells)} {item['job_id']}"


class ActiveJobsTable(NodeJobsTable):
    """Only what is queued or running: the rows ctrl+k can abort."""

    def include(self, item: Mapping[str, Any]) -> bool:
        return item.get("state") in ACTIVE_NODE_STATES
