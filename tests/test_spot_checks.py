"""Spot checks on a live paid market: a node that lies plausibly is caught within one run.

Four real node processes, one of them running an executor that drops one symbol from every
file (tests/lying_executor.py), map a 100-file repository. The liar's first result is checked,
disagrees, goes to a third node and is out-voted; every other result it gave is then checked
too and replaced, so `repo_map.json` holds only honest results; after two failed checks it gets
no more jobs. The checkers are paid like any provider and the run's summary says what checking
cost.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pylon.schemas import rpc

from pylon.executors.deterministic import extract_file
from pylon.localmarket.launcher import LocalMarket

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
LIAR = "n3"
FILES = 100
PRICE_MSATS = 2000


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def build_repo(root: Path) -> dict[str, str]:
    """A git repository of 100 corpus files that each define symbols; {path: text}."""
    files: dict[str, str] = {}
    for p in sorted(CORPUS.rglob("*")):
        if not p.is_file() or p.suffix == ".json":
            continue
        rel = p.relative_to(CORPUS).as_posix()
        text = p.read_text(encoding="utf-8")
        if extract_file(rel, text).symbols:
            files[rel] = text
        if len(files) == FILES:
            break
    # The corpus has fewer files with symbols than that: top up with small modules of our own.
    for i in range(FILES - len(files)):
        files[f"extra/mod{i}.py"] = (
            f'"""Module {i}."""\n\n\ndef f{i}(x):\n    return x + {i}\n\n\nclass K{i}:\n    pass\n'
        )
    assert len(files) == FILES
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "corpus")
    return files


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    lying = str(Path(__file__).parent / "lying_executor.py") + ":LyingExecutor"
    m = LocalMarket(
        home=tmp_path_factory.mktemp("home"),
        nodes=4,
        with_mint=True,
        memory_relay=True,
        heartbeat_s=1.0,
        node_args=["--price", str(PRICE_MSATS)],
        node_extra={LIAR: ["--executor", lying]},
        buyer_args=["--bid", str(PRICE_MSATS), "--spot-check", "0.05", "--distrust-after", "2"],
    )
    try:
        m.start(timeout=90)
        m.fund()
        yield m
    finally:
        m.stop()


def run_map(market: LocalMarket, repo: Path, out: Path) -> dict[str, Any]:
    res = market.cli("map", str(repo), "--out", str(out), "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def pubkey_of(market: LocalMarket, name: str) -> str:
    return market.call(name, rpc.StatusReq())["pubkey"]


def test_a_lying_node_is_caught_out_voted_and_dropped(market: LocalMarket, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    files = build_repo(repo)
    liar = pubkey_of(market, LIAR)
    honest = {pubkey_of(market, n) for n in ("n0", "n1", "n2")}

    summary = run_map(market, repo, tmp_path / "out")
    assert summary["completed"] == FILES and summary["failed"] == 0, summary
    checks = summary["checks"]
    assert checks["disagreed"] >= 1 and checks["checked"] >= 4, checks  # each provider at least once
    assert checks["check_jobs"] >= checks["checked"] and checks["cost_msats"] > 0, checks
    # The liar's first result was out-voted by two honest nodes (a third one is always there).
    assert checks["overturned"] >= 1, checks

    # Every file in the map is what an honest extractor gives: none of the liar's results stayed.
    repo_map = json.loads((tmp_path / "out" / "repo_map.json").read_text())
    assert set(repo_map["files"]) == set(files)
    for path, text in files.items():
        want = [msgspec.to_builtins(s) for s in extract_file(path, text).symbols]
        assert repo_map["files"][path]["symbols"] == want, path
        assert repo_map["files"][path]["provider"] != liar, path

    # Standing: the liar failed its checks and is distrusted; the honest nodes never disagreed.
    nodes = {n["pubkey"]: n for n in market.call("buyer", rpc.NodesReq())["nodes"]}
    assert nodes[liar]["checks_failed"] >= 2 and nodes[liar]["banned"], nodes[liar]
    for pk in honest:
        assert nodes[pk]["checks_failed"] == 0, nodes[pk]
    assert sum(nodes[pk]["checks_passed"] for pk in honest) >= 2
    stats = market.cli("stats", "--provider", liar, "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["checks_failed"] >= 2

    report = market.cli("report", "--json")
    assert report.returncode == 0, report.stderr
    rep = json.loads(report.stdout)["stats"]
    assert 0 < rep["checked_share"] <= 1 and 0 < rep["disagreement_rate"] <= 1, rep

    # A second run: the distrusted node is given nothing.
    (repo / "extra.py").write_text("def added_later():\n    return 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "more")
    again = run_map(market, repo, tmp_path / "out2")
    assert again["completed"] == FILES + 1
    jobs = json.loads(market.cli("job", "list", "--run", again["run_id"], "--json").stdout)["jobs"]
    assert jobs and all(j["provider_pubkey"] != liar for j in jobs)

    # The checkers were paid like any provider: in the end only the distrusted node has unpaid work.
    def unpaid_honest() -> list[dict[str, Any]]:
        jobs = market.call("buyer", rpc.JobListReq())["jobs"]
        done = [j for j in jobs if j["state"] == "completed" and not j["paid"]]
        return [j for j in done if j["provider_pubkey"] != liar]

    deadline = time.monotonic() + 60
    while unpaid_honest() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert unpaid_honest() == []


def test_spot_checks_off_sends_no_second_opinion(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("def f():\n    return 1\n")
    (repo / "b.py").write_text("class B:\n    pass\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "x")
    with LocalMarket(
        home=tmp_path / "home", nodes=2, memory_relay=True, buyer_args=["--spot-check", "0"]
    ) as m:
        m.start(timeout=60)
        summary = run_map(m, repo, tmp_path / "out")
        assert summary["completed"] == 2 and summary["checks"] is None
        jobs = m.call("buyer", rpc.JobListReq())["jobs"]
        assert len(jobs) == 2  # the two files, no check jobs


def test_the_trail_shows_the_check_and_whether_it_agreed(market: LocalMarket, tmp_path: Path) -> None:
    # Only honest nodes take part (the liar is banned by hand, whether or not it was distrusted).
    market.call("buyer", rpc.BanReq(pubkey=pubkey_of(market, LIAR), banned=True))
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "one.py").write_text("def one():\n    return 1\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "x")
    summary = run_map(market, repo, tmp_path / "out")
    assert summary["checks"]["checked"] == 1  # a provider's first result in a run is always checked
    jobs = json.loads(market.cli("job", "list", "--run", summary["run_id"], "--json").stdout)["jobs"]
    trail = market.cli("trail", jobs[0]["job_id"], "--json")
    assert trail.returncode == 0, trail.stderr
    doc = json.loads(trail.stdout)
    assert doc["verified"] is True
    assert len(doc["checks"]) == 1 and doc["checks"][0]["agreed"] is True, doc["checks"]
    assert doc["checks"][0]["pubkey"] != jobs[0]["provider_pubkey"]
    human = market.cli("trail", jobs[0]["job_id"])
    assert "check" in human.stdout and "agreed" in human.stdout
