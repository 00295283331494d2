"""`pylon-tui buyer` against a real buyer daemon and two real nodes: each view shows the live swarm,
a map run fills in as a tree, drill-downs open, and each kill switch reaches the daemon. The nodes
run the Ollama executor against the fake Ollama server, so a test can keep jobs outstanding."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ollama_fake import FakeOllama
from pylon.daemon.buyer.registry import START_SLOTS
from pylon.schemas import rpc
from pylon.tui.app import PylonApp
from pylon.tui.screens.buyer import BuyerScreen
from pylon.tui.screens.confirm import ConfirmScreen
from pylon.tui.screens.job import JobScreen
from pylon.tui.screens.provider import ProviderScreen
from pylon.tui.source import RpcSource
from pylon.tui.testing import screen_text, wait_for
from pylon.tui.widgets.jobs_table import JobsTable
from pylon.tui.widgets.nodes_table import NodesTable
from pylon.tui.widgets.runs_tree import RunsTree

from pylon.localmarket.launcher import LocalMarket

pytestmark = [pytest.mark.integration, pytest.mark.anyio]
SIZE = (160, 48)
FILES = {
    "app/__init__.py": "from .core import Engine\n",
    "app/core.py": "class Engine:\n    def run(self):\n        return 1\n",
    "app/cli.py": "import sys\n\ndef main():\n    print(sys.argv)\n",
    "lib/util.py": "def helper():\n    pass\n",
    "lib/more.py": "X = 1\n\ndef more():\n    return X\n",
    "README.md": "# demo\n\nA small repo.\n",
}


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
        home=tmp_path_factory.mktemp("tui-buyer") / "home",
        nodes=2,
        memory_relay=True,
        heartbeat_s=1.0,
        node_args=["--executor", "ollama", "--ollama-host", fake_ollama.url],
    )
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tui-repo")
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def buyer_app(market: LocalMarket, **kw: Any) -> PylonApp:
    return PylonApp(RpcSource(market.socket_of("buyer")), backoff=(0.2, 0.4), **kw)


async def off_loop(fn: Any, *args: Any) -> Any:
    """A blocking market call off the app's loop (run_in_executor, unlike to_thread, does not carry this
    task's context over, where sniffio would tell anyio.run an event loop is already running)."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def call(market: LocalMarket, target: str, req: rpc.Request) -> Any:
    return await off_loop(market.call, target, req)


async def submit(market: LocalMarket, path: str) -> str:
    reply = await call(market, "buyer", rpc.SubmitReq(path=path, text=f"def f():\n    return {path!r}\n"))
    return reply["job_id"]


async def free_nodes(market: LocalMarket) -> None:
    """Abort what the slow fake model left running on the nodes, so later tests find them idle."""
    for name in market.node_names():
        for j in (await call(market, name, rpc.NodeJobsReq(limit=50)))["jobs"]:
            if j["state"] in ("queued", "running"):
                try:
                    await call(market, name, rpc.AbortJobReq(job_id=j["job_id"]))
                except Exception:  # finished in between: nothing to free
                    pass


async def attached(pilot: Any, app: PylonApp) -> None:
    await wait_for(
        pilot, lambda: app.link.connected and len(app.buyer_model.nodes) >= 2, what="the buyer's nodes"
    )


async def test_nodes_tab_lists_the_live_nodes(market: LocalMarket) -> None:
    app = buyer_app(market)
    async with app.run_test(size=SIZE) as pilot:
        await attached(pilot, app)
        await wait_for(
            pilot, lambda: "2 / 2" in screen_text(app), what="2 of 2 nodes online in the swarm stats"
        )
        await pilot.press("2")
        table = app.screen.query_one(NodesTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="two rows in the nodes table")
        text = screen_text(app)
        for name in ("n0", "n1"):
            assert f" {name} " in text
        assert text.count("online") >= 2 and "ago" in text  # state and last heartbeat
        # Our jobs over the slots we fill there: a default node's 4 (START_SLOTS), its width.
        assert "ours/slots" in text and "service" in text
        assert text.count(f"/{START_SLOTS} ") >= 2
        assert "ollama" in text

        # Enter drills into a provider; Esc comes back.
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProviderScreen), what="the provider screen")
        await wait_for(pilot, lambda: "uptime" in screen_text(app), what="the provider's stats")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BuyerScreen), what="back on the buyer screen")


