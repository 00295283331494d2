"""`pylon map` on bad input, through the CLI and a running buyer with real nodes.

A repository that cannot be read fails the run with one clear line; a bad file inside a good
repository is skipped (and counted) or fails alone (with its error code) while the rest maps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pylon.localmarket.launcher import LocalMarket

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
GOOD = ("python/packaging/utils.py", "go/uuid/node.go", "javascript/commander/error.js")


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def make_repo(root: Path, *, good: bool = True, commit: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if good:
        for rel in GOOD:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(CORPUS / rel, root / rel)
    git(root, "init", "-q", "-b", "main")
    if commit:
        git(root, "add", "-A")
        git(root, "commit", "-q", "--allow-empty", "-m", "fixture")
    return root


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    m = LocalMarket(home=tmp_path_factory.mktemp("home"), nodes=3, memory_relay=True, heartbeat_s=1.0)
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


def map_fails(market: LocalMarket, target: str, tmp_path: Path) -> str:
    """Run `pylon map --json` expecting a failure; returns its one-line error."""
    res = market.cli("map", target, "--out", str(tmp_path / "out"), "--json", timeout=120)
    assert res.returncode != 0, res.stdout
    assert res.stdout == ""  # --json: a failure prints no document
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert not (tmp_path / "out" / "repo_map.json").exists()
    return lines[0]


def map_ok(market: LocalMarket, repo: Path, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    res = market.cli("map", str(repo), "--out", str(out), "--json", timeout=180)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), json.loads((out / "repo_map.json").read_text())


# --- the run fails, with a clear error --------------------------------------------------------


def test_url_that_cannot_be_cloned(market: LocalMarket, tmp_path: Path) -> None:
    err = map_fails(market, "file:///nonexistent/repo.git", tmp_path)
    assert "bad_input" in err and "git clone file:///nonexistent/repo.git failed" in err
    assert "does not appear to be a git repository" in err  # git's own words, kept


def test_path_that_does_not_exist(market: LocalMarket, tmp_path: Path) -> None:
    err = map_fails(market, str(tmp_path / "no" / "such" / "repo"), tmp_path)
    assert "bad_input" in err and "no such directory" in err


def test_path_that_is_a_file(market: LocalMarket, tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("not a repository\n")
    err = map_fails(market, str(f), tmp_path)
    assert "bad_input" in err and "is not a directory" in err


def test_empty_repo(market: LocalMarket, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "empty", good=False, commit=False)
    err = map_fails(market, str(repo), tmp_path)
    assert "bad_input" in err and "nothing to map" in err and "no files" in err


def test_repo_of_only_binaries(market: LocalMarket, tmp_path: Path) -> None:
    repo = tmp_path / "bins"
    repo.mkdir()
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + os.urandom(256))
    (repo / "tool.so").write_bytes(b"\x7fELF\x02\x01\x01\0" + os.urandom(512))
    (repo / "data.py").write_bytes(b"x = 1\n\0\0\0")  # a code name, binary content
    (repo / "latin1.c").write_bytes("int caf\xe9 = 1;\n".encode("latin-1"))  # not UTF-8
    make_repo(repo, good=False)
    err = map_fails(market, str(repo), tmp_path)
    assert "bad_input" in err and "nothing to map" in err
    assert "4 binary" in err, err  # the skip counts, by reason


# --- bad files in a good repo: skipped or failed alone, the run finishes -----------------------


def test_symlinks_out_of_the_repo_are_skipped(market: LocalMarket, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("PASSWORD = 'hunter2'\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "leak.py").symlink_to(outside / "secret.py")
    (repo / "lib").symlink_to(outside, target_is_directory=True)
    (repo / "up.py").symlink_to(Path("..") / "outside" / "secret.py")
    (repo / "alias.py").symlink_to("python/packaging/utils.py")  # in-tree: its target maps on its own
    make_repo(repo)
    summary, repo_map = map_ok(market, repo, tmp_path / "out")
    assert summary["skipped"] == {"symlink_escape": 3, "symlink": 1}
    assert summary["files"] == summary["completed"] == len(GOOD) and summary["failed"] == 0
    assert set(repo_map["files"]) == set(GOOD)
    assert "hunter2" not in (tmp_path / "out" / "repo_map.json").read_text()
    overview = (tmp_path / "out" / "overview.md").read_text()
    assert "symlink_escape 3" in overview


def test_oversized_file_is_skipped(market: LocalMarket, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    big = "".join(f"def f{i}():\n    return {i}\n\n" for i in range(40_000))
    assert len(big.encode()) > 1024 * 1024
    (repo / "generated_table.py").write_text(big)
    make_repo(repo)
    summary, repo_map = map_ok(market, repo, tmp_path / "out")
    assert summary["skipped"] == {"oversized": 1}
    assert summary["completed"] == len(GOOD) and summary["failed"] == 0
    assert "generated_table.py" not in repo_map["files"]


@pytest.fixture(scope="module")
def strict_market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    """Nodes whose parser limit is 0 s: every file that needs a parse times out, on any machine.

    A file that is merely slow to parse would time out on a slow machine and finish on a fast
    one; a limit of 0 makes the outcome independent of the machine. READMEs are mapped as
    text, with no parse, so they still complete beside it.
    """
    m = LocalMarket(
        home=tmp_path_factory.mktemp("strict"),
        nodes=2,
        memory_relay=True,
        heartbeat_s=1.0,
        node_args=["--parse-timeout", "0"],
    )
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


def test_file_that_times_out_on_the_node(strict_market: LocalMarket, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# demo\n\nA repository with one file that cannot be parsed in time.\n")
    shutil.copy(CORPUS / "javascript/commander/error.js", repo / "slow.js")
    make_repo(repo, good=False)
    summary, repo_map = map_ok(strict_market, repo, tmp_path / "out")
    assert summary["files"] == 2
    assert summary["completed"] == 1 and summary["failed"] == 1, summary
    assert repo_map["failed"] == {"slow.js": "timeout"}
    assert set(repo_map["files"]) == {"README.md"}
    overview = (tmp_path / "out" / "overview.md").read_text()
    assert "`slow.js` (timeout)" in overview
    # Every node it was sent to gave up on it with `timeout`; none crashed or hung.
    jobs = strict_market.cli("job", "list", "--run", summary["run_id"], "--json")
    assert jobs.returncode == 0, jobs.stderr
    slow = [j for j in json.loads(jobs.stdout)["jobs"] if j["path"] == "slow.js"]
    assert len(slow) == 1 and slow[0]["state"] == "failed" and slow[0]["error"] == "timeout", slow
    status = json.loads(strict_market.cli("job", "status", slow[0]["job_id"], "--json").stdout)
    assert status["attempts"] >= 2  # a timeout is worth another node; each one timed out too
