"""A snapshot per screen (pytest-textual-snapshot). The app is fed canned data at a fixed clock
(`pylon.tui.canned`), so the pictures do not depend on keys, times or machines.

Regenerate after a deliberate change with: pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_textual_snapshot
from pylon.tui.app import PylonApp, canned_app
from pylon.tui.canned import CANNED_NOW, canned_client, job_id
from pylon.tui.screens.confirm import ConfirmScreen
from pylon.tui.screens.help import HelpScreen
from pylon.tui.screens.job import JobScreen
from pylon.tui.screens.provider import ProviderScreen
from pylon.tui.source import CannedClient
from pylon.tui.testing import screen_text, settle, wait_for
from pylon.tui.widgets.runs_tree import RunsTree
from textual.pilot import Pilot

from pylon.rpc.client import DaemonNotRunning

# pytest-textual-snapshot 1.0 names its extension for syrupy < 5 (`_file_extension`); syrupy 7 reads
# `file_extension` and would store the pictures as .raw. Same SVG text either way: keep the .svg name.
if getattr(pytest_textual_snapshot.SVGImageExtension, "file_extension", "svg") != "svg":
    pytest_textual_snapshot.SVGImageExtension.file_extension = "svg"

SIZE = (160, 48)
Before = Callable[[Pilot[Any]], Awaitable[None]]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Clock times render in local time: pin it, so the pictures match on every machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def keys(*presses: str, until: Callable[[PylonApp], bool] | None = None) -> Before:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        app: PylonApp = pilot.app  # type: ignore[assignment]
        for key in presses:
            await pilot.press(key)
            await pilot.pause()
        if until is not None:
            await wait_for(pilot, lambda: until(app), what="the screen to fill in")
        app.flush_now()
        await pilot.pause()

    return run_before


def test_buyer_swarm(snap_compare: Any) -> None:
    assert snap_compare(canned_app("buyer"), terminal_size=SIZE, run_before=keys())


def test_buyer_nodes(snap_compare: Any) -> None:
    assert snap_compare(canned_app("buyer"), terminal_size=SIZE, run_before=keys("2"))


def test_buyer_runs_tree(snap_compare: Any) -> None:
    def live_run_open(app: PylonApp) -> bool:
        return app.screen.query_one(RunsTree).leaf_count == 10

    assert snap_compare(canned_app("buyer"), terminal_size=SIZE, run_before=keys("3", until=live_run_open))


def test_buyer_jobs(snap_compare: Any) -> None:
    assert snap_compare(canned_app("buyer"), terminal_size=SIZE, run_before=keys("4"))


def test_buyer_log(snap_compare: Any) -> None:
    assert snap_compare(canned_app("buyer"), terminal_size=SIZE, run_before=keys("5"))


def test_buyer_filter(snap_compare: Any) -> None:
    assert snap_compare(canned_app("buyer"), terminal_size=SIZE, run_before=keys("4", "slash", "p", "y", "l"))


def test_job_trail(snap_compare: Any) -> None:
    """Enter on a completed subtask: its telemetry and its verified provenance chain."""

    def trail_loaded(app: PylonApp) -> bool:
        return isinstance(app.screen, JobScreen) and "verified" in screen_text(app)

    target = job_id("live/pylon/keys.py")

    async def run_before(pilot: Pilot[Any]) -> None:
        await keys("3")(pilot)
        tree = pilot.app.screen.query_one(RunsTree)
        await wait_for(pilot, lambda: tree.select_job(target), what="the subtask")
        tree.focus()
        await keys("enter", until=trail_loaded)(pilot)

    assert snap_compare(canned_app("buyer"), terminal_size=SIZE, run_before=run_before)


def test_job_trail_unavailable(snap_compare: Any) -> None:
    """A job with no result yet: the trail call fails and the screen says why."""

    def loaded(app: PylonApp) -> bool:
        return isinstance(app.screen, JobScreen) and "unavailable" in screen_text(app)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.push_screen(JobScreen(job_id("live/pylon/rpc/framing.py")))
        await wait_for(pilot, lambda: loaded(pilot.app), what="the trail error")  # type: ignore[arg-type]
        await pilot.pause()

    assert snap_compare(canned_app("buyer"), terminal_size=SIZE, run_before=run_before)


def test_provider(snap_compare: Any) -> None:
    def loaded(app: PylonApp) -> bool:
        return isinstance(app.screen, ProviderScreen) and "median run" in screen_text(app)

    assert snap_compare(
        canned_app("buyer"), terminal_size=SIZE, run_before=keys("2", "down", "enter", until=loaded)
    )


def test_help_overlay(snap_compare: Any) -> None:
    def shown(app: PylonApp) -> bool:
        return isinstance(app.screen, HelpScreen)

    assert snap_compare(
        canned_app("buyer"), terminal_size=SIZE, run_before=keys("3", "question_mark", until=shown)
    )


def test_stop_all_confirm(snap_compare: Any) -> None:
    def asked(app: PylonApp) -> bool:
        return isinstance(app.screen, ConfirmScreen)

    assert snap_compare(canned_app("buyer"), terminal_size=SIZE, run_before=keys("S", until=asked))


def test_node(snap_compare: Any) -> None:
    assert snap_compare(canned_app("node"), terminal_size=SIZE, run_before=keys())


def test_node_read_only(snap_compare: Any) -> None:
    assert snap_compare(canned_app("node", read_only=True), terminal_size=SIZE, run_before=keys())


def test_node_abort_confirm(snap_compare: Any) -> None:
    def asked(app: PylonApp) -> bool:
        return isinstance(app.screen, ConfirmScreen)

    assert snap_compare(canned_app("node"), terminal_size=SIZE, run_before=keys("ctrl+k", until=asked))


class GoneSource:
    """Connects once to canned data, then the daemon is gone for good (the banner's picture)."""

    label = "/home/op/.local/share/pylon/run/buyer.sock"
    kind_hint = "buyer"

    def __init__(self) -> None:
        self.client: CannedClient = canned_client("buyer")
        self.connects = 0

    async def connect(self) -> CannedClient:
        self.connects += 1
        if self.connects > 1:
            raise DaemonNotRunning("buyer daemon is not running (no socket); start it with: pylon buyer up")
        return self.client


def test_buyer_daemon_gone(snap_compare: Any) -> None:
    """The daemon went away: a red status line, the last picture kept, reconnecting in the background."""
    source = GoneSource()
    app = PylonApp(source, clock=lambda: CANNED_NOW, backoff=(0.01, 30.0))  # then it waits: a still picture

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await source.client.aclose()
        await wait_for(
            pilot,
            lambda: "went away" in screen_text(pilot.app) and "2 tried" in screen_text(pilot.app),
            what="the banner",
        )
        await pilot.press("3")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