async def test_a_map_run_fills_in_as_a_tree_and_a_job_drills_down_to_its_trail(
    market: LocalMarket, repo: Path
) -> None:
    app = buyer_app(market)
    async with app.run_test(size=SIZE) as pilot:
        await attached(pilot, app)
        await pilot.press("3")
        mapping = asyncio.ensure_future(off_loop(lambda: market.cli("map", str(repo), "--json")))
        tree = app.screen.query_one(RunsTree)

        def run_ids() -> list[str]:
            return list(app.buyer_model.runs)

        await wait_for(pilot, lambda: bool(run_ids()), timeout=20, what="the run to appear")
        run_id = run_ids()[-1]
        await wait_for(
            pilot, lambda: f"run {run_id[:12]}" in screen_text(app), what="the run's id in the tree"
        )
        await wait_for(pilot, lambda: tree.leaf_count == len(FILES), timeout=20, what="a leaf per subtask")
        await wait_for(
            pilot,
            lambda: app.buyer_model.run_counts(run_id).get("completed") == len(FILES),
            timeout=30,
            what="every subtask completed",
        )
        await wait_for(
            pilot,
            lambda: f"{len(FILES)}/{len(FILES)}" in screen_text(app) and "✔6 completed" in screen_text(app),
            what="the run's counts per state",
        )
        text = screen_text(app)
        assert "core.py" in text and "app/" in text and "@n" in text  # leaves under folders, with providers
        out = json.loads((await mapping).stdout)
        assert out["run_id"] == run_id and out["completed"] == len(FILES)

        # Every job is in the jobs tab too, and the log tells the story.
        await pilot.press("4")
        jobs = app.screen.query_one(JobsTable)
        await wait_for(
            pilot,
            lambda: (
                sum(1 for k in jobs.shown_keys if app.buyer_model.jobs[k].get("run_id") == run_id)
                == len(FILES)
            ),
            what="the run's jobs in the jobs table",
        )
        await pilot.press("5")
        await wait_for(
            pilot,
            lambda: f"run {run_id[:12]}" in screen_text(app) and "completed" in screen_text(app),
            what="the run in the log",
        )

        # Enter on a subtask opens its telemetry and provenance trail; Esc goes back.
        await pilot.press("3")
        jid = next(iter(app.buyer_model.run_jobs[run_id]))
        await wait_for(pilot, lambda: tree.select_job(jid), what="the subtask's leaf")
        tree.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), what="the job screen")
        await wait_for(pilot, lambda: "end to end" in screen_text(app), what="the job's telemetry")

        def trail_answered() -> bool:  # the chain's verdict, or the reason there is none
            text = screen_text(app)
            return "verified" in text or "trail unavailable" in text

        await wait_for(pilot, trail_answered, timeout=40, what="the provenance trail")
        text = screen_text(app)
        assert jid in text and "completed" in text
        if "trail unavailable" not in text:
            assert "request" in text and "result" in text  # the links, each marked valid or not
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BuyerScreen), what="back on the buyer screen")


async def test_filter_narrows_the_nodes(market: LocalMarket) -> None:
    app = buyer_app(market)
    async with app.run_test(size=SIZE) as pilot:
        await attached(pilot, app)
        await pilot.press("2")
        table = app.screen.query_one(NodesTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="both nodes")
        await pilot.press("slash", "n", "1")
        await wait_for(pilot, lambda: table.row_count == 1, what="the filter to leave one node")
        assert app.buyer_model.nodes[table.shown_keys[0]]["name"] == "n1"
        await pilot.press("escape")
        await wait_for(pilot, lambda: table.row_count == 2, what="Esc to clear the filter")


async def test_ctrl_k_cancels_the_selected_job(market: LocalMarket, fake_ollama: FakeOllama) -> None:
    fake_ollama.delay_s = 60
    app = buyer_app(market)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await attached(pilot, app)
            jid = await submit(market, "slow/cancel_me.py")
            await pilot.press("4")
            jobs = app.screen.query_one(JobsTable)
            await wait_for(pilot, lambda: jobs.select_key(jid), what="the job's row")
            jobs.focus()
            await pilot.press("ctrl+k")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirm dialog")
            assert "cancel_me.py" in screen_text(app)
            await pilot.press("y")

            async def cancelled() -> bool:
                return (await call(market, "buyer", rpc.JobStatusReq(job_id=jid)))["state"] == "cancelled"

            await wait_for(pilot, cancelled, what="the buyer daemon to cancel the job")
            await wait_for(pilot, lambda: "⊘ cancelled" in screen_text(app), what="the row to say cancelled")
    finally:
        fake_ollama.delay_s = 0
        await free_nodes(market)


