"""Abuse limits on real processes: a node's per-buyer token bucket (rate_limited feedback), the
allow-lists on both sides (a node answers a stranger with silence), and the buyer's cap on
outstanding jobs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pylon.schemas import rpc

from pylon.keys import NostrKeys, load_or_create_keys
from pylon.localmarket.launcher import LocalMarket

pytestmark = pytest.mark.integration


def items(n: int, tag: str) -> list[rpc.SubmitItem]:
    return [rpc.SubmitItem(path=f"{tag}{i}.py", text=f"def {tag}{i}():\n    return {i}\n") for i in range(n)]


def wait_jobs(m: LocalMarket, ids: list[str], timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sts = [m.call("buyer", rpc.JobStatusReq(job_id=i)) for i in ids]
        if all(s["state"] in ("completed", "failed", "cancelled") for s in sts):
            return sts
        time.sleep(0.2)
    raise TimeoutError("jobs did not finish")


def test_node_rate_limit_answers_rate_limited(tmp_path: Path) -> None:
    m = LocalMarket(
        home=tmp_path / "h",
        nodes=1,
        memory_relay=True,
        node_args=["--rate", "0.01", "--burst", "3"],
        buyer_args=["--pickup-timeout", "5"],
    )
    try:
        m.start(timeout=60)
        res = m.call("buyer", rpc.SubmitManyReq(items=items(8, "r")))
        sts = wait_jobs(m, res["job_ids"])
        completed = [s for s in sts if s["state"] == "completed"]
        limited = [s for s in sts if s["error"] == "rate_limited"]
        assert len(completed) == 3 and len(limited) == 5
        assert m.call("n0", rpc.StatusReq())["dropped"].get("rejected_rate_limited", 0) >= 5
    finally:
        m.stop()


def test_allow_lists_on_node_and_buyer(tmp_path: Path) -> None:
    stranger = NostrKeys.generate().pubkey
    m = LocalMarket(home=tmp_path / "h", nodes=2, memory_relay=True)
    try:
        m.start_relay()
        m.start_node("n0")
        m.start_node("n1")
        deadline = time.monotonic() + 30
        keyfiles = [m.home / "nodes" / n / "nostr.key" for n in ("n0", "n1")]
        while not all(k.exists() for k in keyfiles) and time.monotonic() < deadline:
            time.sleep(0.05)
        n1 = load_or_create_keys(keyfiles[1]).pubkey
        m.buyer_args = ["--allow-node", n1]
        m.start_buyer()
        m.wait_ready(nodes=2)
        res = m.call("buyer", rpc.SubmitManyReq(items=items(10, "a")))
        sts = wait_jobs(m, res["job_ids"])
        assert {s["provider_pubkey"] for s in sts} == {n1}
        assert all(s["state"] == "completed" for s in sts)
    finally:
        m.stop()

    # A buyer the node's allow-list does not know gets no signed answer at all (issue 10: a
    # reject must not cost the node a signature for a stranger); it is counted, and the buyer's
    # own pickup timeout fails the jobs.
    m2 = LocalMarket(
        home=tmp_path / "h2",
        nodes=1,
        memory_relay=True,
        node_args=["--allow-buyer", stranger],
        buyer_args=["--pickup-timeout", "2"],
    )
    try:
        m2.start(timeout=60)
        res = m2.call("buyer", rpc.SubmitManyReq(items=items(2, "b")))
        sts = wait_jobs(m2, res["job_ids"])
        assert all(s["state"] == "failed" and s["error"] != "rate_limited" for s in sts), sts
        assert m2.call("n0", rpc.StatusReq())["dropped"]["buyer_not_allowed"] >= 2
    finally:
        m2.stop()


def test_buyer_caps_outstanding_jobs(tmp_path: Path) -> None:
    # The node wants proof of work the buyer does not do, so the jobs stay outstanding.
    m = LocalMarket(
        home=tmp_path / "h",
        nodes=1,
        memory_relay=True,
        node_args=["--min-pow", "30"],
        buyer_args=["--max-outstanding", "2", "--pickup-timeout", "30"],
    )
    try:
        m.start(timeout=60)
        res = m.call("buyer", rpc.SubmitManyReq(items=items(3, "c")))
        assert res["job_ids"][0] and res["job_ids"][1] and res["job_ids"][2] is None
        assert res["errors"][0]["code"] == "rate_limited" and "cap" in res["errors"][0]["message"]
        out = m.cli("job", "submit", "repo-file", "--input", __file__)
        assert out.returncode != 0 and "rate_limited" in out.stderr
    finally:
        m.stop()
