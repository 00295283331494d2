"""The widgets on their own: the live table redraws only what changed and keeps its cursor, the
runs tree fills in place, and text from the daemons (node names, paths, errors) is never read as
markup, so a node calling itself "[/]" cannot break or restyle the screen."""

from __future__ import annotations

from typing import Any

import pytest
from pylon.tui.app import canned_app
from pylon.tui.model import Changes, KeySet
from pylon.tui.testing import screen_text, settle, wait_for
from pylon.tui.widgets.jobs_table import JobsTable
from pylon.tui.widgets.runs_tree import RunsTree
from textual.app import App, ComposeResult

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def job(i: int, state: str = "assigned") -> dict[str, Any]:
    return {
        "job_id": f"job{i:04d}",
        "run_id": None,
        "path": f"src/file_{i:04d}.py",
        "state": state,
        "provider_pubkey": None,
        "error": None,
        "end_to_end": None,
        "attempts": 1,
        "paid": False,
    }


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield JobsTable(lambda pk: pk or "-", id="t")


def changed(*keys: str) -> Changes:
    return Changes(keys=KeySet.fromkeys(keys))


async def test_live_table_renders_only_changed_rows_and_keeps_the_cursor() -> None:
    app = TableApp()
    async with app.run_test(size=(160, 30)) as pilot:
        table = app.query_one(JobsTable)
        jobs = {j["job_id"]: j for j in (job(i) for i in range(500))}
        table.sync(jobs, Changes(all=True))
        await pilot.pause()
        assert table.row_count == 500
        assert table.shown_keys[:3] == ["job0000", "job0001", "job0002"]  # arrival order
        table.select_key("job0003")
        await pilot.pause()
        before = table.rendered

        # One job changes and 100 arrive: only the changed row (and the new rows in view) render again.
        jobs["job0003"] = job(3, "completed")
        new = {j["job_id"]: j for j in (job(i) for i in range(500, 600))}
        jobs.update(new)
        table.sync(jobs, changed("job0003", *new))
        await pilot.pause()
        assert table.row_count == 600
        assert table.selected_key() == "job0003"  # the cursor stayed on its row
        assert table.rendered - before <= 3  # the changed row, with and without the cursor
        assert "✔ completed" in screen_text(app)

        # A job that leaves, and a filter that narrows, then clears.
        del jobs["job0001"]
        table.sync(jobs, Changes(removed={"job0001"}))
        assert "job0001" not in table.shown_keys and table.row_count == 599
        table.set_filter("file_059", jobs)
        assert table.shown_keys == [f"job{i:04d}" for i in range(590, 600)]
        table.set_filter("", jobs)
        assert table.row_count == 599


async def test_live_table_keys_move_the_cursor_and_enter_opens() -> None:
    opened: list[str] = []

    class Recording(TableApp):
        def on_open_job(self, message: Any) -> None:
            opened.append(message.job_id)

    app = Recording()
    async with app.run_test(size=(160, 12)) as pilot:
        table = app.query_one(JobsTable)
        jobs = {j["job_id"]: j for j in (job(i) for i in range(50))}
        table.sync(jobs, Changes(all=True))
        table.focus()
        await pilot.press("down", "down", "enter")
        await wait_for(pilot, lambda: opened == ["job0002"], what="Enter to open the selected job")
        await pilot.press("end")
        assert table.selected_key() == "job0049"
        assert table.scroll_y > 0  # scrolled to keep the cursor in view
        await pilot.press("home", "pagedown")
        assert table.cursor_row == 12 - 2  # a page: the 11 rows under the header, less one kept in view


async def test_daemon_text_is_never_markup() -> None:
    app = canned_app("buyer")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        m = app.buyer_model
        pk = next(iter(m.nodes))
        evil = {**m.nodes[pk], "name": "[/]evil[bold", "state": "paused"}
        m.set_nodes([evil, *(n for k, n in m.nodes.items() if k != pk)])
        m.apply(
            "jobs",
            [{**job(1, "failed"), "path": "app/[id]/page.tsx", "error": "[/red]boom", "provider_pubkey": pk}],
        )
        app.flush_now()
        await pilot.press("2")
        await wait_for(pilot, lambda: "[/]evil[bold" in screen_text(app), what="the name shown as typed")
        await pilot.press("5")
        line = "app/[id]/page.tsx: [/red]boom"
        await wait_for(pilot, lambda: line in screen_text(app), what="the log line, literally")


