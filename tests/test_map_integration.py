"""`pylon map` end to end: a real multi-language git repository mapped by 20 real node processes.

What it must show (issue 3): every mappable file mapped, every node used, the DESIGN §5
artifacts, symbols that agree with universal-ctags, and a search that finds a class's file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from pylon.schemas import kinds, rpc
from test_executor_ctags_recall import CORPUS, LANGUAGES, REFERENCE, ctags_definitions, have_universal_ctags

from pylon.executors.languages import detect_language
from pylon.localmarket.launcher import LocalMarket, pylon_argv
from pylon.nostr.event import verify_event
from pylon.nostr.filters import Filter
from pylon.nostr.relay_client import RelayPool

pytestmark = pytest.mark.integration

NODES = 20
HEX64 = re.compile(r"^[0-9a-f]{64}$")
MIN_RECALL = 0.9
# (query, the file that defines it): classes and types from five languages.
QUERIES = (
    ("Specifier", "python/packaging/specifiers.py"),
    ("TypeManager", "java/jpype/manager/TypeManager.java"),
    ("SmallVec", "rust/smallvec/lib.rs"),
    ("Subscriber", "typescript/rxjs/Subscriber.ts"),
    ("Command", "go/cobra/command.go"),
)


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def build_repo(root: Path) -> list[str]:
    """A git repository of the whole test corpus (real code in seven languages); its code paths."""
    shutil.copytree(CORPUS, root, ignore=shutil.ignore_patterns("ctags_reference.json"))
    (root / "README.md").write_text("# corpus\n\nReal code from published packages, for mapping tests.\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "corpus")
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.parts and detect_language(p.name) is not None
    )


@dataclass
class Mapped:
    market: LocalMarket
    repo: Path  # the repository that was mapped
    out: Path  # its artifacts
    code: list[str]  # its code files (repo paths)
    summary: dict[str, Any]  # what `pylon map --json` printed

    def repo_map(self) -> dict[str, Any]:
        return json.loads((self.out / "repo_map.json").read_text())


@pytest.fixture(scope="module")
def m(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mapped]:
    repo = tmp_path_factory.mktemp("repo") / "corpus"
    code = build_repo(repo)
    out = tmp_path_factory.mktemp("out")
    market = LocalMarket(
        home=tmp_path_factory.mktemp("home"), nodes=NODES, memory_relay=True, heartbeat_s=1.0
    )
    try:
        market.start(timeout=90)
        res = market.cli("map", str(repo), "--out", str(out), "--json", timeout=180)
        assert res.returncode == 0, res.stderr
        yield Mapped(market, repo, out, code, json.loads(res.stdout))
    finally:
        market.stop()


def test_every_file_mapped_by_all_twenty_nodes(m: Mapped) -> None:
    assert len(m.code) >= 80
    # Every mappable file: the code plus the README (mapped as text); LICENSE/NOTICE files skipped.
    assert m.summary["files"] == len(m.code) + 1, m.summary
    assert m.summary["completed"] == m.summary["files"] and m.summary["failed"] == 0, m.summary
    assert m.summary["skipped"].get("unsupported", 0) >= 20
    assert m.summary["providers"] == NODES

    repo_map = m.repo_map()
    providers = {e["provider"] for e in repo_map["files"].values()}
    assert len(providers) == NODES
    online = {n["pubkey"] for n in m.market.call("buyer", rpc.NodesReq())["nodes"] if n["online"]}
    assert providers <= online


def test_artifacts_follow_the_contract(m: Mapped) -> None:
    assert m.summary["artifacts"] == {
        "repo_map": str(m.out / "repo_map.json"),
        "overview": str(m.out / "overview.md"),
        "index": m.summary["artifacts"]["index"],
    }
    assert (
        Path(m.summary["artifacts"]["index"]).is_file()
        and Path(m.summary["artifacts"]["index"]).parent == m.out
    )

    repo_map = m.repo_map()
    assert repo_map["run_id"] == m.summary["run_id"] and HEX64.match(repo_map["run_id"])
    assert repo_map["root"] == str(m.repo.resolve())
    assert set(repo_map["files"]) == {*m.code, "README.md"}
    for path, entry in repo_map["files"].items():
        assert entry["language"] == (detect_language(path) or "text"), path
        assert isinstance(entry["summary"], str) and entry["summary"], path
        assert isinstance(entry["imports"], list) and all(isinstance(i, str) for i in entry["imports"])
        assert HEX64.match(entry["provider"]) and HEX64.match(entry["result_id"]), path
        for s in entry["symbols"]:
            assert isinstance(s["name"], str) and s["name"] and isinstance(s["kind"], str) and s["line"] >= 1
            assert path in repo_map["symbols"][s["name"]]
    # The symbols table is exactly the files' symbols, inverted.
    inverted: dict[str, set[str]] = {}
    for path, entry in repo_map["files"].items():
        for s in entry["symbols"]:
            inverted.setdefault(s["name"], set()).add(path)
    assert {k: set(v) for k, v in repo_map["symbols"].items()} == inverted
    assert len(set(e["result_id"] for e in repo_map["files"].values())) == len(repo_map["files"])

    overview = (m.out / "overview.md").read_text()
    assert overview.startswith("# Repository overview")
    for lang in LANGUAGES:
        assert re.search(rf"^\| {lang} \| \d+ \|", overview, re.MULTILINE), lang

    # Each result_id is a signed 6931 result on the relay, by the node the map credits.
    async def fetch() -> list:
        pool = RelayPool([m.market.relay_url])
        async with anyio.create_task_group() as tg:
            await pool.start(tg)
            ids = [e["result_id"] for e in repo_map["files"].values()]
            evs = await pool.query([Filter(ids=ids, kinds=[kinds.JOB_RESULT])], timeout=20)
            tg.cancel_scope.cancel()
        return evs

    events = {ev.id: ev for ev in anyio.run(fetch)}
    for path, entry in repo_map["files"].items():
        ev = events[entry["result_id"]]
        verify_event(ev)
        assert ev.pubkey == entry["provider"], path


def _near(found: set[tuple[str, int]], name: str, line: int) -> bool:
    return any((name, line + d) in found for d in (-1, 0, 1))


def test_symbols_agree_with_universal_ctags(m: Mapped) -> None:
    repo_map = m.repo_map()
    live = have_universal_ctags()
    stored = json.loads(REFERENCE.read_text())
    per_lang: dict[str, list[int]] = {}

    def reference(path: str) -> list[tuple[str, int]]:
        language = detect_language(path)
        assert language is not None
        return ctags_definitions(m.repo / path, language) if live else [tuple(t) for t in stored[path]]

    with ThreadPoolExecutor(4) as pool:  # one ctags process per file
        references = dict(zip(m.code, pool.map(reference, m.code), strict=True))
    for path, ref in references.items():
        language = detect_language(path)
        ours = {(s["name"], s["line"]) for s in repo_map["files"][path]["symbols"]}
        t = per_lang.setdefault(language, [0, 0])
        t[0] += sum(1 for name, line in ref if _near(ours, name, line))
        t[1] += len(ref)
    hit, total = sum(t[0] for t in per_lang.values()), sum(t[1] for t in per_lang.values())
    assert set(per_lang) == set(LANGUAGES)
    assert total > 1000
    detail = {lang: round(h / n, 3) for lang, (h, n) in per_lang.items()}
    assert hit / total >= MIN_RECALL, (hit, total, detail)


def test_query_finds_the_defining_file(m: Mapped) -> None:
    # One `pylon map query` process per class, run side by side (each pays Python's start-up).
    procs = {
        words: subprocess.Popen(
            pylon_argv("map", "query", str(m.out), words, "--json"),
            env=m.market.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for words, _ in QUERIES
    }
    top: dict[str, list[str]] = {}
    for words, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        hits = json.loads(stdout)["hits"]
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        top[words] = [h["path"] for h in hits[:3]]
    missed = {words: top[words] for words, defined_in in QUERIES if defined_in not in top[words]}
    assert not missed, missed


def test_demo_smoke(tmp_path: Path) -> None:
    repo = tmp_path / "small"
    for rel in (
        "python/packaging/utils.py",
        "go/uuid/uuid.go",
        "rust/semver/parse.rs",
        "c/brotli/dec/state.c",
    ):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / rel, repo / rel)
    env = {**os.environ, "PYLON_HOME": str(tmp_path / "home"), "PYLON_LOG_LEVEL": "warning"}
    res = subprocess.run(
        pylon_argv("demo", "--nodes", "3", "--json", "--no-mint", "--repo", str(repo)),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert {"repo", "nodes", "runs", "scoreboard", "up_s", "total_s"} <= set(doc)
    assert doc["nodes"] == 3 and doc["repo"] == str(repo)
    (run,) = doc["runs"]
    assert {"run_id", "files", "completed", "failed", "providers", "wall_s", "artifacts"} <= set(run)
    assert run["files"] == run["completed"] == 4 and run["failed"] == 0 and 1 <= run["providers"] <= 3
    assert Path(run["artifacts"]["overview"]).is_file()
    board = doc["scoreboard"]
    assert {"providers", "jobs", "success_rate", "p50_e2e_s", "p95_e2e_s", "rows"} <= set(board)
    assert board["jobs"] == 4 and board["success_rate"] == 1.0
    assert board["p95_e2e_s"] >= board["p50_e2e_s"] > 0
    for row in board["rows"]:
        assert set(row) == {"metric", "value", "target", "ok"} and isinstance(row["ok"], bool)
    ok = {r["metric"]: r["ok"] for r in board["rows"]}
    assert ok["runs with every file mapped"] and not ok["providers with ≥1 job"]  # 3 nodes < 20
