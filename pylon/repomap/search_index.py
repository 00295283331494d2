"""SQLite FTS5 search over a repo map: paths, symbol names, signatures and summaries.

One FTS5 row per file. Symbol names are indexed whole and split (camelCase, snake_case), so
`FileResult`, `file result` and `fileresult` all find the file defining `FileResult`. BM25
weighs a match in symbol names highest, then the path, then signatures, then the summary;
a query word equal to a symbol's whole name adds a bonus, so "class Snapshot" puts the file
that defines `Snapshot` ahead of files that only mention it.
"""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import closing
from pathlib import Path, PurePosixPath

from pylon.repomap.graph import split_identifier
from pylon.schemas.repomap import Hit, HitSymbol, RepoMap

INDEX_NAME = "index.sqlite"
SCHEMA_VERSION = "1"
# Weights of the FTS columns, in order: path (not indexed), names, path_terms, signatures, summary, kinds.
_BM25 = "bm25(docs, 0.0, 10.0, 5.0, 2.0, 1.0, 0.5)"
_NAME_BONUS = 5.0  # per query word that is the whole name of a symbol the file defines
_KIND_BONUS = 2.0  # ... when the query also names that symbol's kind ("class Snapshot")
_PATH_BONUS = 8.0  # a query word with a '/' or '.' that ends the path ("snapshot.py")
_STEM_BONUS = 3.0  # a query word that is the file's name without extension ("snapshot")
_CANDIDATES = 5  # rerank this many times `limit` BM25 hits
_WORD_RE = re.compile(r"\w+", re.UNICODE)
_PATHLIKE_RE = re.compile(r"[\w./-]*[./][\w./-]*\w", re.UNICODE)
_KIND_WORDS = {
    "def": "function", "fn": "function", "func": "function", "function": "function",
    "method": "method", "class": "class", "struct": "struct", "interface": "interface",
    "trait": "trait", "enum": "enum", "type": "type", "const": "constant", "constant": "constant",
    "var": "variable", "variable": "variable", "module": "module", "mod": "module",
}  # fmt: skip


class SearchIndexError(Exception):
    """The index is missing or unreadable."""


def _terms(name: str) -> str:
    parts = split_identifier(name)
    return " ".join([name, *parts]) if len(parts) > 1 else name


def build_index(db_path: Path, repo_map: RepoMap) -> Path:
    """Write the index for repo_map to db_path (replacing any old one atomically)."""
    db_path = Path(db_path)
    tmp = db_path.with_name(db_path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with closing(sqlite3.connect(tmp)) as db:
        db.executescript(
            """
            CREATE VIRTUAL TABLE docs USING fts5(
                path UNINDEXED, names, path_terms, signatures, summary, kinds,
                tokenize = 'unicode61 remove_diacritics 2');
            CREATE TABLE files(id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL,
                               language TEXT NOT NULL, summary TEXT NOT NULL, rank REAL NOT NULL);
            CREATE TABLE symbols(file_id INTEGER NOT NULL, name TEXT NOT NULL, lname TEXT NOT NULL,
                                 kind TEXT NOT NULL, line INTEGER NOT NULL, signature TEXT NOT NULL);
            CREATE INDEX symbols_file ON symbols(file_id);
            CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """
        )
        for file_id, (path, entry) in enumerate(sorted(repo_map.files.items()), start=1):
            db.execute(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?)",
                (file_id, path, entry.language, entry.summary, entry.rank),
            )
            db.executemany(
                "INSERT INTO symbols VALUES (?, ?, ?, ?, ?, ?)",
                [(file_id, s.name, s.name.lower(), s.kind, s.line, s.signature) for s in entry.symbols],
            )
            path_terms = " ".join([path, *(_terms(p) for p in re.split(r"[/.\-]", path) if p)])
            db.execute(
                "INSERT INTO docs(rowid, path, names, path_terms, signatures, summary, kinds)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    file_id,
                    path,
                    " ".join(_terms(s.name) for s in entry.symbols),
                    path_terms,
                    "\n".join(s.signature for s in entry.symbols if s.signature),
                    entry.summary,
                    " ".join(sorted({s.kind for s in entry.symbols})),
                ),
            )
        db.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("schema", SCHEMA_VERSION), ("run_id", repo_map.run_id), ("root", repo_map.root)],
        )
        db.commit()
    os.replace(tmp, db_path)
    return db_path