async def test_ctrl_k_cancels_the_selected_run(
    market: LocalMarket, fake_ollama: FakeOllama, repo: Path
) -> None:
    fake_ollama.delay_s = 60
    app = buyer_app(market)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await attached(pilot, app)
            known = set(app.buyer_model.runs)
            # --fresh: the earlier test mapped this repo, and cached files would send no jobs.
            mapping = asyncio.ensure_future(
                off_loop(lambda: market.cli("map", str(repo), "--fresh", "--json"))
            )
            await pilot.press("3")
            tree = app.screen.query_one(RunsTree)
            await wait_for(
                pilot, lambda: bool(set(app.buyer_model.runs) - known), timeout=20, what="the new run"
            )
            run_id = (set(app.buyer_model.runs) - known).pop()
            await wait_for(pilot, lambda: tree.select_run(run_id), what="the run's node in the tree")
            tree.focus()
            await pilot.press("ctrl+k")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirm dialog")
            await pilot.press("y")

            async def run_over() -> bool:
                runs = (await call(market, "buyer", rpc.RunsReq()))["runs"]
                return any(r["run_id"] == run_id and r["finished"] is not None for r in runs)

            await wait_for(pilot, run_over, timeout=20, what="the buyer daemon to end the cancelled run")
            listing = await call(market, "buyer", rpc.JobListReq(run_id=run_id))
            assert any(j["state"] == "cancelled" for j in listing["jobs"])
            await wait_for(
                pilot, lambda: "cancelled" in screen_text(app), what="cancelled subtasks in the tree"
            )
            assert (await mapping).returncode == 0
    finally:
        fake_ollama.delay_s = 0
        await free_nodes(market)


async def test_b_bans_and_unbans_the_selected_provider(market: LocalMarket) -> None:
    app = buyer_app(market)
    async with app.run_test(size=SIZE) as pilot:
        await attached(pilot, app)
        await pilot.press("2")
        table = app.screen.query_one(NodesTable)
        n1 = next(pk for pk, n in app.buyer_model.nodes.items() if n["name"] == "n1")
        await wait_for(pilot, lambda: table.select_key(n1), what="n1's row")

        async def banned() -> bool:
            nodes = (await call(market, "buyer", rpc.NodesReq()))["nodes"]
            return next(n for n in nodes if n["pubkey"] == n1)["banned"]

        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirm dialog")
        await pilot.press("y")
        await wait_for(pilot, banned, what="the buyer daemon to ban n1")
        await wait_for(pilot, lambda: "banned" in screen_text(app), what="n1 shown as banned")

        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirm dialog")
        await pilot.press("y")

        async def unbanned() -> bool:
            return not await banned()

        await wait_for(pilot, unbanned, what="the buyer daemon to unban n1")


async def test_read_only_hides_and_refuses_the_switches(market: LocalMarket) -> None:
    app = buyer_app(market, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await attached(pilot, app)
        await pilot.press("3")
        await wait_for(pilot, lambda: "READ-ONLY" in screen_text(app), what="the read-only mark")
        footer = screen_text(app).splitlines()[-1]
        assert "Cancel" not in footer and "Stop all" not in footer
        for key in ("S", "ctrl+k", "2", "b"):
            await pilot.press(key)
        await pilot.pause()
        assert isinstance(app.screen, BuyerScreen)  # no confirm dialog ever opened
        assert not (await call(market, "buyer", rpc.StatusReq()))["stopped"]


async def test_capital_s_stops_everything(market: LocalMarket, fake_ollama: FakeOllama) -> None:
    # Last in the module: a stopped buyer takes no new jobs until it restarts.
    fake_ollama.delay_s = 60
    app = buyer_app(market)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await attached(pilot, app)
            jid = await submit(market, "slow/stop_me.py")
            await pilot.press("S")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirm dialog")
            assert "STOP EVERYTHING" in screen_text(app)
            await pilot.press("y")

            async def stopped() -> bool:
                return (await call(market, "buyer", rpc.StatusReq()))["stopped"]

            await wait_for(pilot, stopped, what="the buyer daemon to stop")
            assert (await call(market, "buyer", rpc.JobStatusReq(job_id=jid)))["state"] == "cancelled"
            await wait_for(pilot, lambda: "BUYER STOPPED" in screen_text(app), what="the stopped banner")
    finally:
        fake_ollama.delay_s = 0
        await free_nodes(market)
