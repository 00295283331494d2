"""Which files a question's first round asks about, and where a follow-up leads.

The coordinator does not read the repository to answer; it reads the map. Candidates come
from three signals over it: the search index (BM25 over names, paths, signatures, summaries),
symbol names (a file that defines a term, and the files the import graph says use that file),
and PageRank (the tie-break: central files first). Only then are the candidates' texts looked
at, to keep the files that really have a line about the question and to cut their windows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pylon.ask.text import cut_windows, matches
from pylon.logs import get_logger
from pylon.repomap.graph import MAX_DEFINERS
from pylon.repomap.search_index import SearchIndexError, query
from pylon.schemas.ask import DefinitionHint, Window
from pylon.schemas.repomap import RepoMap

log = get_logger(__name__)

DEFINER_SCORE = 10.0
USER_SCORE = 2.0
INDEX_SCORE = 4.0  # the best index hit; later hits get less
RANK_SCORE = 50.0  # × PageRank (ranks sum to 1, so this only breaks ties)
MATCH_SCORE = 0.5  # per matching line, up to MATCH_CAP
MATCH_CAP = 6
SCAN_ALL_UP_TO = 4000  # files: with fewer candidates than wanted, look at every file of a map this size
MAX_SCAN_CHARS = 32 * 1024 * 1024  # ... reading at most this much text of them


@dataclass
class Candidate:
    path: str
    score: float
    windows: list[Window]
    definitions: list[DefinitionHint]
    reasons: list[str] = field(default_factory=list)


def definitions_in(repo_map: RepoMap, path: str, terms: Sequence[str]) -> list[DefinitionHint]:
    entry = repo_map.files.get(path)
    if entry is None:
        return []
    wanted = set(terms)
    return [DefinitionHint(name=s.name, kind=s.kind, line=s.line) for s in entry.symbols if s.name in wanted]


def prepare(
    repo_map: RepoMap, path: str, terms: Sequence[str], lines_of: Callable[[str], list[str] | None]
) -> tuple[list[Window], list[DefinitionHint]] | None:
    """The windows and definition hints of one file for `terms`; None when it has no line about them."""
    lines = lines_of(path)
    if lines is None:
        return None
    defs = definitions_in(repo_map, path, terms)
    windows = cut_windows(lines, terms, defs)
    return (windows, defs) if windows else None


def candidates(
    repo_map: RepoMap,
    index_dir: Path | None,
    question: str,
    terms: Sequence[str],
    lines_of: Callable[[str], list[str] | None],
    limit: int,
) -> list[Candidate]:
    score: dict[str, float] = defaultdict(float)
    reasons: dict[str, list[str]] = defaultdict(list)
    if index_dir is not None:
        try:
            hits = query(index_dir, " ".join(terms) or question, limit=max(limit * 3, 10))
        except SearchIndexError as exc:
            log.warning("ask_index_unreadable", error=str(exc))
            hits = []
        for i, h in enumerate(hits):
            score[h.path] += INDEX_SCORE * (1 - i / len(hits))
            reasons[h.path].append("index")
    for t in terms:
        definers = repo_map.symbols.get(t, [])
        for p in definers[: MAX_DEFINERS * 2]:
            score[p] += DEFINER_SCORE
            reasons[p].append(f"defines {t}")
            entry = repo_map.files.get(p)
            for user in entry.used_by if entry else []:
                score[user] += USER_SCORE
                reasons[user].append(f"uses {p}")
    pool = [p for p in score if p in repo_map.files]
    signalled = len(pool)
    if len(pool) < limit * 2 and len(repo_map.files) <= SCAN_ALL_UP_TO:
        pool += [p for p in repo_map.files if p not in score]
    out: list[Candidate] = []
    scanned = 0
    for i, p in enumerate(pool):
        if i >= signalled and scanned > MAX_SCAN_CHARS:
            break  # the files no signal pointed at are only looked through up to a bound
        lines = lines_of(p)
        if lines is None:
            continue
        scanned += sum(len(line) for line in lines)
        n = sum(1 for line in lines if matches(line, terms))
        if n == 0 and not definitions_in(repo_map, p, terms):
            continue
        prepared = prepare(repo_map, p, terms, lines_of)
        if prepared is None:
            continue
        entry = repo_map.files[p]
        total = score[p] + MATCH_SCORE * min(n, MATCH_CAP) + RANK_SCORE * entry.rank
        out.append(
            Candidate(path=p, score=total, windows=prepared[0], definitions=prepared[1], reasons=reasons[p])
        )
    out.sort(key=lambda c: (-c.score, c.path))
    return out[:limit]


def follow_up_targets(repo_map: RepoMap, name: str) -> list[str]:
    """The files a follow-up leads to: a path of the map, or the (few) files defining a symbol."""
    if name in repo_map.files:
        return [name]
    definers = repo_map.symbols.get(name, [])
    if not definers or len(definers) > MAX_DEFINERS:
        return []  # unknown, or so common a name that it says nothing
    return sorted(definers, key=lambda p: (-repo_map.files[p].rank if p in repo_map.files else 0, p))
