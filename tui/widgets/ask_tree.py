"""The asks: each `pylon ask` a tree of its sub-calls, follow-ups under the answer that named them.

An ask is small (fan-out × rounds sub-calls, a hundred at most in practice), so a change to one
rebuilds that ask's branch; the others are left alone. The reduce is the ask's last child.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pylon.tui.fmt import STATE_MARK, STATE_STYLE, secs
from pylon.tui.model import short
from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

Data = tuple[str, ...]  # ("ask", ask_id) | ("sub", ask_id, node id)
SKIPPED_STYLE = "dim"


def ask_label(ask: Mapping[str, Any]) -> Text:
    nodes = [n for n in ask.get("nodes", []) if n.get("depth", 0) >= 0]
    done = sum(1 for n in nodes if n.get("status") == "completed")
    sent = sum(1 for n in nodes if n.get("job_id"))
    label = Text()
    label.append(f"ask {short(ask['ask_id'], 12)}", style="bold")
    label.append(f"  {ask.get('question', '')[:80]}", style="italic")
    label.append(f"  {done}/{sent} sub-calls  round {ask.get('depth', 0)}")
    budget = ask.get("budget_sats")
    label.append(f"  {ask.get('spent_sats', 0)}" + (f"/{budget}" if budget is not None else "") + " sats")
    label.append(
        "  done" if ask.get("done") else "  running", style="green" if ask.get("done") else "bold cyan"
    )
    return label


def sub_label(n: Mapping[str, Any], node_name: Any) -> Text:
    status = n.get("status") or "pending"
    skipped = status.startswith("skipped")
    label = Text()
    label.append(f"{STATE_MARK.get(status, '·')} ", style=STATE_STYLE.get(status, SKIPPED_STYLE))
    if n.get("depth", 0) < 0:
        label.append("reduce → answer.md", style="bold")
    else:
        label.append(n.get("path", ""))
        if n.get("focus"):
            label.append(f"  [{', '.join(n['focus'][:3])}]", style="cyan")
    label.append(f"  {status}", style=SKIPPED_STYLE if skipped else STATE_STYLE.get(status, ""))
    if n.get("node"):
        label.append(f"  @{node_name(n['node'])}", style="dim")
    if n.get("mode"):
        label.append(f"  {n['mode']}", style="magenta")
    if n.get("wall_s") is not None:
        label.append(f"  {secs(n['wall_s'])}")
    if n.get("cost_sats"):
        label.append(f"  {n['cost_sats']} sat")
    if n.get("relevant") is False:
        label.append("  not relevant", style="dim")
    if n.get("error"):
        label.append(f"  {n['error']}", style="red")
    return label


class AskTree(Tree[Data]):
    def __init__(self, node_name: Any = short, **kwargs: Any) -> None:
        super().__init__("asks", **kwargs)
        self.show_root = False
        self.guide_depth = 3
        self.node_name = node_name
        self._asks: dict[str, TreeNode[Data]] = {}

    def sync(self, asks: Mapping[str, Mapping[str, Any]], changed: Iterable[str]) -> None:
        for ask_id in changed:
            ask = asks.get(ask_id)
            if ask is None:
                continue
            branch = self._asks.get(ask_id)
            if branch is None:
                branch = self._asks[ask_id] = self.root.add(ask_label(ask), data=("ask", ask_id), expand=True)
            else:
                branch.set_label(ask_label(ask))
                branch.remove_children()
            self._fill(branch, ask)

    def _fill(self, branch: TreeNode[Data], ask: Mapping[str, Any]) -> None:
        nodes = list(ask.get("nodes", []))
        children: dict[int | None, list[Mapping[str, Any]]] = {}
        for n in nodes:
            children.setdefault(n.get("parent"), []).append(n)
        reduce = [n for n in nodes if n.get("depth", 0) < 0]

        def add(parent: TreeNode[Data], n: Mapping[str, Any]) -> None:
            kids = children.get(n["id"], [])
            data = ("sub", ask["ask_id"], str(n["id"]))
            if kids:
                tn = parent.add(sub_label(n, self.node_name), data=data, expand=True)
                for k in kids:
                    add(tn, k)
            else:
                parent.add_leaf(sub_label(n, self.node_name), data=data)

        for n in children.get(None, []):
            if n.get("depth", 0) >= 0:
                add(branch, n)
        for n in reduce:
            add(branch, n)

    def labels(self) -> list[str]:
        """Every line's text, depth-first (for tests)."""
        out: list[str] = []

        def walk(node: TreeNode[Data], depth: int) -> None:
            for child in node.children:
                out.append("  " * depth + child.label.plain)
                walk(child, depth + 1)

        walk(self.root, 0)
        return out
