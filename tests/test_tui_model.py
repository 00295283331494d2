"""The TUI's data side without a screen: the models that coalesce pushes, the connection loop's
reconnect with backoff, and the command line."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pylon.schemas import rpc
from pylon.tui.app import parse_args
from pylon.tui.canned import canned_client
from pylon.tui.feeds import BuyerFeed, NodeFeed
from pylon.tui.link import Link, LinkState
from pylon.tui.model import RATE_BUCKET_S, BuyerModel, NodeModel
from pylon.tui.source import CannedClient, RpcSource

from pylon.rpc.client import DaemonNotRunning, RpcError


class Clock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def job(jid: str, state: str, **kw: Any) -> dict[str, Any]:
    return {
        "job_id": jid,
        "run_id": kw.pop("run_id", None),
        "path": kw.pop("path", f"{jid}.py"),
        "state": state,
        "provider_pubkey": kw.pop("provider", None),
        "error": None,
        "end_to_end": None,
        "attempts": 1,
        "paid": False,
        **kw,
    }


# --- the buyer model ---------------------------------------------------------------------------


def test_job_pushes_coalesce_into_one_change_per_job() -> None:
    m = BuyerModel(Clock())
    for state in ("assigned", "processing", "completed"):
        m.apply("jobs", [job("j1", state), job("j2", state)])
    changes = m.job_changes.take()
    assert changes.keys == {"j1", "j2"}  # three pushes each, one redraw each
    assert m.jobs["j1"]["state"] == "completed"
    assert not m.job_changes.take()  # taking clears


def test_a_finished_job_never_goes_back() -> None:
    m = BuyerModel(Clock())
    m.apply("jobs", [job("j1", "completed", end_to_end=0.2)])
    m.set_jobs([job("j1", "processing")])  # the database trails the pushes by a flush
    m.apply("jobs", [job("j1", "assigned")])  # a push queued before the list was read
    assert m.jobs["j1"]["state"] == "completed"
    assert m.jobs["j1"]["end_to_end"] == 0.2


def test_jobs_are_filed_under_their_run_and_an_unknown_run_asks_for_a_refresh() -> None:
    m = BuyerModel(Clock())
    m.apply(
        "jobs", [job("a", "assigned", run_id="r1"), job("b", "completed", run_id="r1"), job("c", "failed")]
    )
    assert list(m.run_jobs["r1"]) == ["a", "b"]
    assert m.runs_stale  # we saw a run id without its RunInfo
    m.set_runs(
        [
            {
                "run_id": "r1",
                "repo": "/src/x",
                "files": 2,
                "completed": 1,
                "failed": 0,
                "started": 5.0,
                "finished": None,
            }
        ]
    )
    assert not m.runs_stale
    assert m.run_counts("r1") == {"assigned": 1, "completed": 1}
    assert m.runs["r1"]["repo"] == "/src/x"


def test_run_progress_pushes_update_the_run() -> None:
    m = BuyerModel(Clock())
    m.set_runs(
        [
            {
                "run_id": "r1",
                "repo": "/src/x",
                "files": 4,
                "completed": 0,
                "failed": 0,
                "started": 5.0,
                "finished": None,
            }
        ]
    )
    m.run_changes.take()
    m.apply("run", {"run_id": "r1", "files": 4, "completed": 3, "failed": 1})
    assert m.run_changes.take().keys == {"r1"}
    assert (m.runs["r1"]["completed"], m.runs["r1"]["failed"]) == (3, 1)
    m.apply("run", {"run_id": "r1", "files": 4, "completed": 3, "failed": 1})
    assert not m.run_changes.take()  # nothing new, nothing to redraw


def test_nodes_log_their_state_changes_and_removals() -> None:
    m = BuyerModel(Clock())
    n0 = {"pubkey": "p0", "name": "n0", "state": "online", "online": True, "banned": False}
    m.set_nodes([n0, {**n0, "pubkey": "p1", "name": "n1"}])
    m.take_log()
    m.node_changes.take()
    m.set_nodes([{**n0, "state": "paused"}])
    changes = m.node_changes.take()
    assert changes.keys == {"p0"} and changes.removed == {"p1"}
    assert any("n0" in line and "paused" in line for line in m.take_log())


def test_the_rate_sparkline_counts_completions_per_bucket() -> None:
    clock = Clock(1_000.0)
    m = BuyerModel(clock)
    m.apply("jobs", [job(f"j{i}", "completed") for i in range(3)])
    clock.t += RATE_BUCKET_S
    assert m.roll_rate()
    assert m.rate_history[-1] == 3 * 60 / RATE_BUCKET_S  # jobs/min over that bucket
    clock.t += 3 * RATE_BUCKET_S  # three quiet buckets end
    assert m.roll_rate()
    assert list(m.rate_history)[-4:] == [3 * 60 / RATE_BUCKET_S, 0.0, 0.0, 0.0]
    assert not m.roll_rate()  # the same bucket: nothing moves


def test_completions_are_summed_in_the_log_not_listed() -> None:
    m = BuyerModel(Clock())
    m.apply("jobs", [job(f"j{i}", "completed") for i in range(40)] + [job("bad", "failed", error="timeout")])
    lines = m.take_log()
    assert sum("completed" in line for line in lines) == 1
    assert any("+40 completed" in line for line in lines)
    assert any("bad.py" in line and "failed" in line for line in lines)


# --- the node model ----------------------------------------------------------------------------


def test_node_job_pushes_get_times_and_never_regress() -> None:
    clock = Clock(50.0)
    m = NodeModel(clock)
    m.apply("job", {"job_id": "j", "path": "a.py", "state": "queued", "buyer": "b", "error": None})
    clock.t = 51.0
    m.apply("job", {"job_id": "j", "path": "a.py", "state": "running", "buyer": "b", "error": None})
    clock.t = 52.5
    m.apply("job", {"job_id": "j", "path": "a.py", "state": "completed", "buyer": "b", "error": None})
    m.set_jobs(
        [
            {
                "job_id": "j",
                "buyer": "b",
                "path": "a.py",
                "state": "running",
                "received": 50.0,
                "started": 51.0,
                "finished": None,
                "error": None,
                "paid_msats": 0,
            }
        ]
    )
    j = m.jobs["j"]
    assert (j["state"], j["received"], j["started"], j["finished"]) == ("completed", 50.0, 51.0, 52.5)
    assert m.active_jobs() == []


def test_node_state_pushes_keep_the_last_earnings_figure() -> None:
    m = NodeModel(Clock())
    m.set_status({"name": "n0", "state": "online", "earned_msats": 7000})
    m.apply("node_state", {"name": "n0", "state": "paused", "earned_msats": 0})
    assert m.status is not None
    assert (m.status["state"], m.status["earned_msats"]) == ("paused", 7000)


# --- the connection loop -----------------------------------------------------------------------


class FlakySource:
    """Refuses `down` connects, then hands out canned clients; `drop()` ends the current session."""

    label = "flaky"
    kind_hint = "node"

    def __init__(self, down: int) -> None:
        self.down = down
        self.connects = 0
        self.client: CannedClient | None = None

    async def connect(self) -> CannedClient:
        self.connects += 1
        if self.connects <= self.down:
            raise DaemonNotRunning("node daemon 'n0' is not running")
        self.client = canned_client("node")
        return self.client


@pytest.mark.anyio
async def test_link_retries_with_backoff_then_loads_and_reconnects_after_a_drop() -> None:
    source = FlakySource(down=3)
    model = NodeModel(Clock())
    states: list[LinkState] = []
    connected = anyio.Event()

    def on_state(s: LinkState) -> None:
        states.append(s)
        if s.connected:
            connected.set()

    link = Link(source, feed_for=lambda w: NodeFeed(model), on_state=on_state, backoff=(0.01, 0.02, 0.04))
    async with anyio.create_task_group() as tg:
        tg.start_soon(link.run)
        with anyio.fail_after(5):
            await connected.wait()
        down = [s for s in states if not s.connected]
        assert [s.retry_in for s in down] == [0.01, 0.02, 0.04]  # doubling, capped at the last step
        assert [s.attempts for s in down] == [1, 2, 3]
        assert "not running" in down[0].reason
        assert model.status is not None and model.status["name"] == "n0"  # the full load ran
        assert len(model.jobs) == 17

        # The daemon goes away: the link says so, keeps the model, and comes back by itself.
        connected = anyio.Event()
        before = len(states)
        assert source.client is not None
        await source.client.aclose()
        with anyio.fail_after(5):
            await connected.wait()
        lost = states[before]
        assert not lost.connected and lost.ever_connected and lost.lost_at is not None
        assert model.status["name"] == "n0"
        assert source.connects == 5
        tg.cancel_scope.cancel()


class DiesMidLoad(NodeFeed):
    """The daemon answers the status, then is killed before the rest of the first load."""

    async def load(self, call: Any) -> None:
        await self.poll_status(call)
        raise OSError("connection reset by peer")


@pytest.mark.anyio
async def test_a_daemon_that_dies_while_the_first_picture_loads_went_away() -> None:
    # Seen in CI under load: the node's state was on screen, the node was killed before the
    # first load ended, and the bar said "not reachable" (25 tries) instead of "went away".
    model = NodeModel(Clock())
    states: list[LinkState] = []
    dropped = anyio.Event()

    def on_state(s: LinkState) -> None:
        states.append(s)
        if not s.connected and s.lost_at is not None:
            dropped.set()

    link = Link(
        FlakySource(down=0), feed_for=lambda w: DiesMidLoad(model), on_state=on_state, backoff=(0.01,)
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(link.run)
        with anyio.fail_after(5):
            await dropped.wait()
        tg.cancel_scope.cancel()
    assert model.status is not None and model.status["name"] == "n0"  # the picture it showed
    lost = next(s for s in states if s.lost_at is not None)
    assert lost.ever_connected and not lost.connected


class SlowFirstLoad(NodeFeed):
    """The node's state loads, then the rest of the first picture waits until `rest` is set."""

    def __init__(self, model: NodeModel, rest: anyio.Event, shown: anyio.Event) -> None:
        super().__init__(model)
        self.rest = rest
        self.shown = shown

    async def load(self, call: Any) -> None:
        await self.poll_status(call)
        self.shown.set()
        await self.rest.wait()
        await self.poll_jobs(call)


