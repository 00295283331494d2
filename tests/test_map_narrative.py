"""The LLM reduce step: a node with a model writes the overview's narrative on top of the facts.

Real relay, buyer and node processes; the one thing faked is Ollama (tests/ollama_fake.py),
served from this process so the test can see what the model was asked.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ollama_fake import FakeOllama
from pylon.schemas import rpc

from pylon.localmarket.launcher import LocalMarket

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
MARKER = "Narrative-7f3a: this repository bundles parsers from several ecosystems."
FILES = (
    "python/packaging/version.py",
    "python/packaging/utils.py",
    "go/uuid/uuid.go",
    "go/uuid/node.go",
    "rust/semver/parse.rs",
    "javascript/commander/option.js",
    "typescript/rxjs/Subject.ts",
    "java/jpype/proxy/JPypeProxy.java",
    "c/brotli/dec/state.c",
)


def make_repo(root: Path) -> Path:
    for rel in FILES:
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / rel, dest)
    (root / "README.md").write_text("# mixed\n\nParsers and small utilities from several ecosystems.\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "fixture"], cwd=root, check=True)
    return root


def run_map(market: LocalMarket, repo: Path, out: Path, *extra: str) -> dict:
    res = market.cli("map", str(repo), "--out", str(out), "--json", *extra, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def reduce_jobs(market: LocalMarket) -> list[dict]:
    return [
        j for j in market.call("buyer", rpc.JobListReq(limit=10_000))["jobs"] if j["path"] == "overview.md"
    ]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(reduce_reply=MARKER) as f:
        yield f


@pytest.fixture(scope="module")
def model_market(tmp_path_factory: pytest.TempPathFactory, fake: FakeOllama) -> Iterator[LocalMarket]:
    m = LocalMarket(
        home=tmp_path_factory.mktemp("home"),
        nodes=3,
        memory_relay=True,
        heartbeat_s=1.0,
        node_extra={"n0": ["--executor", "ollama", "--ollama-host", fake.url]},
    )
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


def model_node_pubkey(market: LocalMarket) -> str:
    nodes = market.call("buyer", rpc.NodesReq())["nodes"]
    with_model = [n for n in nodes if "ollama" in n["executors"] and n["models"]]
    assert len(with_model) == 1, nodes
    return with_model[0]["pubkey"]


def test_a_model_node_writes_the_narrative(
    model_market: LocalMarket, fake: FakeOllama, repo: Path, tmp_path: Path
) -> None:
    llm = model_node_pubkey(model_market)
    chats_before, jobs_before = len(fake.chat_requests), len(reduce_jobs(model_market))
    res = run_map(model_market, repo, tmp_path / "out")
    assert res["files"] == len(FILES) + 1 and res["completed"] == res["files"] and res["failed"] == 0

    overview = (tmp_path / "out" / "overview.md").read_text()
    assert "## Summary" in overview and MARKER in overview
    assert f"`{llm[:16]}…`" in overview  # attributed to the node that wrote it (issue 10 item 12)
    # The narrative sits on top of the facts: after the title, before the facts' sections.
    assert overview.index("## Summary") < overview.index(MARKER) < overview.index("## Languages")
    assert "## Layout" in overview and "## Entry points" in overview

    # The model was asked once for a narrative (a chat without a JSON schema), from the facts.
    chats = fake.chat_requests[chats_before:]
    reduce_chats = [c for c in chats if "format" not in c or c["format"] is None]
    assert len(reduce_chats) == 1
    facts = reduce_chats[0]["messages"][-1]["content"]
    assert "## Languages" in facts and "go/uuid/uuid.go" in facts and "## Summary" not in facts

    # It went out as a job of its own, to the node with the model, and was accepted from it.
    jobs = reduce_jobs(model_market)[jobs_before:]
    assert [(j["state"], j["provider_pubkey"]) for j in jobs] == [("completed", llm)]


def test_a_failed_narrative_leaves_the_facts(
    model_market: LocalMarket, fake: FakeOllama, repo: Path, tmp_path: Path
) -> None:
    before = len(reduce_jobs(model_market))
    fake.fail = "error500"  # every chat fails from now on: per-file summaries and the reduce step
    try:
        # --fresh: the first test mapped this repo, and cached files would not be sent again.
        res = run_map(model_market, repo, tmp_path / "out", "--fresh")
    finally:
        fake.fail = None
    # Files the model node could not summarise were re-issued to the other nodes.
    assert res["completed"] == res["files"] and res["failed"] == 0
    overview = (tmp_path / "out" / "overview.md").read_text()
    assert "## Summary" not in overview and MARKER not in overview and "## Languages" in overview
    jobs = reduce_jobs(model_market)[before:]
    # The reduce job was retried on nodes without a model; they refused it (bad_input) rather
    # than passing off a file summary of the facts as the narrative.
    assert len(jobs) == 1 and (jobs[0]["state"], jobs[0]["error"]) == ("failed", "bad_input"), jobs


def test_without_a_model_node_no_narrative_and_no_wait(tmp_path: Path, repo: Path) -> None:
    # A pickup timeout this long would show in the wall time if the narrator waited for a model.
    with LocalMarket(
        home=tmp_path / "home",
        nodes=2,
        memory_relay=True,
        heartbeat_s=1.0,
        buyer_args=["--pickup-timeout", "30"],
    ) as market:
        market.start(timeout=60)
        t0 = time.monotonic()
        res = run_map(market, repo, tmp_path / "out")
        took = time.monotonic() - t0
        assert res["completed"] == res["files"] and res["failed"] == 0
        assert reduce_jobs(market) == []
    overview = (tmp_path / "out" / "overview.md").read_text()
    assert "## Summary" not in overview and "## Languages" in overview
    assert res["wall_s"] < 15 and took < 25, (res["wall_s"], took)
