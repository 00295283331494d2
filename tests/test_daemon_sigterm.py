"""SIGTERM (what systemd, launchd and `pylon up`'s Ctrl-C send) drains a node: the job it is
running finishes, its result is accepted and the node exits 0. The buyer exits 0 too.

The node's model is the loopback fake of Ollama's API (Ollama cannot be installed here), slowed
to 2 s a chat, so the job is still running when the signal arrives."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from faults_support import jobs, node_pubkey, wait_for
from ollama_fake import FakeOllama
from pylon.schemas import rpc

from pylon.localmarket.launcher import LocalMarket

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("fork_nodes", [False, True], ids=["subprocess", "forked"])
def test_sigterm_drains_the_running_job_then_exits_0(tmp_path: Path, fork_nodes: bool) -> None:
    with FakeOllama(delay_s=2.0) as fake:
        m = LocalMarket(
            home=tmp_path / "home",
            nodes=1,
            memory_relay=True,
            fork_nodes=fork_nodes,
            node_args=["--executor", "ollama", "--ollama-host", fake.url],
        )
        try:
            m.start(timeout=60)
            job_id = m.call("buyer", rpc.SubmitReq(path="a.py", text="def a():\n    return 1\n"))["job_id"]
            wait_for("the node running the job", lambda: len(fake.chat_requests) >= 1, 30)
            node = m.procs["node-n0"].popen
            assert node is not None
            node.send_signal(signal.SIGTERM)
            assert node.wait(timeout=30) == 0

            def completed() -> dict | None:
                return next((j for j in jobs(m) if j["job_id"] == job_id and j["state"] == "completed"), None)

            job = wait_for("the job completed", completed, 30)
            assert job["provider_pubkey"] == node_pubkey(m, "n0")
            buyer = m.procs["buyer"].popen
            assert buyer is not None
            buyer.send_signal(signal.SIGTERM)
            assert buyer.wait(timeout=30) == 0
        finally:
            m.stop()