def index_path(run_or_dir: Path) -> Path:
    """The index file of an artifacts directory (or the file itself)."""
    p = Path(run_or_dir)
    return p / INDEX_NAME if p.is_dir() else p


def _query_words(words: str) -> tuple[list[str], set[str]]:
    """(FTS terms, query kinds). Terms are whole words plus their camel/snake parts."""
    terms: list[str] = []
    for word in _WORD_RE.findall(words):
        for t in [word.lower(), *split_identifier(word)]:
            if t and t not in terms:
                terms.append(t)
    kinds = {_KIND_WORDS[w] for w in terms if w in _KIND_WORDS}
    return terms, kinds


def query(run_or_dir: Path, words: str, limit: int = 10) -> list[Hit]:
    """Files matching `words`, best first. Never raises on odd query text; [] when nothing matches."""
    db_path = index_path(run_or_dir)
    if not db_path.is_file():
        raise SearchIndexError(f"no search index at {db_path}")
    terms, kinds = _query_words(words)
    if not terms or limit <= 0:
        return []
    raw_words = [w.lower() for w in _WORD_RE.findall(words)]
    # "widget store" also names `WidgetStore` / `widget_store` whole
    whole = {*raw_words, "".join(raw_words), "_".join(raw_words)}
    try:
        with closing(sqlite3.connect(db_path.resolve().as_uri() + "?mode=ro", uri=True)) as db:
            # Every term is a quoted string: FTS5 operators in user text are only words then.
            rows = _match(db, " OR ".join(f'"{t}"' for t in terms), limit)
            if not rows:
                rows = _match(db, " OR ".join(f'"{t}"*' for t in terms if len(t) >= 3), limit)
            pathlike = {p.lower().lstrip("./") for p in _PATHLIKE_RE.findall(words)}
            return _rerank(db, rows, whole, kinds, pathlike)[:limit]
    except sqlite3.DatabaseError as exc:
        raise SearchIndexError(f"cannot read search index {db_path}: {exc}") from exc


def _match(db: sqlite3.Connection, expr: str, limit: int) -> list[tuple[int, str, float, str]]:
    if not expr:
        return []
    try:
        return db.execute(
            f"SELECT rowid, path, {_BM25} AS r, snippet(docs, 4, '[', ']', '…', 12)"
            " FROM docs WHERE docs MATCH ? ORDER BY r, path LIMIT ?",
            (expr, limit * _CANDIDATES),
        ).fetchall()
    except sqlite3.OperationalError:  # defensive: a query the sanitiser let through
        return []


def _rerank(
    db: sqlite3.Connection,
    rows: list[tuple[int, str, float, str]],
    whole: set[str],
    kinds: set[str],
    pathlike: set[str],
) -> list[Hit]:
    hits: list[Hit] = []
    for file_id, path, bm25, snippet in rows:
        language, summary = db.execute(
            "SELECT language, summary FROM files WHERE id = ?", (file_id,)
        ).fetchone()
        lpath = path.lower()
        bonus = _STEM_BONUS if PurePosixPath(lpath).stem in whole else 0.0
        if any(lpath == p or lpath.endswith("/" + p) for p in pathlike):
            bonus += _PATH_BONUS
        matched: list[tuple[int, int, HitSymbol, str]] = []
        named: dict[str, float] = {}  # each query word earns its bonus once per file
        for name, lname, kind, line, signature in db.execute(
            "SELECT name, lname, kind, line, signature FROM symbols WHERE file_id = ? ORDER BY line",
            (file_id,),
        ):
            if lname in whole:
                earned = _NAME_BONUS + (_KIND_BONUS if kind in kinds else 0.0)
                named[lname] = max(named.get(lname, 0.0), earned)
                matched.append((0, line, HitSymbol(name=name, kind=kind, line=line), signature))
            elif any(len(w) >= 3 and w in lname for w in whole):
                matched.append((1, line, HitSymbol(name=name, kind=kind, line=line), signature))
        bonus += sum(named.values())
        matched.sort(key=lambda m: (m[0], m[1]))
        matched = matched[:5]
        symbols = [m[2] for m in matched]
        if "[" not in snippet:  # the summary did not match: show the best matching signature
            snippet = next((m[3] for m in matched if m[3]), snippet)
        hits.append(
            Hit(
                path=path,
                score=round(-bm25 + bonus, 4),
                language=language,
                summary=summary,
                snippet=snippet,
                symbols=symbols,
            )
        )
    hits.sort(key=lambda h: (-h.score, h.path))
    return hits
