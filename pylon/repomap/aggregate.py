"""Fan-in: per-file results become repo_map.json, overview.md and the search index (DESIGN §5)."""

from __future__ import annotations

import os
import re
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import msgspec

from pylon.logs import get_logger
from pylon.repomap.graph import FileGraph, PathIndex, build_graph, resolve_import
from pylon.repomap.llm_map import DEFAULT_TOKENS, REPO_MAP_MD_NAME, render_llm_map
from pylon.repomap.overview_facts import (
    CODE,
    DOCS,
    FIXTURE,
    KIND_LABELS,
    TEST,
    VENDORED,
    build_commands,
    build_files,
    classify,
)
from pylon.repomap.pagerank import pagerank
from pylon.repomap.prose import escape_markdown
from pylon.repomap.search_index import INDEX_NAME, build_index
from pylon.schemas.events import FileResult
from pylon.schemas.repomap import MapFileEntry, MapSymbol, RepoMap, Snapshot
from pylon.untrusted import json_loads

log = get_logger(__name__)

REPO_MAP_NAME = "repo_map.json"
OVERVIEW_NAME = "overview.md"
TOP_CENTRAL = 10
KEY_FILES = 3  # per directory in the layout
MAX_ENTRY_POINTS = 20
# Files whose summary describes their directory, best first (matched on the file name).
_DIR_DOC_NAMES = (
    "readme.md", "readme.rst", "readme.txt", "readme", "__init__.py", "doc.go", "mod.rs",
    "lib.rs", "package-info.java", "index.ts", "index.js", "index.tsx", "index.jsx", "main.go",
)  # fmt: skip
_ENTRY_DIRS = ("cmd", "bin", "scripts")


def build_repo_map(
    *,
    run_id: str,
    snapshot: Snapshot,
    results: Mapping[str, tuple[FileResult, str, str]],
    failed: Mapping[str, str],
    graph: FileGraph,
    disputed: Iterable[str] = (),
) -> RepoMap:
    ranks = pagerank(graph.nodes, graph.edges)
    used_by = graph.used_by()
    sha = {f.path: f.sha256 for f in snapshot.files}
    files: dict[str, MapFileEntry] = {}
    symbols: dict[str, set[str]] = defaultdict(set)
    for path in sorted(results):
        res, provider, result_id = results[path]
        files[path] = MapFileEntry(
            language=res.language,
            summary=res.summary,
            symbols=[
                MapSymbol(name=s.name, kind=s.kind, line=s.line, signature=s.signature, parent=s.parent)
                for s in res.symbols
            ],
            imports=list(res.imports),
            provider=provider,
            result_id=result_id,
            lines=res.lines,
            rank=round(ranks.get(path, 0.0), 6),
            depends_on=graph.depends_on(path),
            used_by=used_by.get(path, []),
            executor=res.executor,
            model=res.model,
            sha256=sha.get(path, res.input_sha256),
        )
        for s in res.symbols:
            symbols[s.name].add(path)
    return RepoMap(
        run_id=run_id,
        root=snapshot.root,
        files=files,
        symbols={name: sorted(paths) for name, paths in sorted(symbols.items())},
        repo=snapshot.repo,
        commit=snapshot.commit,
        snapshot_sha256=snapshot.snapshot_sha256,
        failed=dict(sorted(failed.items())),
        skipped=dict(snapshot.skipped),
        skipped_files=dict(snapshot.skipped_files),
        disputed=sorted(p for p in set(disputed) if p in files),
    )


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class MapFacts:
    """What a run's artifacts are written from, computed once: the map and the overview's facts."""

    out_dir: Path
    repo_map: RepoMap
    entry_points: list[tuple[str, str]]
    commands: list[tuple[str, str]]


def gather_facts(
    out_dir: Path,
    *,
    run_id: str,
    snapshot: Snapshot,
    results: Mapping[str, tuple[FileResult, str, str]],
    failed: Mapping[str, str] | None = None,
    disputed: Iterable[str] = (),
) -> MapFacts:
    """The repo map (graph and ranks included), its entry points and commands; writes nothing.
    `disputed`: files whose result a spot check disagreed with and no vote settled."""
    failed = dict(failed or {})
    graph = build_graph({p: r for p, (r, _, _) in results.items()}, paths=failed)
    repo_map = build_repo_map(
        run_id=run_id, snapshot=snapshot, results=results, failed=failed, graph=graph, disputed=disputed
    )
    root = Path(snapshot.root)
    return MapFacts(
        out_dir=Path(out_dir),
        repo_map=repo_map,
        entry_points=find_entry_points(repo_map, root),
        commands=build_commands(root),
    )


