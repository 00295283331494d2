"""The buyer's nodes table: one row per provider it has heard from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pylon.tui.fmt import age, secs, state_text
from pylon.tui.messages import OpenProvider
from pylon.tui.model import short
from pylon.tui.widgets.live_table import Cells, LiveTable
from rich.text import Text


def node_state(node: Mapping[str, Any]) -> str:
    if node.get("banned"):
        return "banned"
    if not node.get("online"):
        return "offline"
    return str(node.get("state") or "unknown")


def _checks(node: Mapping[str, Any]) -> Text:
    """Spot checks of its results another node agreed with / disagreed with."""
    passed, failed = int(node.get("checks_passed") or 0), int(node.get("checks_failed") or 0)
    if not passed and not failed:
        return Text("-", style="dim")
    t = Text(f"{passed}/")
    t.append(str(failed), style="bold red" if failed else "")
    return t


def _ours(node: Mapping[str, Any]) -> Text:
    """Our jobs on the node over the slots we fill there (its declared slots, earned by
    delivering); full in bold: the node is taking all we give it."""
    ours, slots = int(node.get("assigned_now") or 0), int(node.get("slots") or 0)
    if not slots:
        return Text(str(ours))
    return Text(f"{ours}/{slots}", style="bold" if ours >= slots else "")


class NodesTable(LiveTable):
    COLUMNS = (
        ("name", "name", 14),
        ("pubkey", "pubkey", 10),
        ("state", "state", 9),
        ("queue", "queue", 6),
        ("running", "running", 8),
        ("assigned", "ours/slots", 10),
        ("service", "service", 8),
        ("completed", "completed", 10),
        ("failed", "failures", 9),
        ("checks", "checks ✓/✗", 10),
        ("heartbeat", "last heartbeat", 15),
        ("executors", "executors", 24),
    )
    SORT_KEY = "name"

    def __init__(self, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock

    def cells(self, item: Mapping[str, Any]) -> Cells:
        execs = ", ".join(item.get("executors") or []) or "-"
        if item.get("models"):
            execs += f" ({', '.join(item['models'])})"
        return (
            item.get("name") or short(item["pubkey"]),
            short(item["pubkey"]),
            state_text(node_state(item)),
            str(item.get("queue_depth", 0)),
            str(item.get("running", 0)),
            _ours(item),
            secs(item.get("service_s")),
            str(item.get("completed", 0)),
            Text(str(item.get("failed", 0)), style="red" if item.get("failed") else ""),
            _checks(item),
            age(item.get("last_heartbeat"), self.clock()),
            execs,
        )

    def search_text(self, item: Mapping[str, Any], cells: Cells) -> str:
        return f"{super().search_text(item, cells)} {item['pubkey']}"

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        event.stop()
        self.post_message(OpenProvider(event.key))
