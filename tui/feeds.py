"""What to ask each kind of daemon for, and where the answers go (see link.Feed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pylon.schemas import rpc
from pylon.tui.link import Call
from pylon.tui.model import BuyerModel, NodeModel

from pylon.rpc.client import RpcError

STATS_EVERY_S = 2.0
RUNS_EVERY_S = 1.0
RUNS_REFRESH_S = 5.0
NODE_STATUS_EVERY_S = 3.0
NODE_JOBS_EVERY_S = 5.0
WALLET_EVERY_S = 10.0
NODE_JOBS_LIMIT = 200


class BuyerFeed:
    topics = ["jobs", "nodes", "status", "run", "ask"]

    def __init__(self, model: BuyerModel) -> None:
        self.model = model
        self._runs_age = 0.0

    async def load(self, call: Call) -> None:
        m = self.model
        m.set_status(await call(rpc.StatusReq()))
        m.set_nodes((await call(rpc.NodesReq()))["nodes"])
        await self._load_runs(call)
        m.set_jobs((await call(rpc.JobListReq(), timeout=30))["jobs"])
        try:
            for ask in (await call(rpc.AsksReq()))["asks"]:
                m.apply_ask(ask)
        except RpcError as exc:
            if exc.code != "unknown_method":  # a buyer without the ask coordinator has no asks
                raise
        await self.poll_stats(call)

    async def _load_runs(self, call: Call) -> None:
        try:
            runs = (await call(rpc.RunsReq()))["runs"]
        except RpcError as exc:
            if exc.code != "unknown_method":  # a buyer without the map coordinator has no runs
                raise
            runs = []
        self.model.set_runs(runs)

    def apply(self, topic: str, data: Any) -> None:
        self.model.apply(topic, data)

    async def poll_stats(self, call: Call) -> None:
        self.model.set_stats(await call(rpc.StatsReq()))

    async def poll_runs(self, call: Call) -> None:
        # A run we only know from a push (or one still going) needs its RunInfo; otherwise
        # the list changes only when a run starts or ends, which the pushes tell us about.
        self._runs_age += RUNS_EVERY_S
        active = any(r.get("finished") is None for r in self.model.runs.values())
        if self.model.runs_stale or (active and self._runs_age >= RUNS_REFRESH_S):
            self._runs_age = 0.0
            await self._load_runs(call)

    def polls(self) -> list[tuple[float, Callable[[Call], Awaitable[None]]]]:
        return [(STATS_EVERY_S, self.poll_stats), (RUNS_EVERY_S, self.poll_runs)]


class NodeFeed:
    topics = ["job", "node_state"]

    def __init__(self, model: NodeModel) -> None:
        self.model = model
        self.wallet_supported = True

    async def load(self, call: Call) -> None:
        await self.poll_status(call)
        await self.poll_jobs(call)
        await self.poll_wallet(call)

    def apply(self, topic: str, data: Any) -> None:
        self.model.apply(topic, data)

    async def poll_status(self, call: Call) -> None:
        self.model.set_status(await call(rpc.StatusReq()))

    async def poll_jobs(self, call: Call) -> None:
        self.model.set_jobs((await call(rpc.NodeJobsReq(limit=NODE_JOBS_LIMIT)))["jobs"])

    async def poll_wallet(self, call: Call) -> None:
        if not self.wallet_supported:
            return
        try:
            self.model.set_wallet(await call(rpc.WalletBalanceReq()))
        except RpcError as exc:
            if exc.code == "closed":
                raise
            if exc.code == "unknown_method":
                self.wallet_supported = False
                self.model.set_wallet(None, "no wallet on this node (payments not enabled)")
            else:
                self.model.set_wallet(self.model.wallet, f"wallet: {exc.message}")

    def polls(self) -> list[tuple[float, Callable[[Call], Awaitable[None]]]]:
        return [
            (NODE_STATUS_EVERY_S, self.poll_status),
            (NODE_JOBS_EVERY_S, self.poll_jobs),
            (WALLET_EVERY_S, self.poll_wallet),
        ]