def write_data(facts: MapFacts, *, tokens: int = DEFAULT_TOKENS) -> dict[str, str]:
    """repo_map.json, repo_map.md (fitted to `tokens`) and index.sqlite: every artifact but the
    overview, so they can be written while the model writes the overview's narrative."""
    out_dir = facts.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    repo_map = facts.repo_map
    map_path = out_dir / REPO_MAP_NAME
    _write(map_path, msgspec.json.format(msgspec.json.encode(repo_map), indent=2) + b"\n")
    md_path = out_dir / REPO_MAP_MD_NAME
    md_text, md_tokens = render_llm_map(repo_map, tokens)
    _write(md_path, md_text.encode("utf-8"))
    index = build_index(out_dir / INDEX_NAME, repo_map)
    log.info(
        "artifacts",
        run_id=repo_map.run_id,
        out_dir=str(out_dir),
        files=len(repo_map.files),
        failed=len(repo_map.failed),
        repo_map_md_tokens=md_tokens,
    )
    return {"repo_map": str(map_path), "repo_map_md": str(md_path), "index": str(index)}


def write_overview(facts: MapFacts, *, narrative: str | None = None, narrative_by: str = "") -> str:
    """overview.md, with the model's narrative when there is one; returns its path."""
    facts.out_dir.mkdir(parents=True, exist_ok=True)
    path = facts.out_dir / OVERVIEW_NAME
    text = render_overview(
        facts.repo_map,
        entry_points=facts.entry_points,
        narrative=narrative,
        narrative_by=narrative_by,
        commands=facts.commands,
    )
    _write(path, text.encode("utf-8"))
    return str(path)


def facts_text(facts: MapFacts, limit: int) -> str:
    """The overview without a narrative, cut at a line within `limit` chars: what a model writes
    the narrative from (its commands left out: they are the repo's, not the map's findings)."""
    text = render_overview(facts.repo_map, entry_points=facts.entry_points, narrative=None)
    if len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        text = text[: cut if cut > 0 else limit] + "\n\n(facts truncated)\n"
    return text


def build_artifacts(
    out_dir: Path,
    *,
    run_id: str,
    snapshot: Snapshot,
    results: Mapping[str, tuple[FileResult, str, str]],
    failed: Mapping[str, str] | None = None,
    narrative: str | None = None,
    narrative_by: str = "",
    tokens: int = DEFAULT_TOKENS,
) -> dict[str, str]:
    """Write repo_map.json, repo_map.md (fitted to `tokens`), overview.md and index.sqlite to
    out_dir; return their paths.

    results: path -> (accepted result, provider pubkey, result event id);
    failed: path -> error code of the files that got no valid result.
    """
    facts = gather_facts(out_dir, run_id=run_id, snapshot=snapshot, results=results, failed=failed)
    data = write_data(facts, tokens=tokens)
    return artifact_paths(data, write_overview(facts, narrative=narrative, narrative_by=narrative_by))


def artifact_paths(data: Mapping[str, str], overview: str) -> dict[str, str]:
    """A run's artifact paths, in the order users see them: write_data's and the overview's."""
    return {
        "repo_map": data["repo_map"],
        "repo_map_md": data["repo_map_md"],
        "overview": overview,
        "index": data["index"],
    }


