"""`pylon-tui node NAME` against a real node daemon: the view follows the node live, and each kill
switch reaches the daemon and changes its state. The node runs the Ollama executor against the
fake Ollama server, whose latency a test can raise to keep a job running long enough to abort."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from ollama_fake import FakeOllama
from pylon.schemas import rpc
from pylon.tui.app import PylonApp
from pylon.tui.screens.confirm import ConfirmScreen
from pylon.tui.source import RpcSource
from pylon.tui.testing import screen_text, wait_for
from pylon.tui.widgets.conn_bar import ConnBar
from pylon.tui.widgets.node_jobs_table import ActiveJobsTable, NodeJobsTable

from pylon.localmarket.launcher import LocalMarket

pytestmark = [pytest.mark.integration, pytest.mark.anyio]
SIZE = (160, 48)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def fake_ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory, fake_ollama: FakeOllama) -> Iterator[LocalMarket]:
    m = LocalMarket(
        home=tmp_path_factory.mktemp("tui-node") / "home",
        nodes=1,
        memory_relay=True,
        heartbeat_s=1.0,
        node_args=["--executor", "ollama", "--ollama-host", fake_ollama.url],
    )
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


def node_app(market: LocalMarket, **kw: Any) -> PylonApp:
    return PylonApp(RpcSource(market.socket_of("n0")), backoff=(0.2, 0.4), **kw)


async def call(market: LocalMarket, target: str, req: rpc.Request) -> Any:
    """A blocking market call off the app's loop (run_in_executor, unlike to_thread, does not carry
    this task's context over, where sniffio would tell anyio.run an event loop is already running)."""
    return await asyncio.get_running_loop().run_in_executor(None, market.call, target, req)


async def submit(market: LocalMarket, path: str) -> str:
    text = f'"""{path}"""\n\ndef handler(x):\n    return x * 2\n'
    reply = await call(market, "buyer", rpc.SubmitReq(path=path, text=text))
    return reply["job_id"]


async def node_state(market: LocalMarket) -> str:
    return (await call(market, "n0", rpc.StatusReq()))["state"]


async def test_node_view_follows_the_node(market: LocalMarket) -> None:
    app = node_app(market)
    async with app.run_test(size=SIZE) as pilot:
        want = ("ONLINE", "● connected", "ollama", "qwen2.5-coder:1.5b", "failures by reason", "earned")
        await wait_for(
            pilot,
            lambda: all(w in screen_text(app) for w in want),
            what="the node's state, executor, model, failures and earnings",
        )

        jid = await submit(market, "pkg/view_me.py")
        recent = app.screen.query_one("#recent-jobs", NodeJobsTable)
        await wait_for(
            pilot,
            lambda: app.node_model.jobs.get(jid, {}).get("state") == "completed",
            what="the job's completion pushed by the node",
        )
        await wait_for(pilot, lambda: jid in recent.shown_keys, what="the job in the recent table")
        # The row can first show the job as it was when the table last refreshed (processing):
        # wait for the refresh that shows it completed rather than catch the one before it.
        await wait_for(
            pilot,
            lambda: "view_me.py" in screen_text(app) and "✔ completed" in screen_text(app),
            what="the job shown completed in the recent table",
        )
        await wait_for(
            pilot,
            lambda: "view_me.py" in screen_text(app) and "queued" in screen_text(app),
            what="the log line about the job",
        )


async def test_p_pauses_and_resumes_the_node(market: LocalMarket) -> None:
    app = node_app(market)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "ONLINE" in screen_text(app), what="the node's state")
        await pilot.press("p")
        await _until_state(pilot, market, "paused")
        await wait_for(pilot, lambda: "PAUSED" in screen_text(app), what="PAUSED on screen")
        await pilot.press("p")
        await _until_state(pilot, market, "online")
        await wait_for(pilot, lambda: "ONLINE" in screen_text(app), what="ONLINE on screen")


async def test_d_drains_the_node(market: LocalMarket) -> None:
    app = node_app(market)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "ONLINE" in screen_text(app), what="the node's state")
        await pilot.press("d")
        await _until_state(pilot, market, "draining")
        await wait_for(pilot, lambda: "DRAINING" in screen_text(app), what="DRAINING on screen")
        await pilot.press("p")  # p brings a draining node back online
        await _until_state(pilot, market, "online")


async def test_ctrl_k_aborts_the_selected_running_job(market: LocalMarket, fake_ollama: FakeOllama) -> None:
    fake_ollama.delay_s = 60  # the model "thinks" long enough for the job to be caught running
    app = node_app(market)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "ONLINE" in screen_text(app), what="the node's state")
            jid = await submit(market, "pkg/slow_one.py")
            active = app.screen.query_one(ActiveJobsTable)
            await wait_for(
                pilot,
                lambda: app.node_model.jobs.get(jid, {}).get("state") == "running",
                what="the job running on the node",
            )
            await wait_for(pilot, lambda: active.select_key(jid), what="the job's row in the active table")
            active.focus()
            await pilot.press("ctrl+k")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirm dialog")
            assert "slow_one.py" in screen_text(app)
            await pilot.press("y")

            async def aborted() -> bool:
                jobs = (await call(market, "n0", rpc.NodeJobsReq(limit=20)))["jobs"]
                return any(j["job_id"] == jid and j["state"] == "aborted" for j in jobs)

            await wait_for(pilot, aborted, what="the node to record the job as aborted")
            await wait_for(
                pilot, lambda: jid not in active.shown_keys, what="the row to leave the active table"
            )
            status = await call(market, "n0", rpc.StatusReq())
            assert status["failures"].get("cancelled", 0) >= 1
    finally:
        fake_ollama.delay_s = 0


async def test_read_only_turns_every_switch_off(market: LocalMarket) -> None:
    app = node_app(market, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "ONLINE" in screen_text(app), what="the node's state")
        footer = screen_text(app).splitlines()[-1]
        assert "Pause" not in footer and "Drain" not in footer and "Abort" not in footer
        assert "READ-ONLY" in screen_text(app)
        for key in ("p", "d", "ctrl+k"):
            await pilot.press(key)
        await pilot.pause()
        assert not list(app.screen.workers) or all(w.group != "kill" for w in app.screen.workers)
        assert not isinstance(app.screen, ConfirmScreen)
        assert await node_state(market) == "online"


async def test_the_app_keeps_the_picture_and_reconnects_when_the_node_restarts(market: LocalMarket) -> None:
    app = node_app(market)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "ONLINE" in screen_text(app), what="the node's state")
        bar = app.screen.query_one(ConnBar)
        market.kill("node-n0", signal.SIGKILL)
        await wait_for(pilot, lambda: "went away" in screen_text(app), what="the disconnected banner")
        assert bar.has_class("-down")
        assert "ONLINE" in screen_text(app) and "n0" in screen_text(app)  # the last picture stays
        market.start_node("n0")
        await wait_for(pilot, lambda: app.link.connected, timeout=30, what="the reconnect")
        await wait_for(pilot, lambda: "● connected" in screen_text(app), what="the connected status line")
        assert not bar.has_class("-down")
    await asyncio.get_running_loop().run_in_executor(None, market.wait_ready, 30)


async def _until_state(pilot: Any, market: LocalMarket, want: str) -> None:
    async def reached() -> bool:
        return await node_state(market) == want

    await wait_for(pilot, reached, what=f"the node daemon to report {want}")
