"""Churn on real processes: nodes killed with SIGKILL or frozen mid-job, the LMDB relay killed
and restarted on its port, the buyer killed mid-run. Every job still ends with exactly one
accepted result, and every failed attempt is on the record with its reason."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest
from faults_support import (
    SUPERSEDED,
    TERMINAL,
    BackgroundCli,
    accepted_results_per_job,
    attempts,
    jobs,
    make_repo,
    node_pubkey,
    relay_query,
    wait_for,
)
from pylon.schemas import kinds, rpc

from pylon.localmarket.launcher import LocalMarket
from pylon.nostr.filters import Filter
from pylon.nostr.heartbeat import parse_heartbeat
from pylon.rpc.client import RpcClient

pytestmark = pytest.mark.integration

FAST = ["--pickup-timeout", "3", "--result-timeout", "8"]
FAILED_ATTEMPT = {"provider_offline", "timeout"}


def submit_many(m: LocalMarket, n: int, prefix: str) -> list[str]:
    """n small files through one RPC connection, as fast as the buyer takes them."""

    async def go() -> list[str]:
        client = await RpcClient.connect(m.socket_of("buyer"))
        try:
            out = []
            for i in range(n):
                res = await client.call(
                    rpc.SubmitReq(
                        path=f"{prefix}/f{i}.py", text=f"def f{i}():\n    return {i}\n", language="python"
                    ),
                    timeout=30,
                )
                out.append(res["job_id"])
            return out
        finally:
            await client.aclose()

    return anyio.run(go)


def wait_terminal(m: LocalMarket, ids: list[str], timeout: float) -> dict[str, dict]:
    want = set(ids)

    def done() -> dict[str, dict] | None:
        st = {j["job_id"]: j for j in jobs(m) if j["job_id"] in want}
        return st if len(st) == len(want) and all(j["state"] in TERMINAL for j in st.values()) else None

    return wait_for(f"{len(ids)} jobs terminal", done, timeout, 0.1)


def dropped(m: LocalMarket, target: str = "buyer") -> dict[str, int]:
    return m.call(target, rpc.StatusReq())["dropped"]


def test_killed_and_frozen_nodes(tmp_path: Path) -> None:
    """n0 is killed (-9) and n1 frozen (SIGSTOP) just as jobs are assigned to them: their jobs are
    re-issued to live nodes after the pickup timeout, the attempts are recorded against them as
    provider_offline/timeout, and when n1 thaws its late results are dropped, not accepted twice."""
    m = LocalMarket(home=tmp_path / "home", nodes=4, memory_relay=True, heartbeat_s=1.0, buyer_args=FAST)
    try:
        m.start(timeout=60)
        dead, frozen = node_pubkey(m, "n0"), node_pubkey(m, "n1")
        m.kill("node-n0", signal.SIGKILL)
        m.procs["node-n1"].popen.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        # The buyer still counts both online (heartbeats are 1 s apart; online = 3 intervals), so
        # some of these go to them.
        ids = submit_many(m, 40, "churn")
        first = {j["job_id"]: j["provider_pubkey"] for j in jobs(m)}
        stranded = {jid for jid, pk in first.items() if pk in (dead, frozen)}
        assert stranded, "no job went to the dead or frozen node; the test proves nothing"
        on_frozen = {jid for jid in stranded if first[jid] == frozen}

        states = wait_terminal(m, ids, 60)
        assert Counter(s["state"] for s in states.values()) == {"completed": 40}
        assert not {s["provider_pubkey"] for s in states.values()} & {dead, frozen}

        atts = attempts(m)
        # Each stranded job left a closed attempt there: failed, or moved away (superseded) while
        # it still sat in the node's queue. A job re-issued from one of them may have gone to the
        # other (it still counts online for up to 3 intervals); no other job went there.
        off = [(jid, node, outcome, error) for _, jid, node, outcome, error in atts if node in (dead, frozen)]
        assert {jid for jid, *_ in off} == stranded
        assert all(o == "failed" and e in FAILED_ATTEMPT | {SUPERSEDED} for _, _, o, e in off), off
        bad = [(node, o, e) for _, node, o, e in off if e != SUPERSEDED]
        assert bad, "every stranded job was moved before its node was judged lost; nothing was lost"
        reissued = Counter(jid for _, jid, *_ in atts)
        assert all(reissued[j] >= 2 for j in stranded)

        dead_stats = json.loads(m.cli("stats", "--provider", dead, "--json").stdout)
        assert sum(dead_stats["failure_reasons"].values()) == sum(1 for b in bad if b[0] == dead)
        assert set(dead_stats["failure_reasons"]) <= FAILED_ATTEMPT and dead_stats["completed"] == 0

        # Thaw n1: the buyer told it to drop what was re-issued; what it still works off (a
        # cancel read after the job finished) publishes results nobody wants any more.
        m.procs["node-n1"].popen.send_signal(signal.SIGCONT)  # type: ignore[union-attr]

        def settled() -> bool:
            st = m.call("n1", rpc.StatusReq())
            handled = st["completed"] + st["dropped"].get("cancelled_by_buyer", 0)
            return st["running"] == 0 and st["queued"] == 0 and handled >= len(on_frozen)

        if on_frozen:
            wait_for("the thawed node settles", settled, 30)
        per_job = accepted_results_per_job(m)
        assert set(per_job) == set(ids) and set(per_job.values()) == {1}
        after = {jid: m.call("buyer", rpc.JobStatusReq(job_id=jid)) for jid in on_frozen}
        assert all(t["provider_pubkey"] != frozen and t["state"] == "completed" for t in after.values())
    finally:
        m.stop()


def test_relay_restart_keeps_events_and_daemons_reconnect(tmp_path: Path) -> None:
    """The LMDB relay is killed (-9) and restarted on the same port: what it had acknowledged is
    still there, jobs submitted while it was down go out from the outbox and complete, and the
    daemons' subscriptions come back."""
    m = LocalMarket(home=tmp_path / "home", nodes=2, memory_relay=False, heartbeat_s=1.0, buyer_args=FAST)
    try:
        m.start(timeout=60)
        before = submit_many(m, 10, "before")
        wait_terminal(m, before, 30)
        kept = {m.call("buyer", rpc.JobStatusReq(job_id=j))["result_id"] for j in before}

        m.kill("relay", signal.SIGKILL)
        during = submit_many(m, 10, "during")  # the relay is down: into the outbox
        m.start_relay()
        after = submit_many(m, 10, "after")

        states = wait_terminal(m, before + during + after, 60)
        assert all(s["state"] == "completed" for s in states.values()), Counter(
            s["state"] for s in states.values()
        )
        results = {m.call("buyer", rpc.JobStatusReq(job_id=j))["result_id"] for j in before + during + after}
        on_relay = relay_query(m.relay_url, [Filter(ids=sorted(results), kinds=[kinds.JOB_RESULT])])
        assert {e.id for e in on_relay} == results
        assert kept <= {e.id for e in on_relay}
        requests = relay_query(m.relay_url, [Filter(ids=before + during + after)])
        assert {e.id for e in requests} == set(before + during + after)
        assert set(accepted_results_per_job(m).values()) == {1}
        for name in ("n0", "n1"):
            assert m.procs[f"node-{name}"].alive()
    finally:
        m.stop()