def load_repo_map(path: Path) -> RepoMap:
    """Decode a repo_map.json (or the one in an artifacts directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / REPO_MAP_NAME
    return msgspec.json.decode(p.read_bytes(), type=RepoMap)


# --- overview.md ----------------------------------------------------------------------------


def one_line(text: str, limit: int = 160) -> str:
    """The first sentence of a line of prose, whitespace collapsed, at most `limit` chars."""
    text = " ".join(text.split())
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    if m and len(m.group(1)) >= 20:
        text = m.group(1)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# The deterministic executor's summary opens with "path — language, N lines, ..." and, after
# the file's own doc lines, lists imports and definitions; only the doc lines are prose.
_HEADER_RE = re.compile(r"^\S+ — [\w+#-]+, \d+ lines\b")
_LISTING_RE = re.compile(
    r"^(?:[a-z][a-z ]*: |… |(?:async |export |pub(?:\(\w+\))? |public |private |static )*"
    r"(?:def|class|fn|func|function|struct|enum|interface|trait|impl|type|const|let|var|typedef|"
    r"package|module|mod|namespace|#define)\b)"
)
# Headings, badges, html, rules, tables, rst directives, pragmas, licence boilerplate.
_NOT_PROSE_RE = re.compile(
    r"^(?:#|!\[|\[!\[|<|---|===|```|\||\* \* \*|\.\. |[\w-]+:\S|-\*-|SPDX-|copyright|\(c\)|@|\./|\$ |\.venv/"
    r"|(?:authors?|maintainers?|licen[cs]e)\b)",
    re.IGNORECASE,
)
_MAJOR_KINDS = ("class", "struct", "interface", "trait", "enum", "function", "type")


def describe_file(entry: MapFileEntry) -> str:
    """One line on what a file is for: its first line of prose, else the main names it defines."""
    lines = [line.strip() for line in entry.summary.splitlines() if line.strip()]
    if lines and _HEADER_RE.match(lines[0]):
        lines = lines[1:]
    prose: list[str] = []
    for line in lines[:6]:
        if _LISTING_RE.match(line):
            break
        if _NOT_PROSE_RE.match(line) or not re.search(r"[A-Za-z]{3}", line):
            if prose:
                break
            continue
        prose.append(line)  # a doc paragraph wrapped over several lines
    if prose:
        return one_line(" ".join(prose))
    names = list(dict.fromkeys(s.name for s in entry.symbols if not s.parent and s.kind in _MAJOR_KINDS))
    names.sort(key=lambda n: n.startswith("_"))  # public names first, in file order
    if not names:
        return ""
    more = f" and {len(names) - 4} more" if len(names) > 4 else ""
    return "defines " + ", ".join(f"`{n}`" for n in names[:4]) + more


def _md(text: str) -> str:
    """Keep a summary from breaking the surrounding markdown."""
    return text.replace("|", "\\|").replace("\n", " ")


_TEST_DIRS = frozenset({"test", "tests", "__tests__", "spec", "specs", "testdata", "fixtures", "testing"})
_TEST_FILE_RE = re.compile(r"(^test_.*|.*_test\.\w+|.*\.(test|spec)\.\w+|conftest\.py)$")


def is_test_path(path: str) -> bool:
    parts = path.split("/")
    return any(p in _TEST_DIRS for p in parts[:-1]) or bool(_TEST_FILE_RE.match(parts[-1]))


MAX_GROUPS = 30


def _groups(paths: Iterable[str]) -> dict[str, list[str]]:
    """Top-level directories; the biggest ones with subdirectories are shown a level deeper."""
    paths = sorted(paths)
    by_top: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        by_top[p.split("/")[0] if "/" in p else ""].append(p)
    groups = dict(by_top)
    for top in sorted(by_top, key=lambda t: (-len(by_top[t]), t)):
        members = by_top[top]
        if not top or len(members) < 8:
            continue
        split: dict[str, list[str]] = defaultdict(list)
        for p in members:
            parts = p.split("/")
            split["/".join(parts[:2]) if len(parts) > 2 else top].append(p)
        if len(split) - (top in split) < 2 or len(groups) - 1 + len(split) > MAX_GROUPS:
            continue
        del groups[top]
        groups.update(split)
    return dict(sorted(groups.items()))


def _dir_doc(prefix: str, paths: Iterable[str], files: Mapping[str, MapFileEntry]) -> str:
    """What the directory's README / package doc says about it, or ""."""
    docs = []
    for p in paths:
        lname = p[len(prefix) :].lower() if p.startswith(prefix) else ""
        if lname in _DIR_DOC_NAMES:
            docs.append((_DIR_DOC_NAMES.index(lname), p))
    for _, p in sorted(docs):
        text = describe_file(files[p])
        if text and not text.startswith("defines "):
            return text
    return ""


