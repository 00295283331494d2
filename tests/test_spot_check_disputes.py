"""A disagreement no vote can settle is named, not hidden.

Two real node processes, one of them a liar (tests/lying_executor.py drops a symbol from every
file). Each provider's first result in a run is checked on the other node, so every check
disagrees, and with no third node nobody can be out-voted: the first answer stays in the map.
The run's summary (JSON and human), `repo_map.json` and `overview.md` must then name exactly
the files whose results are in dispute, so a reader knows which entries nobody confirmed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_spot_checks import git

from pylon.localmarket.launcher import LocalMarket

pytestmark = pytest.mark.integration

LIAR = "n1"


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarket]:
    lying = str(Path(__file__).parent / "lying_executor.py") + ":LyingExecutor"
    with LocalMarket(
        home=tmp_path_factory.mktemp("home"),
        nodes=2,
        memory_relay=True,
        heartbeat_s=1.0,
        node_extra={LIAR: ["--executor", lying]},
        buyer_args=["--spot-check", "0.05"],
    ) as m:
        m.start(timeout=90)
        yield m


def make_repo(root: Path, salt: str = "") -> Path:
    for i in range(8):  # two symbols each: a dropped one always shows
        (root / f"m{i}.py").write_text(
            f"def f{i}{salt}(x):\n    return x + {i}\n\n\nclass K{i}{salt}:\n    pass\n"
        )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "x")
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("repo"))


def test_files_whose_check_no_majority_settled_are_named_in_the_summary_and_the_map(
    market: LocalMarket, repo: Path, tmp_path: Path
) -> None:
    res = market.cli("map", str(repo), "--out", str(tmp_path / "out"), "--json", timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["completed"] == 8 and summary["failed"] == 0, summary
    checks = summary["checks"]
    # At least the first result of one provider was checked on the other, and they differ.
    assert checks["disagreed"] >= 1, checks
    assert checks["overturned"] == 0, checks
    disputed = checks["disputed"]
    assert len(disputed) == checks["disagreed"] and disputed == sorted(disputed), checks
    assert set(disputed) <= {f"m{i}.py" for i in range(8)}

    repo_map = json.loads((tmp_path / "out" / "repo_map.json").read_text())
    assert repo_map["disputed"] == disputed
    assert set(disputed) <= set(repo_map["files"])  # kept: the first answer, flagged
    overview = (tmp_path / "out" / "overview.md").read_text()
    section = overview.split("## Disputed", 1)[1].split("\n## ", 1)[0]
    assert all(f"`{p}`" in section for p in disputed), section
    undisputed = set(repo_map["files"]) - set(disputed)
    assert not any(f"`{p}`" in section for p in undisputed), section


def test_the_human_summary_says_what_checking_found(market: LocalMarket, repo: Path, tmp_path: Path) -> None:
    res = market.cli("map", str(repo), "--out", str(tmp_path / "out"), "--fresh", timeout=300)
    assert res.returncode == 0, res.stderr
    line = next((x for x in res.stdout.splitlines() if x.startswith("spot checks:")), None)
    assert line is not None, res.stdout
    assert "0 out-voted" in line and " disputed " in line, line
    named = next((x for x in res.stdout.splitlines() if "disputed (no majority" in x), None)
    assert named is not None, res.stdout
    assert any(f"m{i}.py" in named for i in range(8)), named


def test_a_disputed_result_is_not_reused_by_the_next_run(market: LocalMarket, tmp_path: Path) -> None:
    # Contents of their own: no earlier run of this module cached any of these files.
    (tmp_path / "repo").mkdir()
    repo = make_repo(tmp_path / "repo", salt="_again")

    def run_map(*flags: str) -> dict:
        res = market.cli("map", str(repo), "--out", str(tmp_path / "out"), "--json", *flags, timeout=300)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    first = run_map()
    disputed = first["checks"]["disputed"]
    assert disputed, first["checks"]
    again = run_map()
    # Every undisputed file comes from the cache; the disputed ones are mapped (and checked) again.
    assert again["cached"] == 8 - len(disputed) and again["sent"] == len(disputed), again
