"""repo_map.md, the offline tokenizer, overview.md's classification, path selection and the
result cache, without a swarm (issue 12). The swarm-level checks are in test_map_agent.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import click
import pytest
from pylon.daemon.buyer.store import BuyerStore
from pylon.daemon.result_cache import ResultCache, current_versions
from pylon.schemas.events import FileResult, Symbol

from pylon.executors.deterministic import extract_file
from pylon.repomap.aggregate import load_repo_map
from pylon.repomap.llm_map import MIN_TOKENS, key_definitions, ranked_files, render_llm_map
from pylon.repomap.local import map_locally
from pylon.repomap.select import matches, select_files
from pylon.repomap.snapshot import take_snapshot
from pylon.repomap.tokens import count_tokens

CORPUS = Path(__file__).parent / "fixtures" / "corpus"


# --- the tokenizer works with no network and no cache ---------------------------------------


def test_tokenizer_loads_offline_without_a_cache(tmp_path: Path) -> None:
    # A fresh interpreter with every socket refused and tiktoken's cache turned off: the counts
    # must come from the vendored file alone.
    code = """
import socket, sys
def refuse(*a, **k):
    raise OSError("network is off in this test")
socket.socket.connect = refuse
socket.create_connection = refuse
from pylon.repomap.tokens import count_tokens, encoding
print(count_tokens("hello world"), encoding().encode("hello world"), count_tokens("<|endoftext|>"))
"""
    env = {"TIKTOKEN_CACHE_DIR": "", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    # 15339, 1917: cl100k_base's own ids for "hello", " world"; special tokens count as text.
    assert out.stdout.split("]")[0] == "2 [15339, 1917"
    assert int(out.stdout.split()[-1]) > 1
    assert not list(tmp_path.iterdir())  # nothing cached


def test_tokenizer_in_process_never_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("the tokenizer tried the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert count_tokens("def f(x):\n    return x\n") > 5


# --- repo_map.md ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def click_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("click-map")
    map_locally(Path(click.__file__).parent, out, extract_file)
    return out


@pytest.mark.parametrize("budget", [MIN_TOKENS, 200, 1024, 2048, 4096, 16384])
def test_llm_map_stays_within_its_budget(click_map: Path, budget: int) -> None:
    repo_map = load_repo_map(click_map)
    text, n = render_llm_map(repo_map, budget)
    assert n == count_tokens(text) <= budget
    if budget >= 1024:
        for p in ranked_files(repo_map)[:10]:
            assert f"\n{p} (" in text
            assert all(s.name in text for s in key_definitions(repo_map.files[p]))


def test_llm_map_grows_with_its_budget_and_puts_central_files_first(click_map: Path) -> None:
    repo_map = load_repo_map(click_map)
    sizes = [render_llm_map(repo_map, b)[1] for b in (256, 1024, 4096)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[2]
    text, _ = render_llm_map(repo_map, 4096)
    order = ranked_files(repo_map)
    assert text.index(f"\n{order[0]} (") < text.index(f"\n{order[1]} (")
    assert "\n    def " not in text
    big, _ = render_llm_map(repo_map, 16384)
    assert "\n    def invoke(" in big  # methods come, indented, once the budget allows


def test_pylon_map_help_names_the_new_options() -> None:
    from click.testing import CliRunner

    from pylon.cli.main import cli

    res = CliRunner().invoke(cli, ["map", "--help"])
    assert res.exit_code == 0
    for opt in ("--tokens", "--fresh", "--include", "--exclude"):
        assert opt in res.output


# --- overview.md that does not mislead -----------------------------------------------------


def _tree(root: Path) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text('"""The app."""\n')
    for i in range(9):
        (root / "app" / f"mod{i}.py").write_text(
            f"from app import mod{(i + 1) % 9}\n\ndef f{i}():\n    pass\n"
        )
    (root / "tests" / "fixtures").mkdir(parents=True)
    (root / "tests" / "test_app.py").write_text("def test_x():\n    assert True\n")
    for rel in ("go/uuid/node.go", "go/uuid/uuid.go", "rust/semver/lib.rs"):
        (root / "tests" / "fixtures" / Path(rel).name).write_text((CORPUS / rel).read_text())
    (root / "app" / "_vendor").mkdir()
    (root / "app" / "_vendor" / "six.py").write_text("def moves():\n    pass\n")
    (root / "pyproject.toml").write_text('[project]\nname = "app"\n\n[tool.pytest.ini_options]\n')
    (root / "justfile").write_text("# run the tests\ntest:\n    pytest -q\n\nbuild:\n    uv build\n")
    (root / "scripts").mkdir()
    (root / "scripts" / "test").write_text("#!/bin/sh\npytest\n")
    (root / "README.md").write_text(
        "# App\n\nAn app for tests.\n\n```bash\nuv sync  # set up\nuv run pytest -q\n```\n"
    )
    (root / "logo.png").write_bytes(b"\x89PNG\x00\x00binary")
    return root


def test_overview_classifies_and_names_everything(tmp_path: Path) -> None:
    root = _tree(tmp_path / "repo")
    map_locally(root, tmp_path / "out", extract_file)
    text = (tmp_path / "out" / "overview.md").read_text()
    languages = text.split("## Languages")[1].split("How each mapped file")[0]
    # Go and Rust are test fixtures, not the repo's languages; vendored code is not its own.
    assert "| python |" in languages and "| go |" not in languages and "| rust |" not in languages
    assert "| python | 10 |" in languages  # app/*.py, not the test, the fixtures or _vendor
    classified = text.split("How each mapped file")[1].split("##")[0]
    assert "| test fixtures and data | 3 | go 2, rust 1 | `tests/fixtures/` |" in classified
    assert "| vendored copies of other code | 1 |" in classified and "| tests | 1 |" in classified
    # Build files a developer reads first are shown, though no executor parses them.
    build = text.split("## Build, CI and script files")[1].split("##")[0]
    for name in ("pyproject.toml", "justfile", "scripts/test"):
        assert f"`{name}`" in build
    # How to build and test, in the repo's own words.
    how = text.split("## How to build and test")[1].split("##")[0]
    assert "`just test`: run the tests" in how and "`just build`" in how
    assert "`uv run pytest -q`" in how and "`./scripts/test`" in how
    # A directory lists its files or says how many more it has.
    layout = text.split("## Layout")[1].split("## Most central")[0]
    assert "`app/` (" in layout and "… and 8 more" in layout
    # Skipped files are named, each under its reason.
    not_mapped = text.split("## Not mapped")[1]
    assert "binary 1" in not_mapped and "  - binary (1): `logo.png`" in not_mapped
    assert "`justfile`" in not_mapped.split("unsupported (3): ")[1]


# --- --include / --exclude -------------------------------------------------------------------


def test_globs_match_paths_and_directories() -> None:
    assert matches("src/a/b.py", "src/*.py") and matches("src/a/b.py", "src")
    assert matches("tests/x.py", "tests/") and not matches("tests2/x.py", "tests")
    assert not matches("src/a.py", "") and matches("a/b/c.go", "**/*.go")


def test_select_files_counts_and_names_the_excluded(tmp_path: Path) -> None:
    snap = take_snapshot(_tree(tmp_path / "repo"))
    sel = select_files(snap, ["app/*"], ["app/_vendor"])
    assert {f.path for f in sel.files} == {f.path for f in snap.files if f.path.startswith("app/")} - {
        "app/_vendor/six.py"
    }
    assert sel.skipped["excluded"] == len(snap.files) - len(sel.files)
    assert "app/_vendor/six.py" in sel.skipped_files["excluded"]
    assert sel.snapshot_sha256 != snap.snapshot_sha256
    assert select_files(snap, [], []) is snap


# --- the result cache ----------------------------------------------------------------------


def test_result_cache_hits_only_the_same_bytes_path_and_version(tmp_path: Path) -> None:
    snap = take_snapshot(_tree(tmp_path / "repo"))
    f = next(x for x in snap.files if x.path == "app/mod1.py")
    res = FileResult(
        path=f.path,
        language="python",
        lines=4,
        symbols=[Symbol(name="f1", kind="function", line=3)],
        imports=["app"],
        summary="s",
        input_sha256=f.sha256,
        executor="deterministic",
        executor_version=next(iter(current_versions()))[1],
    )

    async def go() -> None:
        db = await BuyerStore.open(tmp_path / "t.db")
        try:
            cache = ResultCache(db)
            assert await cache.lookup(snap.files) == {}
            assert await cache.store(snap.files, {f.path: (res, "prov", "rid")}) == 1
            hit = await cache.lookup(snap.files)
            assert list(hit) == [f.path] and hit[f.path][1:] == ("prov", "rid")
            assert hit[f.path][0].symbols[0].name == "f1"
            # Other bytes at the same path, or another executor version: a miss.
            edited = [type(f)(path=f.path, size=f.size, sha256="0" * 64, language=f.language)]
            assert await cache.lookup(edited) == {}
            await db._conn.execute("UPDATE result_cache SET executor_version = 'd0-older'")
            await db._conn.commit()
            assert await cache.lookup(snap.files) == {}
            assert list(await cache.lookup(snap.files, {("deterministic", "d0-older")})) == [f.path]
            # A result of other bytes than the snapshot's, or of no versioned extractor (a
            # model's summary): never stored.
            for wrong in (
                msgspec_replace(res, input_sha256="f" * 64),
                msgspec_replace(res, executor_version=""),
            ):
                assert await cache.store(snap.files, {f.path: (wrong, "p", "r")}) == 0
        finally:
            await db.close()

    anyio.run(go)


def msgspec_replace(res: FileResult, **kw: object) -> FileResult:
    import msgspec

    return msgspec.structs.replace(res, **kw)


def test_repo_map_json_names_skipped_files(tmp_path: Path) -> None:
    root = _tree(tmp_path / "repo")
    map_locally(root, tmp_path / "out", extract_file)
    data = json.loads((tmp_path / "out" / "repo_map.json").read_text())
    assert "logo.png" in data["skipped_files"]["binary"]
    assert "justfile" in data["skipped_files"]["unsupported"]