def _describe(group: str, paths: list[str], files: Mapping[str, MapFileEntry]) -> str:
    if not group:
        return ""  # the root README describes the whole repository, at the top
    text = _dir_doc(group + "/", paths, files)
    if not text and all(is_test_path(p) for p in paths):
        text = "tests and their fixtures"
    return text


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _kinds(repo_map: RepoMap) -> dict[str, str]:
    return {p: classify(p, e.language) for p, e in repo_map.files.items()}


def _languages_table(repo_map: RepoMap, kinds: Mapping[str, str]) -> list[str]:
    """The repo's own languages: its code only (tests, fixtures, vendored copies and docs are
    counted in the table after this one, so a corpus of test data cannot pass for the repo)."""
    files: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    for path, entry in repo_map.files.items():
        if kinds[path] != CODE:
            continue
        files[entry.language or "unknown"] += 1
        lines[entry.language or "unknown"] += entry.lines
    if not files:
        return ["No file was classified as the repo's own code (see below)."]
    out = ["| language | files | lines |", "|---|---:|---:|"]
    for lang in sorted(files, key=lambda k: (-files[k], -lines[k], k)):
        out.append(f"| {lang} | {files[lang]} | {lines[lang]:,} |")
    out.append(f"| **total** | {sum(files.values())} | {sum(lines.values()):,} |")
    return out


def _dir_of(path: str) -> str:
    """The directory a file is in, two levels deep at most ("./" at the top)."""
    parts = path.split("/")[:-1]
    return "/".join(parts[:2]) + "/" if parts else "./"


def _kinds_table(repo_map: RepoMap, kinds: Mapping[str, str]) -> list[str]:
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    dirs: dict[str, Counter[str]] = defaultdict(Counter)
    for path, kind in kinds.items():
        by_kind[kind][repo_map.files[path].language or "unknown"] += 1
        dirs[kind][
            "/".join(path.split("/")[:2]) + "/"
            if path.count("/") >= 2
            else path.rsplit("/", 1)[0] + "/"
            if "/" in path
            else "./"
        ] += 1
    out = [
        "How each mapped file was classified (by its path: test, fixture and vendored directories; "
        "README files are docs). Only code counts in the languages above.",
        "",
        "| classified as | files | languages | where |",
        "|---|---:|---|---|",
    ]
    for kind in (CODE, TEST, FIXTURE, VENDORED, DOCS):
        if kind not in by_kind:
            continue
        langs = ", ".join(f"{lang} {n}" for lang, n in by_kind[kind].most_common(6))
        where = ", ".join(f"`{d}`" for d, _ in dirs[kind].most_common(3))
        more = f" and {len(dirs[kind]) - 3} more" if len(dirs[kind]) > 3 else ""
        out.append(f"| {KIND_LABELS[kind]} | {sum(by_kind[kind].values())} | {langs} | {where}{more} |")
    return out


def _names(paths: list[str], total: int, shown: int = 20) -> str:
    """Paths, backquoted, comma-separated; "and N more" past `shown` or what was recorded."""
    text = ", ".join(f"`{_md(p)}`" for p in paths[:shown])
    more = total - min(len(paths), shown)
    return f"{text} and {more} more" if text and more > 0 else text