async def test_runs_tree_updates_leaves_in_place() -> None:
    app = canned_app("buyer")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        tree = app.screen.query_one(RunsTree)
        await wait_for(pilot, lambda: tree.leaf_count == 10, what="the live run to open")
        m = app.buyer_model
        target = next(j for j in m.run_jobs["c3" * 32] if m.jobs[j]["state"] == "submitted")
        leaf = tree._leaves[target]
        m.apply("jobs", [{**m.jobs[target], "state": "completed", "end_to_end": 0.321}])
        app.flush_now()
        assert tree._leaves[target] is leaf  # the same node, relabelled
        await wait_for(
            pilot,
            lambda: "app.py  completed" in screen_text(app) and "321ms" in screen_text(app),
            what="the leaf's new label",
        )
        await wait_for(pilot, lambda: "7/10" in screen_text(app), what="the run's counts")


async def test_every_action_is_in_the_command_palette_and_read_only_removes_the_switches() -> None:
    for read_only in (False, True):
        app = canned_app("buyer", read_only=read_only)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot)
            await pilot.press("3")  # the runs tab: cancel applies here
            titles = {c.title for c in app.get_system_commands(app.screen)}
            assert {"Filter", "Help", "Swarm", "Nodes", "Runs", "Jobs", "Log"} <= titles
            switches = {"Cancel", "Stop all"}
            assert (switches & titles) == (set() if read_only else switches)
            assert "Ban/unban" not in titles  # it applies on the nodes tab only


async def test_a_socket_of_unknown_kind_gets_the_right_screen_once_it_answers() -> None:
    from pylon.tui.app import PylonApp
    from pylon.tui.canned import CANNED_NOW, canned_client
    from pylon.tui.screens.buyer import BuyerScreen
    from pylon.tui.source import CannedSource

    source = CannedSource(canned_client("buyer"), label="/srv/pylon/custom.sock")
    source.kind_hint = None  # as for `pylon-tui --socket PATH` with a name we cannot read
    app = PylonApp(source, clock=lambda: CANNED_NOW)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BuyerScreen), what="the buyer screen")
        await settle(pilot)
        await wait_for(pilot, lambda: "online nodes" in screen_text(app), what="the swarm figures")
        assert app.title.startswith("pylon · buyer")


async def test_a_big_run_shows_closed_directories_with_counts_until_one_is_opened() -> None:
    app = canned_app("buyer")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        m = app.buyer_model
        big = "bb" * 32
        m.set_runs(
            [
                {
                    "run_id": big,
                    "repo": "/src/big",
                    "files": 150,
                    "completed": 0,
                    "failed": 0,
                    "started": 2e9,
                    "finished": None,
                }
            ]
        )
        m.apply(
            "jobs",
            [
                {
                    **job(i, "completed" if i % 3 else "processing"),
                    "run_id": big,
                    "path": f"pkg{i % 5}/mod_{i:03d}.py",
                }
                for i in range(150)
            ],
        )
        app.flush_now()
        await pilot.press("3")
        tree = app.screen.query_one(RunsTree)
        await wait_for(pilot, lambda: tree.dir_count >= 5, what="the big run's directories")
        assert tree.leaf_count == 0  # the newest run opened itself, but its directories are closed
        await wait_for(
            pilot,
            lambda: "pkg0/  20/30  ✔20 completed  ⟳10 processing" in screen_text(app),
            what="a closed directory's counts",
        )
        assert tree.select_job("job0005")  # drilling to a subtask opens its directory
        assert tree.leaf_count == 30
        m.apply("jobs", [{**m.jobs["job0000"], "state": "completed"}])
        app.flush_now()
        await wait_for(
            pilot, lambda: "pkg0/  21/30  ✔21 completed" in screen_text(app), what="the counts moving"
        )


async def test_a_run_that_finished_before_the_tui_saw_it_still_opens_itself() -> None:
    """A 6-file run can start and finish between two TUI updates (it did on CI): the newest run
    must open even when it arrives already finished, or its subtasks never show."""
    app = canned_app("buyer")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        m = app.buyer_model
        quick = "dd" * 32
        m.set_runs(
            [
                *({**r, "finished": r.get("finished") or 3e9} for r in m.runs.values()),
                {
                    "run_id": quick,
                    "repo": "/src/quick",
                    "files": 6,
                    "completed": 6,
                    "failed": 0,
                    "started": 3e9,
                    "finished": 3e9 + 1,
                },
            ]
        )
        m.apply(
            "jobs",
            [{**job(900 + i, "completed"), "run_id": quick, "path": f"q{i}.py"} for i in range(6)],
        )
        app.flush_now()
        await pilot.press("3")
        tree = app.screen.query_one(RunsTree)
        await wait_for(
            pilot,
            lambda: all(f"job{900 + i:04d}" in tree._leaves for i in range(6)),
            what="the finished run's six leaves",
        )
        await wait_for(pilot, lambda: "q5.py  completed" in screen_text(app), what="a leaf on screen")
