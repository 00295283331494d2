"""A local market is ready when its nodes are online *and* have started their parse workers:
twenty nodes on one box warming up while the first jobs run spent those jobs' CPU starting
interpreters (bench/loop.py at 20 nodes: 130 jobs/s, 610 once they were warm)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from pylon.schemas import rpc

from pylon.localmarket.launcher import LocalMarket, Proc
from pylon.rpc.client import DaemonNotRunning


class Running:
    def poll(self) -> None:
        return None


class Warming(LocalMarket):
    """Nodes that answer `warming` for their first few status calls; n2 has no socket."""

    def __init__(self, home: Path, polls: dict[str, int]) -> None:
        super().__init__(home=home, nodes=3)
        self.polls = polls
        self.calls: list[str] = []
        for name in self.node_names():
            self.procs[f"node-{name}"] = Proc(name=f"node-{name}", argv=[], popen=Running())  # type: ignore[arg-type]

    def call(self, target: str, req: rpc.Request, timeout: float = 30) -> Any:
        self.calls.append(target)
        if target not in self.polls:
            raise DaemonNotRunning(target)
        self.polls[target] -= 1
        return {"warming": self.polls[target] >= 0}


def test_ready_waits_for_warm_nodes_and_not_for_silent_ones(tmp_path: Path) -> None:
    m = Warming(tmp_path, {"n0": 3, "n1": 1})
    m._wait_warm(time.monotonic() + 30)
    assert m.polls == {"n0": -1, "n1": -1}  # asked until each said it was warm, no further
    assert m.calls.count("n2") == 1  # a node that does not answer is not waited for


def test_warming_is_waited_for_no_longer_than_the_deadline(tmp_path: Path) -> None:
    m = Warming(tmp_path, {"n0": 10**9, "n1": 10**9, "n2": 10**9})
    t0 = time.monotonic()
    m._wait_warm(t0 + 0.5)
    assert time.monotonic() - t0 < 10
    assert all(v > 0 for v in m.polls.values())


@pytest.mark.integration
def test_start_returns_with_every_node_warm(tmp_path: Path) -> None:
    m = LocalMarket(home=tmp_path / "home", nodes=3, memory_relay=True)
    try:
        m.start(timeout=90)
        statuses = [m.call(name, rpc.StatusReq()) for name in m.node_names()]
        assert [s["warming"] for s in statuses] == [False, False, False]
    finally:
        m.stop()
