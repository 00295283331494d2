"""Fan-in: repo_map.json follows the DESIGN §5 contract, overview.md reads right, search finds things."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from pylon.schemas.events import FileResult, Symbol
from pylon.schemas.repomap import MapFileEntry, MapSymbol

from pylon.repomap import SearchIndexError, build_artifacts, load_repo_map, map_locally, query, take_snapshot
from pylon.repomap.aggregate import describe_file, is_test_path

FILES = {
    "pyproject.toml": '[project]\nname = "acme"\n[project.scripts]\nacme = "acme.cli:main"\n',
    "README.md": "# Acme\n\nA toy widget store.\n",
    "acme/__init__.py": '"""Acme: a toy widget store with an HTTP API."""\n',
    "acme/__main__.py": "from .cli import main\n\nmain()\n",
    "acme/cli.py": "from .store import WidgetStore\nfrom .models import Widget\n\n\ndef main():\n    pass\n",
    "acme/models.py": "class Widget:\n    pass\n\n\nclass Inventory:\n    pass\n",
    "acme/store.py": "from .models import Widget, Inventory\n\n\nclass WidgetStore:\n    def add(self): ...\n",  # noqa: E501
    "acme/api/__init__.py": '"""HTTP routes."""\n',
    "acme/api/http.py": "import acme.models\nimport acme.store\n\n\ndef create_app():\n    pass\n",
    "acme/broken.py": "this is not python (\n",
    "tests/test_store.py": "from acme.store import WidgetStore\n\n\ndef test_add():\n    pass\n",
    "logo.png": "\x00PNG",
}

SUMMARIES = {
    "README.md": "Acme is a toy widget store.",
    "acme/__init__.py": "Acme: a toy widget store with an HTTP API.",
    "acme/__main__.py": "Runs the command line.",
    "acme/cli.py": "The command line: parses arguments and calls the store.",
    "acme/models.py": "Data models: Widget and Inventory.",
    "acme/store.py": "Persists widgets | keeps an inventory.",
    "acme/api/__init__.py": "HTTP routes.",
    "acme/api/http.py": "The HTTP application factory.",
    "tests/test_store.py": "Tests for the widget store.",
}


def extract(path: str, text: str, language: str | None) -> FileResult:
    """A tiny stand-in for the deterministic executor (regex, Python only)."""
    if path == "acme/broken.py":
        raise SyntaxError("cannot parse")
    symbols: list[Symbol] = []
    imports: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if m := re.match(r"(\s*)(class|def)\s+(\w+)(.*?):?$", line):
            kind = "class" if m.group(2) == "class" else ("method" if m.group(1) else "function")
            symbols.append(Symbol(m.group(3), kind, n, signature=line.strip()))
        elif m := re.match(r"from\s+(\S+)\s+import\s+(.+)", line):
            imports.append(line)
        elif m := re.match(r"import\s+(\S+)", line):
            imports.append(m.group(1))
    return FileResult(
        path=path,
        language=language or "text",
        lines=len(text.splitlines()),
        symbols=symbols,
        imports=imports,
        summary=SUMMARIES.get(path, ""),
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "acme-repo"
    for rel, text in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def artifacts(tree: Path, tmp_path: Path) -> dict[str, str]:
    snap = take_snapshot(tree)
    results = {}
    failed = {}
    for f in snap.files:
        try:
            res = extract(f.path, (tree / f.path).read_text(), f.language)
        except SyntaxError:
            failed[f.path] = "exec_error"
            continue
        results[f.path] = (res, "npub-" + f.path.replace("/", "-"), "evt-" + f.sha256[:8])
    return build_artifacts(
        tmp_path / "out",
        run_id="run-1",
        snapshot=snap,
        results=results,
        failed=failed,
        narrative="Acme sells widgets.\n\nThe store is the heart of it.",
    )


def test_repo_map_json_follows_the_contract(artifacts: dict[str, str], tree: Path) -> None:
    assert set(artifacts) == {"repo_map", "repo_map_md", "overview", "index"}
    assert all(Path(p).is_file() for p in artifacts.values())
    doc = json.loads(Path(artifacts["repo_map"]).read_text())
    assert {"run_id", "root", "files", "symbols"} <= set(doc)
    assert doc["run_id"] == "run-1" and doc["root"] == str(tree.resolve())
    assert set(doc["files"]) == set(SUMMARIES)
    for path, entry in doc["files"].items():
        assert {"language", "summary", "symbols", "imports", "provider", "result_id"} <= set(entry)
        assert isinstance(entry["language"], str) and isinstance(entry["summary"], str)
        assert all(isinstance(i, str) for i in entry["imports"])
        assert entry["provider"] == "npub-" + path.replace("/", "-")
        assert entry["result_id"].startswith("evt-")
        for sym in entry["symbols"]:
            assert isinstance(sym["name"], str) and isinstance(sym["kind"], str)
            assert isinstance(sym["line"], int) and sym["line"] >= 1
    assert doc["symbols"]["Widget"] == ["acme/models.py"]
    assert doc["symbols"]["main"] == ["acme/cli.py"]
    assert all(isinstance(v, list) for v in doc["symbols"].values())
    assert doc["failed"] == {"acme/broken.py": "exec_error"}
    assert doc["skipped"] == {"binary": 1, "unsupported": 1}  # logo.png, pyproject.toml
    # load_repo_map decodes the same file into the typed Struct
    assert load_repo_map(Path(artifacts["repo_map"]).parent).files["acme/models.py"].lines == 6


def test_ranks_and_edges(artifacts: dict[str, str]) -> None:
    doc = json.loads(Path(artifacts["repo_map"]).read_text())
    files = doc["files"]
    ranks = {p: e["rank"] for p, e in files.items()}
    assert max(ranks, key=ranks.get) == "acme/models.py"  # imported by cli, store and http
    assert 0.9 < sum(ranks.values()) <= 1.0 + 1e-6  # the failed file holds the rest
    assert files["acme/models.py"]["used_by"] == ["acme/api/http.py", "acme/cli.py", "acme/store.py"]
    assert files["acme/cli.py"]["depends_on"] == ["acme/models.py", "acme/store.py"]
    assert files["tests/test_store.py"]["depends_on"] == ["acme/store.py"]


def test_overview_reads_like_a_newcomers_page(artifacts: dict[str, str]) -> None:
    text = Path(artifacts["overview"]).read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Summary",
        "## Languages",
        "## Build, CI and script files",
        "## Layout",
        "## Most central files",
        "## Entry points",
        "## Not mapped",
    ]
    assert "Acme sells widgets.\n\nThe store is the heart of it." in text
    # The repo's languages count its code only (issue 12): the test file and README are
    # classified, and said to be, apart.
    assert "| python | 7 |" in text and "| text |" not in text.split("How each mapped file")[0]
    assert "| tests | 1 | python 1 |" in text and "| docs (READMEs) | 1 | text 1 |" in text
    assert "- `pyproject.toml` (skipped: unsupported)" in text
    assert "- `acme/` (7 files" in text and "Acme: a toy widget store with an HTTP API." in text
    central = text.split("## Most central files")[1].split("##")[0]
    first = next(line for line in central.splitlines() if line.startswith("1. "))
    assert first.startswith("1. `acme/models.py`") and "Data models" in first
    assert "acme/api/http.py" not in central  # nothing imports it: not central
    assert "- `tests/` (1 file, 5 lines; tests; python 1): tests and their fixtures" in text
    assert "Persists widgets \\| keeps an inventory." in text  # a '|' cannot break the markdown
    entry = text.split("## Entry points")[1].split("##")[0]
    assert "`acme/cli.py`: console script `acme` → `acme.cli:main`" in entry
    assert "`acme/__main__.py`" in entry
    assert "> Acme is a toy widget store." in text  # the root README, under the title
    assert "  - `acme/models.py`: Data models: Widget and Inventory." in text  # a key file of acme/
    assert "failed: exec_error 1" in text and "`acme/broken.py` (exec_error)" in text
    assert "skipped: binary 1, unsupported 1" in text


def test_artifacts_are_deterministic(tree: Path, tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        summary = map_locally(tree, tmp_path / name, extract, run_id="same")
        outs.append(summary["artifacts"])
    for key in ("repo_map", "overview"):
        assert Path(outs[0][key]).read_bytes() == Path(outs[1][key]).read_bytes()


def test_query_puts_the_defining_file_first(artifacts: dict[str, str]) -> None:
    out = Path(artifacts["index"]).parent
    hits = query(out, "class Widget")
    assert hits[0].path == "acme/models.py"
    assert [s.name for s in hits[0].symbols][:1] == ["Widget"]
    assert hits == sorted(hits, key=lambda h: -h.score)
    assert query(out, "WidgetStore")[0].path == "acme/store.py"
    assert query(out, "widget store")[0].path == "acme/store.py"  # camelCase split
    assert query(out, "create_app")[0].path == "acme/api/http.py"
    assert query(out, "api/http.py")[0].path == "acme/api/http.py"
    assert "acme/cli.py" in [h.path for h in query(out, "command line arguments")[:3]]
    assert query(out, "Inventor")[0].path == "acme/models.py"  # no exact hit: prefix fallback
    assert query(out, "zebra") == []
    assert len(query(out, "widget", limit=2)) == 2
    # the index file itself works as well as its directory
    assert query(Path(artifacts["index"]), "class Widget")[0].path == "acme/models.py"


@pytest.mark.parametrize(
    "words",
    ['"', 'foo"bar', "AND", "OR NOT", "(", ")", "a:b", "*", "NEAR(", "^x", "-x", "{a b}", "\\", "",
     "'; DROP TABLE docs; --", "widget*", "Widget AND", "col:Widget", "ünïcödé", "+++"],
)  # fmt: skip
def test_query_never_raises_on_fts5_syntax(artifacts: dict[str, str], words: str) -> None:
    hits = query(Path(artifacts["index"]).parent, words)
    assert isinstance(hits, list)
    if "widget" in words.lower():
        assert hits and hits[0].path in {"acme/models.py", "acme/store.py"}


def test_query_without_an_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SearchIndexError, match="no search index"):
        query(tmp_path, "x")
    (tmp_path / "index.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(SearchIndexError, match="cannot read"):
        query(tmp_path, "x")


def test_map_locally_records_failures_and_goes_on(tree: Path, tmp_path: Path) -> None:
    summary = map_locally(tree, tmp_path / "out", extract)
    assert summary["files"] == 10 and summary["completed"] == 9 and summary["failed"] == 1
    assert summary["providers"] == 1 and summary["run_id"].startswith("local-")
    assert summary["skipped"] == {"binary": 1, "unsupported": 1}
    assert math.isfinite(summary["wall_s"]) and summary["wall_s"] >= 0
    doc = json.loads(Path(summary["artifacts"]["repo_map"]).read_text())
    assert doc["failed"] == {"acme/broken.py": "exec_error"}
    assert {e["provider"] for e in doc["files"].values()} == {"local"}


def test_empty_repo_still_writes_valid_artifacts(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    summary = map_locally(tmp_path / "empty", tmp_path / "out", extract)
    assert summary["files"] == 0 and summary["completed"] == 0
    doc = json.loads(Path(summary["artifacts"]["repo_map"]).read_text())
    assert doc["files"] == {} and doc["symbols"] == {}
    assert "- none found" in Path(summary["artifacts"]["overview"]).read_text()
    assert query(tmp_path / "out", "anything") == []


def entry(summary: str, symbols: Sequence[MapSymbol] = ()) -> MapFileEntry:
    return MapFileEntry(
        language="python", summary=summary, symbols=list(symbols), imports=[], provider="p", result_id="r"
    )


def test_describe_file_finds_the_prose_in_an_executor_summary() -> None:
    deterministic = (
        "pkg/store.py — python, 48 lines, 3 symbols\n"
        "Persists widgets to SQLite. Thread-safe.\n"
        "imports: sqlite3\n"
        "class Store — the store"
    )
    assert describe_file(entry(deterministic)) == "Persists widgets to SQLite."
    listing_only = "pkg/x.py — python, 9 lines, 2 symbols\nimports: os\ndef run()\nclass Engine"
    syms = [
        MapSymbol("Engine", "class", 3),
        MapSymbol("go", "method", 4, parent="Engine"),
        MapSymbol("run", "function", 1),
    ]
    assert describe_file(entry(listing_only, syms)) == "defines `Engine`, `run`"
    readme = "README.md — text, 30 lines\n# Acme\n[![ci](x)](y)\nAcme sells widgets to everyone."
    assert describe_file(entry(readme)) == "Acme sells widgets to everyone."
    assert describe_file(entry("")) == ""
    prose = "A long model-written summary that goes on and on. " * 10
    assert describe_file(entry(prose)) == "A long model-written summary that goes on and on."


def test_is_test_path() -> None:
    for p in (
        "tests/test_x.py",
        "pkg/tests/a.py",
        "test_x.py",
        "x_test.go",
        "web/a.spec.ts",
        "conftest.py",
        "tests/fixtures/corpus/go/a.go",
    ):
        assert is_test_path(p), p
    for p in ("pkg/testing_utils.py", "src/contest.py", "latest/x.py"):
        assert not is_test_path(p), p