@pytest.mark.anyio
async def test_a_switch_pressed_while_the_first_picture_loads_reaches_the_daemon() -> None:
    # Seen in CI under load: ONLINE was on screen, `p` was pressed before the node's jobs had
    # loaded, and the pause failed as "not connected" although the daemon had answered.
    model = NodeModel(Clock())
    rest, shown = anyio.Event(), anyio.Event()
    link = Link(
        FlakySource(down=0), feed_for=lambda w: SlowFirstLoad(model, rest, shown), on_state=lambda s: None
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(link.run)
        with anyio.fail_after(5):
            await shown.wait()
        assert not link.connected  # the picture is not whole yet
        status = await link.call(rpc.StatusReq())
        assert status["name"] == "n0"
        rest.set()
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_link_calls_fail_cleanly_while_disconnected() -> None:
    link = Link(FlakySource(down=10**6), feed_for=lambda w: NodeFeed(NodeModel()), on_state=lambda s: None)
    with pytest.raises(RpcError) as err:
        await link.call(rpc.StatusReq())
    assert err.value.code == "closed"


@pytest.mark.anyio
async def test_buyer_feed_loads_everything_and_tolerates_a_buyer_without_runs() -> None:
    client = canned_client("buyer")
    del client.answers[rpc.RunsReq]  # a buyer without the map coordinator answers unknown_method
    model = BuyerModel(Clock())
    feed = BuyerFeed(model)

    async def call(req: rpc.Request, timeout: float | None = None) -> Any:
        return await client.call(req)

    await feed.load(call)
    assert model.status is not None and model.stats is not None
    assert len(model.nodes) == 8 and len(model.jobs) == 17
    assert set(model.runs) == {"a1" * 32, "c3" * 32}  # known from the jobs alone


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio, so the TUI's loop only ever does


# --- the command line --------------------------------------------------------------------------


def test_command_line_targets() -> None:
    assert parse_args(["buyer"]).target == "buyer"
    args = parse_args(["node", "n3", "--read-only"])
    assert (args.target, args.name, args.read_only) == ("node", "n3", True)
    assert parse_args([]).target == "buyer"
    assert parse_args(["--socket", "/tmp/x/node-a.sock"]).socket.name == "node-a.sock"
    for bad in (["node"], ["buyer", "extra"], ["buyer", "--socket", "/tmp/s.sock"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_socket_kinds_are_guessed_from_the_name(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PYLON_HOME", str(tmp_path))
    assert RpcSource.for_target("buyer").kind_hint == "buyer"
    assert RpcSource.for_target("node:n1").path == tmp_path / "run" / "node-n1.sock"
    assert RpcSource.for_target("node:n1").kind_hint == "node"
    assert RpcSource(tmp_path / "custom.sock").kind_hint is None
