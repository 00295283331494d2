"""repo_map.md: the most central files and their key definitions, fitted to a token budget.

Aider's repo-map idea on the swarm's results: files ranked by PageRank over the import and
reference graph (the `rank` in repo_map.json), each shown by the signatures of what it defines,
as much of that as fits in N tokens of a real tokenizer (cl100k_base, `pylon.repomap.tokens`).
What goes in is chosen in priority order, and the longest prefix of that order that fits is
found by binary search:

1. every file, most central first (tests and fixtures after the code): its path line and its
   key definitions (up to KEY_DEFS public classes / functions / types, classes first);
2. the rest of each file's top-level definitions, file by file in rank order;
3. the methods of those classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pylon.repomap.tokens import ENCODING_NAME, count_tokens
from pylon.schemas.repomap import MapFileEntry, MapSymbol, RepoMap

REPO_MAP_MD_NAME = "repo_map.md"
DEFAULT_TOKENS = 2048
MIN_TOKENS = 64
KEY_DEFS = 3
SIGNATURE_MAX = 120
TYPE_KINDS = ("class", "struct", "interface", "trait", "enum", "type", "impl")
DEF_KINDS = (*TYPE_KINDS, "function", "macro")
MEMBER_KINDS = ("method", "function", "constructor")


def _is_test(path: str) -> bool:
    from pylon.repomap.aggregate import is_test_path

    return is_test_path(path)


def top_level_defs(entry: MapFileEntry) -> list[MapSymbol]:
    """Definitions at file level worth a line: types and functions, one per name (overloads)."""
    seen: set[str] = set()
    out = []
    for s in sorted(entry.symbols, key=lambda s: s.line):
        if s.parent or s.kind not in DEF_KINDS or s.name in seen:
            continue
        seen.add(s.name)
        out.append(s)
    return out


def key_definitions(entry: MapFileEntry, n: int = KEY_DEFS) -> list[MapSymbol]:
    """A file's key definitions: public types first, then public functions, in file order."""
    defs = top_level_defs(entry)

    def order(s: MapSymbol) -> tuple[int, int, int]:
        return (s.name.startswith("_"), s.kind not in TYPE_KINDS, s.line)

    return sorted(defs, key=order)[:n]


def ranked_files(repo_map: RepoMap) -> list[str]:
    """Most central first; test and fixture files after all the others."""
    files = repo_map.files
    return sorted(files, key=lambda p: (_is_test(p), -files[p].rank, p))


@dataclass(frozen=True)
class _Item:
    path: str
    symbols: tuple[MapSymbol, ...]  # empty only for a file with no definitions


def _items(repo_map: RepoMap) -> list[_Item]:
    files = repo_map.files
    order = ranked_files(repo_map)
    first: list[_Item] = []
    rest: list[_Item] = []
    members: list[_Item] = []
    for p in order:
        entry = files[p]
        key = key_definitions(entry)
        first.append(_Item(p, tuple(key)))
        key_ids = {id(s) for s in key}
        others = [s for s in top_level_defs(entry) if id(s) not in key_ids]
        rest += [_Item(p, (s,)) for s in sorted(others, key=lambda s: (s.name.startswith("_"), s.line))]
        classes = {s.name for s in top_level_defs(entry) if s.kind in TYPE_KINDS}
        members += [
            _Item(p, (s,))
            for s in sorted(entry.symbols, key=lambda s: s.line)
            if s.parent in classes and s.kind in MEMBER_KINDS
        ]
    return first + rest + members


def _sig(s: MapSymbol) -> str:
    text = " ".join((s.signature or f"{s.kind} {s.name}").split())
    return text if len(text) <= SIGNATURE_MAX else text[: SIGNATURE_MAX - 1] + "…"


def _header(repo_map: RepoMap, budget: int, shown: int) -> list[str]:
    what = repo_map.repo or repo_map.root
    commit = f" at `{repo_map.commit[:12]}`" if repo_map.commit else ""
    return [
        f"# Repository map: {what}{commit}",
        "",
        f"The {shown} most central of {len(repo_map.files)} files (PageRank over imports and "
        f"references) with their key definitions, fitted to {budget} tokens ({ENCODING_NAME}). "
        f"`path (rank, used by N)` then signatures; a method is indented under its class.",
        "",
    ]


def _render(repo_map: RepoMap, items: list[_Item], budget: int) -> str:
    chosen: dict[str, list[MapSymbol]] = {}
    for it in items:
        chosen.setdefault(it.path, []).extend(it.symbols)
    files = repo_map.files
    body: list[str] = []
    for p in chosen:  # first-appearance order is rank order
        e = files[p]
        users = f", used by {len(e.used_by)}" if e.used_by else ""
        body.append(f"{p} ({e.rank:.4f}{users})")
        for s in sorted(chosen[p], key=lambda s: s.line):
            body.append(("    " if s.parent else "  ") + _sig(s))
    out = _header(repo_map, budget, len(chosen))
    if body:
        out += ["```text", *body, "```", ""]
    return "\n".join(out)


def _longest_fit(n: int, fits: Callable[[int], bool]) -> int:
    """The largest k in [0, n] with fits(k), for fits true at 0 and monotone."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def render_llm_map(repo_map: RepoMap, tokens: int = DEFAULT_TOKENS) -> tuple[str, int]:
    """(repo_map.md text, its token count); the count is at most `tokens` (>= MIN_TOKENS)."""
    budget = max(int(tokens), MIN_TOKENS)
    items = _items(repo_map)
    cache: dict[int, tuple[str, int]] = {}

    def render(k: int) -> tuple[str, int]:
        if k not in cache:
            text = _render(repo_map, items[:k], budget)
            cache[k] = (text, count_tokens(text))
        return cache[k]

    k = _longest_fit(len(items), lambda k: render(k)[1] <= budget)
    text, n = render(k)
    if n > budget:  # even the header alone is over a tiny budget: cut it to fit, by tokens
        from pylon.repomap.tokens import encoding

        enc = encoding()
        text = enc.decode(enc.encode(text, disallowed_special=())[:budget])
        n = count_tokens(text)
        while n > budget:  # decode/encode can regroup at the cut; shorten until it holds
            text = text[:-1]
            n = count_tokens(text)
    return text, n
