"""The deterministic answers of `pylon ask`: a sub-query's evidence, and the reduce's ranked list.

No model: a sub-answer is the definitions and the lines of its windows that match the terms,
with their context; its follow-ups are the distinctive symbols those lines reference; the reduce
ranks all the evidence (definitions of what was asked first, then its uses, file by file, then
what the follow-ups found) and states one claim per item, each citing the lines it stands on.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence

from pylon.ask.text import (
    DEFINITION_CONTEXT,
    definition_re,
    distinctive,
    identifiers,
    is_comment,
    matches,
    quoted_only,
    window_lines,
)
from pylon.schemas.ask import (
    MAX_CITATIONS,
    MAX_CLAIMS,
    MAX_EVIDENCE,
    MAX_FOLLOW_UPS,
    AskAnswer,
    AskQuery,
    AskReduceInput,
    Claim,
    Evidence,
    Span,
)

_STRING_RE = re.compile(r"\"[^\"]*\"|'[^']*'|`[^`]*`")
_MAJOR_KINDS = frozenset(
    {"class", "function", "method", "struct", "interface", "trait", "enum", "type", "macro"}
)
_KEYWORD_DEF_RE = re.compile(
    r"^\s*(?:export\s+)?(?:pub\S*\s+)?(?:async\s+)?(?:def|class|function|func|fn|struct|trait|interface|enum)\b"
)
_KIND_ORDER = {"definition": 0, "use": 1, "mention": 2}
USES_PER_FILE = 3  # lines cited per file in a "used in" claim


def answer_query(q: AskQuery) -> AskAnswer:
    lines = window_lines(q.windows)
    hint_kind = {(d.name, d.line): d.kind for d in q.definitions}
    hints = set(hint_kind)
    evidence: list[Evidence] = []
    seen: set[tuple[int, str]] = set()
    for ln in sorted(lines):
        text = lines[ln]
        for term in matches(text, q.terms):
            if (term, ln) in hints or definition_re(term).search(text):
                kind, score = "definition", _definition_score(hint_kind.get((term, ln)), text, term)
                end = ln
                while end + 1 in lines and end - ln < DEFINITION_CONTEXT and lines[end + 1].strip():
                    end += 1
            elif is_comment(text) or quoted_only(text, term):
                kind, score, end = "mention", 1.0, ln
            else:
                kind, score, end = "use", 3.0, ln
            seen.add((ln, term))
            evidence.append(
                Evidence(
                    path=q.path,
                    line=ln,
                    end=end,
                    kind=kind,
                    symbol=term,
                    text=text.strip()[:200],
                    score=score,
                )
            )
    # A definition the map knows of whose name line is not the matching one (a decorator, a
    # multi-line signature) still counts.
    for name, ln in sorted(hints):
        if name in q.terms and ln in lines and (ln, name) not in seen:
            evidence.append(
                Evidence(
                    path=q.path,
                    line=ln,
                    end=ln,
                    kind="definition",
                    symbol=name,
                    text=lines[ln].strip()[:200],
                    score=_definition_score(hint_kind[(name, ln)], lines[ln], name),
                )
            )
    evidence.sort(key=lambda e: (-e.score, e.line))
    evidence = evidence[:MAX_EVIDENCE]
    follow = Counter[str]()
    for e in evidence:
        if e.kind == "mention":
            continue
        # The names the line references; for a definition, its body's too (a docstring's
        # words are not symbols: lines inside triple quotes are skipped).
        for name in identifiers(" ".join(_code_lines(lines, e.line, e.end))):
            if name not in q.terms and name not in q.focus and distinctive(name):
                follow[name] += 1
    follow_ups = [n for n, _ in sorted(follow.items(), key=lambda kv: (-kv[1], kv[0]))][:MAX_FOLLOW_UPS]
    return AskAnswer(
        relevant=bool(evidence),
        answer=_describe(q.path, evidence),
        citations=[Span(path=e.path, start=e.line, end=e.end) for e in evidence[:MAX_CITATIONS]],
        evidence=evidence,
        follow_ups=follow_ups,
        mode="deterministic",
    )


def _code_part(line: str) -> str:
    """A line without its trailing comment and string literals, roughly."""
    for mark in (" #", " //"):
        cut = line.find(mark)
        if cut >= 0:
            line = line[:cut]
    return _STRING_RE.sub("", line)


def _definition_score(hint: str | None, line: str, term: str) -> float:
    """A class or function definition outranks a field or an assignment of the same name, and
    the map's own (tree-sitter) word on it outranks the line's spelling alone."""
    if hint is not None:
        return 12.0 if hint in _MAJOR_KINDS else 9.0
    return 11.0 if _KEYWORD_DEF_RE.match(line) else 8.0


def _code_lines(lines: dict[int, str], first: int, last: int) -> list[str]:
    out: list[str] = []
    in_doc = False
    for ln in range(first, last + 1):
        line = lines.get(ln, "")
        quotes = line.count('"""') + line.count("'''")
        if in_doc or quotes:
            in_doc = in_doc != (quotes % 2 == 1)
            continue
        if not is_comment(line):
            out.append(_code_part(line))
    return out