def test_nodes_heartbeat_as_soon_as_a_restarted_relay_is_back(tmp_path: Path) -> None:
    """After a relay restart each node is heard again within a reconnect, not an interval: the
    buyer judges the swarm again only once news flows, so a node that waited for its next beat
    stretched every outage by up to one interval. The interval here is 60 s."""
    m = LocalMarket(home=tmp_path / "home", nodes=2, memory_relay=False, heartbeat_s=60.0)
    try:
        m.start(timeout=60)
        pubkeys = [node_pubkey(m, name) for name in ("n0", "n1")]
        m.kill("relay", signal.SIGKILL)
        killed_ms = int(time.time() * 1000)
        m.start_relay()

        def beaten_since_the_kill() -> bool:
            beats = relay_query(m.relay_url, [Filter(kinds=[kinds.HEARTBEAT], authors=pubkeys)], timeout=5)
            fresh = {ev.pubkey for ev in beats if parse_heartbeat(ev).sent_ms > killed_ms}
            return fresh == set(pubkeys)

        wait_for("a heartbeat from each node after the restart", beaten_since_the_kill, 20, 0.2)
    finally:
        m.stop()


def test_buyer_killed_mid_run_resumes(tmp_path: Path) -> None:
    """The buyer is killed (-9) during a 60-file map; started again it picks the run up from
    SQLite and the relay, finishes it and writes the artifacts. The `pylon map` that lost it
    waits for it, follows the run to its end and prints the run's summary."""
    m = LocalMarket(home=tmp_path / "home", nodes=3, memory_relay=False, heartbeat_s=1.0, buyer_args=FAST)
    try:
        m.start(timeout=60)
        repo = make_repo(tmp_path / "repo", 60)
        out = tmp_path / "out"
        bg = BackgroundCli(m, "map", str(repo), "--json", "--out", str(out))
        wait_for("first result", lambda: any(j["state"] == "completed" for j in jobs(m)), 60, 0.02)
        m.kill("buyer", signal.SIGKILL)
        killed_at = time.time()
        assert bg.proc.poll() is None  # the CLI waits for its buyer to come back
        m.start_buyer()

        def finished() -> dict | None:
            runs = m.call("buyer", rpc.RunsReq())["runs"]
            return runs[0] if runs and runs[0]["finished"] else None

        run = wait_for("resumed run finished", finished, 90, 0.2)
        assert run["finished"] > killed_at
        assert run["files"] == 60 and run["completed"] == 60 and run["failed"] == 0
        repo_map = json.loads((out / "repo_map.json").read_text())
        assert len(repo_map["files"]) == 60
        run_jobs = jobs(m, run["run_id"])
        assert all(j["state"] == "completed" for j in run_jobs)
        assert len({j["path"] for j in run_jobs}) == 60
        assert set(accepted_results_per_job(m).values()) == {1}

        assert bg.wait(60) == 0, bg.err
        assert "lost the buyer mid-run" in bg.err
        summary = json.loads(bg.out)
        assert summary["run_id"] == run["run_id"] and summary["resumed"] is True
        assert (summary["files"], summary["completed"], summary["failed"]) == (60, 60, 0)
        assert 1 <= summary["providers"] <= 3
        assert summary["artifacts"]["repo_map"] == str(out / "repo_map.json")
        assert set(summary["artifacts"]) == {"repo_map", "repo_map_md", "overview", "index"}
    finally:
        m.stop()
