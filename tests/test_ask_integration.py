"""`pylon ask` through the market: real relay, buyer and node processes, the CLI, the fake model.

Each sub-call is an ordinary job of the buyer, assigned to a node, priced, trailed; the budget
holds against the prices the nodes really ask; the output says which mode answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ask_fake_model import QUESTION, make_repo, model_reply
from ollama_fake import FakeOllama
from pylon.schemas import rpc

from pylon.localmarket.launcher import LocalMarket

pytestmark = pytest.mark.integration


@dataclass
class ModelMarket(LocalMarket):
    model_url: str = ""
    extra_node_args: list[str] = field(default_factory=list)

    def node_cli_args(self, name: str) -> list[str]:
        extra = ["--executor", "ollama", "--ollama-host", self.model_url] if self.model_url else []
        return super().node_cli_args(name) + extra


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(reply=model_reply) as f:
        yield f


def cli_json(market: LocalMarket, *args: str) -> dict:
    res = market.cli(*args, "--json", timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


def test_ask_on_model_nodes_pays_within_the_budget(tmp_path: Path, repo: Path, fake: FakeOllama) -> None:
    with ModelMarket(
        home=tmp_path / "home",
        nodes=2,
        memory_relay=True,
        heartbeat_s=1.0,
        model_url=fake.url,
        with_mint=True,
        node_args=["--price", "1000"],
        buyer_args=["--bid", "1000"],
    ) as market:
        market.start(timeout=60)
        market.fund("buyer", 100)
        cli_json(market, "map", str(repo), "--out", str(tmp_path / "map"))
        mapped = {j["job_id"] for j in market.call("buyer", rpc.JobListReq(limit=10_000))["jobs"]}
        # The model's next two chats fail (a crashed runner): those sub-calls are re-issued to
        # the other node like any failed map file, paid once, and the budget still holds.
        fake.fail, fake.fail_times = "error500", fake._chats_seen + 2
        res = cli_json(
            market, "ask", str(tmp_path / "map"), QUESTION, "--depth", "3", "--budget-sats", "5",
            "--out", str(tmp_path / "ask"),
        )  # fmt: skip
        paid, completed = market.wait_paid(timeout=90)
        jobs = {j["job_id"]: j for j in market.call("buyer", rpc.JobListReq(limit=10_000))["jobs"]}
        nodes = {n["pubkey"] for n in market.call("buyer", rpc.NodesReq())["nodes"]}
        tree = json.loads((tmp_path / "ask" / "ask.json").read_text())
        sent = [n for n in tree["nodes"] if n["job_id"]]
        trail = market.call("buyer", rpc.TrailReq(job_id=sent[0]["job_id"]))
        runs = {r["run_id"]: r for r in market.call("buyer", rpc.RunsReq())["runs"]}
        attempts = [market.call("buyer", rpc.JobStatusReq(job_id=n["job_id"]))["attempts"] for n in sent]
        fake.fail = None
    assert res["mode"] == "model" and tree["mode"] == "model"
    assert res["spent_sats"] <= 5 and len(sent) <= 5  # 1 sat a call at the nodes' price
    assert "budget" in res["stopped_by"] and any(n["status"] == "skipped_budget" for n in tree["nodes"])
    assert paid == completed, (paid, completed)
    assert max(attempts) >= 2, attempts  # the failed chats were retried elsewhere
    for n in sent:  # every sub-call is a job of the buyer's, on a node of the swarm, paid its price
        job = jobs[n["job_id"]]
        assert n["job_id"] not in mapped
        assert job["run_id"] == res["ask_id"] and job["state"] == "completed" == n["status"]
        assert n["node"] in nodes and n["cost_sats"] == 1 and job["paid"]
    assert sent[-1]["path"] == "answer.md" and sent[-1]["depth"] == -1  # the reduce job
    roles = [c["role"] for c in trail["chain"] if c["valid"]]
    assert {"request", "feedback", "result", "payment"} <= set(roles), trail  # trailed like any job
    run = runs[res["ask_id"]]  # the ask is a run the TUI can show, finished
    assert run["repo"].startswith("ask: ") and run["finished"] is not None and run["files"] == len(sent)
    answer = (tmp_path / "ask" / "answer.md").read_text()
    assert answer.startswith(f"# {QUESTION}") and "Answered by: **model" in answer


def test_ask_without_a_model_node_runs_deterministically(tmp_path: Path, repo: Path) -> None:
    with LocalMarket(home=tmp_path / "home", nodes=1, memory_relay=True, heartbeat_s=1.0) as market:
        market.start(timeout=60)
        cli_json(market, "map", str(repo), "--out", str(tmp_path / "map"))
        res = cli_json(market, "ask", str(tmp_path / "map"), QUESTION, "--out", str(tmp_path / "ask"))
        bad = market.cli("ask", str(tmp_path / "nowhere"), QUESTION, "--json", timeout=60)
    assert res["mode"] == "deterministic" and res["completed"] == res["sub_calls"] > 1
    tree = json.loads((tmp_path / "ask" / "ask.json").read_text())
    assert tree["evidence"][0]["path"] == "app/main.py" and tree["evidence"][0]["kind"] == "definition"
    assert bad.returncode != 0 and bad.stdout == "" and "not a map output directory" in bad.stderr
