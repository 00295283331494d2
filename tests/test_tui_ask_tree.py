"""The ask tree in pylon-tui: beside the runs tree, follow-ups under the answer that named them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_textual_snapshot
from pylon.tui.app import canned_app
from pylon.tui.testing import screen_text, settle, wait_for
from pylon.tui.widgets.ask_tree import AskTree
from textual.pilot import Pilot

if getattr(pytest_textual_snapshot.SVGImageExtension, "file_extension", "svg") != "svg":
    pytest_textual_snapshot.SVGImageExtension.file_extension = "svg"

ASK_ID = "a5" * 32


def node(i: int, parent: int | None, depth: int, path: str, focus: list[str], status: str, **kw: Any) -> dict:
    return {
        "id": i, "parent": parent, "depth": depth, "path": path, "focus": focus, "status": status,
        "job_id": kw.get("job_id", f"j{i}" if not status.startswith("skipped") else None),
        "node": kw.get("node"), "cost_sats": kw.get("cost_sats", 0), "relevant": kw.get("relevant"),
        "mode": kw.get("mode", ""), "error": kw.get("error"), "follow_ups": [], "wall_s": kw.get("wall_s"),
    }  # fmt: skip


def progress(done: bool = False) -> dict:
    nodes = [
        node(0, None, 0, "app/main.py", ["main"], "completed", mode="model", wall_s=1.02, cost_sats=1),
        node(1, None, 0, "app/cli.py", ["main"], "failed", error="timeout"),
        node(2, 0, 1, "app/service.py", ["run_service"], "completed", mode="model", wall_s=1.1, cost_sats=1),
        node(3, 2, 2, "app/engine.py", ["Engine"], "processing" if not done else "completed"),
        node(4, 3, 3, "app/util.py", ["spin_up"], "skipped_depth"),
        node(5, 0, 1, "app/config.py", ["load_settings"], "skipped_budget"),
        node(6, None, -1, "answer.md", [], "completed" if done else "pending"),
    ]
    return {
        "ask_id": ASK_ID, "question": "what does `main` call", "depth": 2, "nodes": nodes,
        "spent_sats": 3, "budget_sats": 5, "done": done,
    }  # fmt: skip


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.anyio
async def test_the_ask_tree_nests_follow_ups_and_updates() -> None:
    app = canned_app("buyer")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        tree = app.screen.query_one(AskTree)
        assert not tree.display  # no ask yet: the runs tree has the pane
        app.buyer_model.apply("ask", progress())
        app.flush_now()
        await wait_for(
            pilot, lambda: tree.display and "app/service.py" in screen_text(app), what="the ask tree"
        )
        lines = tree.labels()
        assert lines[0].startswith(f"ask {ASK_ID[:12]}") and "3/5 sats" in lines[0] and "running" in lines[0]

        # depth-first: the follow-up chain nests under the answer that named it; the reduce is last
        def name(ln: str) -> str:
            return ln.strip()[2:].split("  ")[0]

        assert [name(ln) for ln in lines[1:]] == [
            "app/main.py", "app/service.py", "app/engine.py", "app/util.py", "app/config.py",
            "app/cli.py", "reduce → answer.md",
        ]  # fmt: skip
        indent = {name(ln): len(ln) - len(ln.lstrip()) for ln in lines[1:]}
        assert (
            indent["app/main.py"] < indent["app/service.py"] < indent["app/engine.py"] < indent["app/util.py"]
        )
        assert "skipped_depth" in lines[4] and "skipped_budget" in lines[5] and "timeout" in lines[6]
        app.buyer_model.apply("ask", progress(done=True))
        app.flush_now()
        await wait_for(pilot, lambda: "done" in tree.labels()[0], what="the ask to finish")
        assert "completed" in tree.labels()[3]


def test_buyer_ask_tree(snap_compare: Any, utc: None) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("3")
        pilot.app.buyer_model.apply("ask", progress())  # type: ignore[attr-defined]
        pilot.app.flush_now()  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: "app/service.py" in screen_text(pilot.app), what="the ask tree")
        await pilot.pause()

    assert snap_compare(canned_app("buyer"), terminal_size=(160, 48), run_before=run_before)
