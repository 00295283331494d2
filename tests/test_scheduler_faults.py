"""Failure noticed in seconds and backups for stragglers, on real processes with model latency
(tests/ollama_fake.py). Assertions are on attempts and their reasons, never on wall time: a node
killed -9 or frozen mid-job loses its jobs by missed heartbeats (`provider_offline`), not by the
60 s result timeout, and a straggler's backup copy wins while its twin is told to stop."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest
from faults_support import (
    SUPERSEDED,
    BackgroundCli,
    accepted_results_per_job,
    attempts,
    jobs,
    make_repo,
    node_pubkey,
    wait_for,
)
from ollama_fake import FakeOllama
from pylon.schemas import rpc

from pylon.localmarket.launcher import LocalMarket

pytestmark = pytest.mark.integration


def running_on(m: LocalMarket, name: str) -> int:
    return m.call(name, rpc.StatusReq())["running"]


def test_killed_and_frozen_mid_job_lose_their_jobs_by_heartbeat(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 16)
    with FakeOllama(delay_s=2.0) as fake:
        m = LocalMarket(
            home=tmp_path / "home",
            nodes=4,
            memory_relay=True,
            heartbeat_s=1.0,
            node_args=["--executor", "ollama", "--ollama-host", fake.url, "--concurrency", "2"],
        )
        try:
            m.start(timeout=90)
            dead, frozen = node_pubkey(m, "n0"), node_pubkey(m, "n1")
            run = BackgroundCli(m, "map", str(repo), "--out", str(tmp_path / "out"), "--json")
            wait_for("n0 and n1 busy", lambda: running_on(m, "n0") and running_on(m, "n1"), 60)
            m.kill("node-n0", signal.SIGKILL)
            m.procs["node-n1"].popen.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
            assert run.wait(timeout=120) == 0, run.err[-2000:]
            summary = json.loads(run.out)
            assert summary["completed"] == 16 and summary["failed"] == 0

            atts = attempts(m)
            lost = [(node, outcome, error) for _, _, node, outcome, error in atts if node in (dead, frozen)]
            failed = [x for x in lost if x[1] == "failed" and x[2] != SUPERSEDED]
            assert failed, "nothing was running on the killed or frozen node; the test proves nothing"
            # Noticed by the missing heartbeats, not waited out to the result timeout.
            assert {e for _, _, e in failed} == {"provider_offline"}, failed
            assert all(o is not None for _, o, _ in lost), lost  # no attempt left open on them
            assert not {j["provider_pubkey"] for j in jobs(m) if j["path"] != "overview.md"} & {dead, frozen}

            # The frozen node wakes: told to drop what was re-issued, and paid/accepted for nothing.
            m.procs["node-n1"].popen.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
            wait_for(
                "the thawed node settles",
                lambda: (st := m.call("n1", rpc.StatusReq()))["running"] == 0 and st["queued"] == 0,
                60,
            )
            per_job = accepted_results_per_job(m)
            assert set(per_job.values()) == {1}
            assert not [j for j in jobs(m) if j["provider_pubkey"] == frozen and j["path"] != "overview.md"]
        finally:
            m.stop()


def test_a_stragglers_backup_wins_and_its_twin_is_told_to_stop(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 12)
    with FakeOllama(delay_s=0.3) as quick, FakeOllama(delay_s=30.0) as slow:
        m = LocalMarket(
            home=tmp_path / "home",
            nodes=3,
            memory_relay=True,
            heartbeat_s=1.0,
            node_args=["--executor", "ollama", "--ollama-host", quick.url, "--concurrency", "1"],
            node_extra={"n0": ["--ollama-host", slow.url]},
        )
        try:
            m.start(timeout=90)
            slow_pk = node_pubkey(m, "n0")
            run = BackgroundCli(m, "map", str(repo), "--out", str(tmp_path / "out"), "--json")
            assert run.wait(timeout=120) == 0, run.err[-2000:]
            summary = json.loads(run.out)
            assert summary["completed"] == 12 and summary["failed"] == 0

            atts = attempts(m)
            by_job: dict[str, list[tuple[str | None, str | None, str | None]]] = {}
            for _, job_id, node, outcome, error in atts:
                by_job.setdefault(job_id, []).append((node, outcome, error))
            superseded = [j for j, a in by_job.items() if (slow_pk, "failed", "superseded") in a]
            assert superseded, by_job
            for j in superseded:
                # both attempts on record; the copy on a quick node won
                assert len(by_job[j]) == 2 and any(o == "completed" and n != slow_pk for n, o, _ in by_job[j])
            assert Counter(accepted_results_per_job(m).values()) == {1: len(accepted_results_per_job(m))}
            wait_for(
                "the slow node honours the cancel",
                lambda: m.call("n0", rpc.StatusReq())["dropped"].get("cancelled_by_buyer", 0) >= 1,
                30,
            )
            trail = json.loads(m.cli("trail", superseded[0], "--json").stdout)
            requests = [link for link in trail["chain"] if link["role"] == "request"]
            assert len(requests) == 2
        finally:
            m.stop()
