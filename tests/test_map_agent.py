"""The map people hand to a coding agent, on a real repository nobody here wrote (issue 12).

click's own source, copied from this venv into a git repository, is mapped by real nodes:
repo_map.md stays within its token budget (by the tokenizer) at 1024 and 4096 tokens and holds
the ten most central files' key definitions; a second map of the same commit sends no jobs;
after a one-file edit, one job; --fresh sends them all; --include/--exclude narrow the run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from pylon.localmarket.launcher import LocalMarket
from pylon.repomap.aggregate import load_repo_map
from pylon.repomap.llm_map import _sig, key_definitions, ranked_files
from pylon.repomap.tokens import count_tokens

pytestmark = pytest.mark.integration


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("click-repo")
    shutil.copytree(Path(click.__file__).parent, root / "click", ignore=shutil.ignore_patterns("__pycache__"))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "click, as installed")
    return root


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    m = LocalMarket(home=tmp_path_factory.mktemp("home"), nodes=3, memory_relay=True, heartbeat_s=1.0)
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


def map_json(market: LocalMarket, *args: str) -> dict[str, Any]:
    res = market.cli("map", *args, "--json", timeout=180)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def jobs_of(market: LocalMarket, run_id: str) -> list[dict[str, Any]]:
    res = market.cli("job", "list", "--run", run_id, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["jobs"]


def check_agent_map(out: Path, budget: int) -> str:
    md = (out / "repo_map.md").read_text()
    assert count_tokens(md) <= budget
    repo_map = load_repo_map(out)
    central = ranked_files(repo_map)[:10]
    assert len(central) == 10 and "click/core.py" in central
    for path in central:
        assert f"\n{path} (" in md, path
        for s in key_definitions(repo_map.files[path]):
            assert _sig(s) in md, (path, s.name)
    return md


def test_agent_map_budget_and_incremental_runs(market: LocalMarket, repo: Path, tmp_path: Path) -> None:
    first = map_json(market, str(repo), "--out", str(tmp_path / "a"), "--tokens", "1024")
    files = first["files"]
    assert files >= 15 and first["completed"] == files and first["failed"] == 0
    assert first["sent"] == files and first["cached"] == 0
    assert first["artifacts"]["repo_map_md"] == str(tmp_path / "a" / "repo_map.md")
    small = check_agent_map(tmp_path / "a", 1024)
    assert "class Command" in small and "class Context" in small

    # The same commit again, as a person runs it: nothing goes out, the map is whole.
    again = market.cli("map", str(repo), "--out", str(tmp_path / "b"), "--tokens", "4096", timeout=180)
    assert again.returncode == 0, again.stderr
    assert "no jobs sent" in again.stdout
    second = json.loads((tmp_path / "b" / "repo_map.json").read_text())
    assert len(second["files"]) == files
    assert jobs_of(market, second["run_id"]) == []
    big = check_agent_map(tmp_path / "b", 4096)
    assert len(big) > len(small)
    # A reused entry still names the signed result it came from.
    first_map = json.loads((tmp_path / "a" / "repo_map.json").read_text())
    core = "click/core.py"
    assert second["files"][core]["result_id"] == first_map["files"][core]["result_id"]

    # One file edited: one job, and the map has the new definition.
    with (repo / "click" / "globals.py").open("a") as fh:
        fh.write("\n\ndef brand_new_helper(x: int) -> int:\n    return x\n")
    git(repo, "commit", "-qam", "one edit")
    third = map_json(market, str(repo), "--out", str(tmp_path / "c"))
    assert third["sent"] == 1 and third["cached"] == files - 1 and third["completed"] == files
    jobs = jobs_of(market, third["run_id"])
    assert [j["path"] for j in jobs] == ["click/globals.py"]
    names = {
        s["name"]
        for s in json.loads((tmp_path / "c" / "repo_map.json").read_text())["files"]["click/globals.py"][
            "symbols"
        ]
    }
    assert "brand_new_helper" in names

    fresh = map_json(market, str(repo), "--out", str(tmp_path / "d"), "--fresh")
    assert fresh["sent"] == files and fresh["cached"] == 0 and fresh["completed"] == files


def test_include_exclude(market: LocalMarket, repo: Path, tmp_path: Path) -> None:
    res = map_json(
        market, str(repo), "--out", str(tmp_path / "o"), "--include", "click/*.py", "--exclude", "click/_*"
    )
    mapped = set(json.loads((tmp_path / "o" / "repo_map.json").read_text())["files"])
    assert mapped and all(not p.split("/")[-1].startswith("_") for p in mapped)
    assert "click/core.py" in mapped and "click/_compat.py" not in mapped
    assert res["skipped"].get("excluded", 0) >= 5
    # A directory name with no wildcard names everything under it.
    nothing = market.cli("map", str(repo), "--out", str(tmp_path / "n"), "--exclude", "click", "--json")
    assert nothing.returncode != 0 and nothing.stdout == ""
    assert "nothing to map" in nothing.stderr and "excluded" in nothing.stderr