def _describe(path: str, evidence: Sequence[Evidence]) -> str:
    if not evidence:
        return f"{path}: nothing matching the question."
    parts = []
    by_kind: dict[str, list[Evidence]] = defaultdict(list)
    for e in evidence:
        by_kind[e.kind].append(e)
    for e in by_kind.get("definition", []):
        parts.append(f"defines {e.symbol} at line {e.line}")
    uses = by_kind.get("use", [])
    if uses:
        names = ", ".join(sorted({e.symbol for e in uses}))
        lines_ = ", ".join(str(e.line) for e in sorted(uses, key=lambda e: e.line)[:8])
        parts.append(f"uses {names} at line(s) {lines_}")
    if by_kind.get("mention"):
        parts.append(f"mentions it {len(by_kind['mention'])} time(s) in comments")
    return f"{path}: " + "; ".join(parts) + "."


def rank_evidence(inp: AskReduceInput) -> list[tuple[int, Evidence]]:
    """All the evidence, best first, as (depth, evidence): what was asked about before what
    follow-ups found, definitions before uses before mentions, then by score and place."""
    best: dict[tuple[str, int, str], tuple[int, Evidence]] = {}
    for a in inp.answers:
        for e in a.evidence:
            key = (e.path, e.line, e.symbol)
            if key not in best or a.depth < best[key][0]:
                best[key] = (a.depth, e)
    primary = set(inp.terms)

    def order(item: tuple[int, Evidence]) -> tuple:
        depth, e = item
        return (e.symbol not in primary, _KIND_ORDER.get(e.kind, 3), depth, -e.score, e.path, e.line)

    return sorted(best.values(), key=order)


def reduce_answers(inp: AskReduceInput) -> AskAnswer:
    ranked = rank_evidence(inp)
    claims: list[Claim] = []
    uses: dict[tuple[str, str], list[Evidence]] = defaultdict(list)
    for _, e in ranked:
        if e.kind == "use":
            uses[(e.symbol, e.path)].append(e)
    emitted_uses: set[tuple[str, str]] = set()
    for depth, e in ranked:
        if len(claims) >= MAX_CLAIMS:
            break
        span = Span(path=e.path, start=e.line, end=e.end)
        via = " (a follow-up)" if depth > 0 and e.symbol not in inp.terms else ""
        if e.kind == "definition":
            claims.append(
                Claim(text=f"`{e.symbol}` is defined in `{e.path}` at line {e.line}{via}.", citations=[span])
            )
        elif e.kind == "use":
            key = (e.symbol, e.path)
            if key in emitted_uses:
                continue
            emitted_uses.add(key)
            cited = sorted(uses[key], key=lambda x: x.line)[:USES_PER_FILE]
            more = len(uses[key]) - len(cited)
            lines_ = ", ".join(str(x.line) for x in cited) + (f" and {more} more" if more > 0 else "")
            claims.append(
                Claim(
                    text=f"`{e.symbol}` is used in `{e.path}` (line {lines_}){via}.",
                    citations=[Span(path=x.path, start=x.line, end=x.end) for x in cited],
                )
            )
    defs = sum(1 for _, e in ranked if e.kind == "definition" and e.symbol in inp.terms)
    files = len({e.path for _, e in ranked})
    answer = (
        f"Ranked evidence for {', '.join(f'`{t}`' for t in inp.terms[:6]) or 'the question'}: "
        f"{defs} definition(s) and {len(ranked) - defs} other line(s) in {files} file(s)."
        if ranked
        else "No file of the map has lines matching the question."
    )
    return AskAnswer(
        relevant=bool(ranked),
        answer=answer,
        evidence=[e for _, e in ranked][: MAX_EVIDENCE * 4],
        claims=claims,
        mode="deterministic",
    )