def render_overview(
    repo_map: RepoMap,
    *,
    entry_points: list[tuple[str, str]],
    narrative: str | None,
    narrative_by: str = "",
    commands: list[tuple[str, str]] | None = None,
) -> str:
    """The newcomer's page: what is here, what matters most, where it starts. Deterministic.

    `narrative` is a model's prose from some node: it is capped and escaped here, whoever calls,
    and `narrative_by` (pylon.repomap.prose.attribution) says whose it is.
    """
    files = repo_map.files
    kinds = _kinds(repo_map)
    out: list[str] = [f"# Repository overview: {repo_map.repo or repo_map.root}", ""]
    facts = [f"{_count(len(files), 'file')} mapped"]
    if repo_map.commit:
        facts.insert(0, f"commit `{repo_map.commit[:12]}`")
    if repo_map.failed:
        facts.append(f"{len(repo_map.failed)} failed")
    if repo_map.skipped:
        facts.append(f"{sum(repo_map.skipped.values())} skipped")
    facts.append(f"run `{repo_map.run_id}`")
    out += [" · ".join(facts), ""]
    about = _dir_doc("", [p for p in files if "/" not in p], files)
    if about:
        out += [f"> {_md(about)}", ""]

    if narrative and narrative.strip():
        out += ["## Summary", "", escape_markdown(narrative), ""]
        if narrative_by:
            out += [narrative_by, ""]

    out += ["## Languages", "", *_languages_table(repo_map, kinds), ""]
    if files:
        out += [*_kinds_table(repo_map, kinds), ""]

    if commands:
        out += ["## How to build and test", "", "As the repository itself says (its own files, quoted):", ""]
        out += [f"- `{cmd}`: {_md(why)}" for cmd, why in commands]
        out.append("")

    build = build_files(sorted(files), repo_map.skipped_files)
    if build:
        out += ["## Build, CI and script files", ""]
        out += [f"- `{p}`" + ("" if how == "mapped" else f" ({how})") for p, how in build[:30]]
        if len(build) > 30:
            out.append(f"- … and {len(build) - 30} more")
        out.append("")

    if files:
        out += ["## Layout", ""]
        for group, paths in _groups(files).items():
            lines = sum(files[p].lines for p in paths)
            label = f"`{group}/`" if group else "top-level files"
            desc = _describe(group, paths, files)
            group_kinds = Counter(kinds[p] for p in paths)
            langs = Counter(files[p].language for p in paths)
            what = ", ".join(f"{lang} {n}" for lang, n in langs.most_common(4))
            if len(group_kinds) == 1 and CODE not in group_kinds:
                what = f"{KIND_LABELS[next(iter(group_kinds))]}; {what}"
            head = f"- {label} ({_count(len(paths), 'file')}, {_count(lines, 'line')}; {what})"
            out.append(f"{head}: {_md(desc)}" if desc else head)
            # The directory's own tests and code first, its fixtures and vendored copies after.
            ordered = sorted(paths, key=lambda p: (kinds[p] in (FIXTURE, VENDORED), -files[p].rank, p))
            shown = ordered if len(ordered) <= KEY_FILES + 1 else ordered[:KEY_FILES]
            for p in shown:
                what_file = describe_file(files[p])
                out.append(f"  - `{p}`" + (f": {_md(what_file)}" if what_file else ""))
            if len(ordered) > len(shown):
                out.append(f"  - … and {len(ordered) - len(shown)} more")
        out.append("")

        out += [
            "## Most central files",
            "",
            "Ranked by PageRank over imports and references (tests, fixtures and vendored code left out).",
            "",
        ]
        ranked = sorted(files, key=lambda p: (-files[p].rank, p))
        code = [p for p in ranked if kinds[p] == CODE] or ranked
        central = ([p for p in code if files[p].used_by] or code)[:TOP_CENTRAL]
        for i, p in enumerate(central, start=1):
            e = files[p]
            users = f", used by {len(e.used_by)}" if e.used_by else ""
            summary = describe_file(e)
            out.append(f"{i}. `{p}` (rank {e.rank:.4f}{users})" + (f": {_md(summary)}" if summary else ""))
        out.append("")

    out += ["## Entry points", ""]
    if entry_points:
        out += [f"- `{p}`: {why}" for p, why in entry_points]
    else:
        out.append("- none found")
    out.append("")

    if repo_map.disputed:
        out += [
            "## Disputed",
            "",
            f"Spot checks disagreed over the results of {_count(len(repo_map.disputed), 'file')} and no "
            "majority settled it; the map keeps the first node's answer:",
            "",
            f"- {_names(repo_map.disputed, len(repo_map.disputed))}",
            "",
        ]

    if repo_map.failed or repo_map.skipped:
        out += ["## Not mapped", ""]
        if repo_map.failed:
            codes = Counter(repo_map.failed.values())
            out.append("- failed: " + ", ".join(f"{c} {n}" for c, n in sorted(codes.items())))
            shown_failed = sorted(repo_map.failed)[:20]
            out += [f"  - `{p}` ({repo_map.failed[p]})" for p in shown_failed]
            if len(repo_map.failed) > len(shown_failed):
                out.append(f"  - … and {len(repo_map.failed) - len(shown_failed)} more")
        if repo_map.skipped:
            out.append("- skipped: " + ", ".join(f"{r} {n}" for r, n in sorted(repo_map.skipped.items())))
        for reason, n in sorted(repo_map.skipped.items()):
            names = _names(repo_map.skipped_files.get(reason, []), n)
            if names:
                out.append(f"  - {reason} ({n}): {names}")
        out.append("")
    return "\n".join(out)


# --- entry points ---------------------------------------------------------------------------


def _is_main_symbol(entry: MapFileEntry) -> bool:
    return any(s.name == "main" and s.kind in ("function", "method") for s in entry.symbols)


def _manifest_entry_points(root: Path, repo_map: RepoMap) -> list[tuple[str, str]]:
    """Console scripts and bins declared in pyproject.toml / package.json / Cargo.toml at the root."""
    found: list[tuple[str, str]] = []
    idx = PathIndex(repo_map.files)
    try:
        pyproject = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))
    except (OSError, ValueError, RecursionError):  # a stranger's repo: nesting included
        pyproject = {}
    project = pyproject.get("project", {}) if isinstance(pyproject, dict) else {}
    for table in ("scripts", "gui-scripts"):
        scripts = project.get(table, {}) if isinstance(project, dict) else {}
        for name, target in sorted(scripts.items()) if isinstance(scripts, dict) else []:
            module = str(target).split(":")[0].strip()
            hits = resolve_import(module, "pyproject.toml", "python", idx)
            where = hits[0][0] if hits else "pyproject.toml"
            found.append((where, f"console script `{name}` → `{target}`"))
    try:
        package = json_loads((root / "package.json").read_text("utf-8"))  # total: a stranger's repo
    except (OSError, ValueError):
        package = {}
    if isinstance(package, dict):
        bins = package.get("bin")
        if isinstance(bins, str):
            bins = {package.get("name", "bin"): bins}
        for name, target in sorted(bins.items()) if isinstance(bins, dict) else []:
            found.append((_npm_path(str(target), idx), f"npm bin `{name}`"))
        if isinstance(package.get("main"), str):
            found.append((_npm_path(package["main"], idx), "package.json main"))
    try:
        cargo = tomllib.loads((root / "Cargo.toml").read_text("utf-8"))
    except (OSError, ValueError, RecursionError):  # a stranger's repo: nesting included
        cargo = {}
    for b in cargo.get("bin", []) if isinstance(cargo, dict) else []:
        if isinstance(b, dict) and b.get("path"):
            found.append((str(b["path"]), f"cargo bin `{b.get('name', '')}`"))
    return found


def _npm_path(target: str, idx: PathIndex) -> str:
    spec = target if target.startswith(".") else "./" + target
    hits = resolve_import(spec, "package.json", "javascript", idx)
    return hits[0][0] if hits else PurePosixPath(target).as_posix().removeprefix("./")


def find_entry_points(repo_map: RepoMap, root: Path | None = None) -> list[tuple[str, str]]:
    """(path, why) for the places a program starts: declared ones, then by convention, then main()."""
    found: list[tuple[int, str, str]] = []  # (strength, path, why)
    if root is not None:
        found += [(0, p, why) for p, why in _manifest_entry_points(root, repo_map)]
    for path, entry in sorted(repo_map.files.items()):
        name = PurePosixPath(path).name
        dirs = path.split("/")[:-1]
        if is_test_path(path) or classify(path, entry.language) != CODE:
            continue
        if name == "__main__.py":
            found.append((1, path, "`python -m` entry (`__main__.py`)"))
        elif name == "main.rs" and "src" in dirs:
            found.append((1, path, "Rust binary (`src/main.rs`)"))
        elif name.endswith(".rs") and "bin" in dirs and "src" in dirs:
            found.append((1, path, "Rust binary (`src/bin/`)"))
        elif any(d in dirs for d in _ENTRY_DIRS) and (_is_main_symbol(entry) or "bin" in dirs):
            found.append((1, path, f"`{next(d for d in _ENTRY_DIRS if d in dirs)}/` program"))
        elif _is_main_symbol(entry):
            found.append((2, path, "defines `main()`"))
    seen: set[str] = set()
    unique = []
    for _, path, why in sorted(found, key=lambda f: (f[0], f[1])):
        if path not in seen:
            seen.add(path)
            unique.append((path, why))
    return unique[:MAX_ENTRY_POINTS]
