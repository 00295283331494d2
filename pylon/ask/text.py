"""Words of a question, and where in a file's lines they occur.

Pure functions over text, shared by the buyer (which cuts a file's windows before sending a
sub-query) and the nodes (which read the windows and answer from them), so both agree on what
"a line matching the question" means: a whole-identifier, case-sensitive match of a term.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

from pylon.schemas.ask import MAX_TERMS, MAX_WINDOW_LINES, MAX_WINDOWS, DefinitionHint, Window

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN_RE = re.compile(r"`([^`]{1,200})`|([A-Za-z_][A-Za-z0-9_.]*)")
# Words of an English question about code, never what it is about.
_STOP = frozenset(
    """a an and are as at be by can could defined define defines definition do does done file files
    for from function functions class classes method methods how i in is it its me of on or show
    tell that the their them there these this those to use used uses using what when where which
    who whom whose why with work works called calls call caller callers code repo repository
    module modules implemented implement implements does find list all any some about into via
    symbol symbols variable variables type types happen happens handled handle handles get set
    my our your should would will please explain""".split()
)
# Words a line that merely mentions something starts with (comments, docstrings).
_COMMENT_STARTS = ("#", "//", "/*", "*", "--", '"""', "'''", ";")
_KEYWORDS = frozenset(
    """False None True and as assert async await break class continue def del elif else except
    finally for from global if import in is lambda nonlocal not or pass raise return try while
    with yield self cls this super const let var function return new typeof instanceof export
    default package func struct interface type impl trait enum pub use mod match fn mut static
    void int str bool float dict list tuple set object bytes len print isinstance getattr setattr
    hasattr range enumerate zip map filter sorted reversed any all min max sum open repr iter next""".split()
)

DEFINITION_CONTEXT = 6  # lines after a definition a window (and its evidence) shows
USE_CONTEXT = 2  # lines either side of a use
MAX_LINE_CHARS = 400  # of one window line


def question_terms(question: str, limit: int = MAX_TERMS) -> list[str]:
    """The identifiers a question is about, in order: `backticked` names first, then code-like
    words (CamelCase, snake_case, dotted), then the other non-stop words."""
    quoted: list[str] = []
    codey: list[str] = []
    plain: list[str] = []
    for m in _TOKEN_RE.finditer(question):
        if m.group(1):
            quoted += _IDENT_RE.findall(m.group(1).split("(")[0])
            continue
        word = m.group(2).strip(".")
        for part in (p for p in word.split(".") if p):
            if not _IDENT_RE.fullmatch(part):
                continue
            if part.lower() in _STOP and part == part.lower():
                continue
            looks_code = "_" in part or "." in word or any(c.isupper() for c in part[1:]) or part[0].isupper()
            (codey if looks_code else plain).append(part)
    out: list[str] = []
    for t in [*quoted, *codey, *plain]:
        if t not in out and len(t) >= 2:
            out.append(t)
    return out[:limit]


@functools.lru_cache(maxsize=4096)
def term_re(term: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(term)}(?![A-Za-z0-9_])")


@functools.lru_cache(maxsize=4096)
def definition_re(term: str) -> re.Pattern[str]:
    """A line that defines `term`, in most languages' spelling (Python, JS/TS, Go, Rust, C-ish)."""
    t = re.escape(term)
    return re.compile(
        r"^\s*(?:export\s+)?(?:default\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:static\s+)?"
        r"(?:def|class|function\*?|func|fn|struct|enum|interface|trait|type|impl|mod|module|const|let|var|val)"
        rf"\s+(?:\([^)]*\)\s*)?{t}(?![A-Za-z0-9_])"
        rf"|^{t}\s*(?::[^=]+)?=(?!=)"  # a module-level assignment (Python, shell)
    )


def matches(line: str, terms: Iterable[str]) -> list[str]:
    return [t for t in terms if t in line and term_re(t).search(line)]


def is_comment(line: str) -> bool:
    return line.lstrip().startswith(_COMMENT_STARTS)


def quoted_only(line: str, term: str) -> bool:
    """Every occurrence of `term` sits right inside quotes or backticks (prose, not code)."""
    found = list(term_re(term).finditer(line))
    return bool(found) and all(m.start() > 0 and line[m.start() - 1] in "`'\"" for m in found)


def identifiers(line: str) -> list[str]:
    return _IDENT_RE.findall(line)


def distinctive(name: str) -> bool:
    """A name worth following: not a keyword or builtin, and shaped like a real symbol."""
    if len(name) < 4 or name in _KEYWORDS or name.startswith("__"):
        return False
    return "_" in name.strip("_") or any(c.isupper() for c in name) or len(name) >= 8


def cut_windows(
    lines: Sequence[str],
    terms: Sequence[str],
    definitions: Sequence[DefinitionHint] = (),
    *,
    max_lines: int = MAX_WINDOW_LINES,
    max_windows: int = MAX_WINDOWS,
) -> list[Window]:
    """The parts of a file a sub-query about `terms` needs: each definition with the lines after
    it, each matching line with a little context; merged, definitions first within the caps."""
    n = len(lines)
    wanted: list[tuple[int, int, int]] = []  # (priority, first, last), 0-based inclusive
    for d in definitions:
        if 1 <= d.line <= n:
            wanted.append((0, d.line - 1, min(n - 1, d.line - 1 + DEFINITION_CONTEXT)))
    for i, line in enumerate(lines):
        hit = matches(line, terms)
        if not hit:
            continue
        prio = 0 if any(definition_re(t).search(line) for t in hit) else (2 if is_comment(line) else 1)
        after = DEFINITION_CONTEXT if prio == 0 else USE_CONTEXT
        wanted.append((prio, max(0, i - USE_CONTEXT), min(n - 1, i + after)))
    wanted.sort(key=lambda w: (w[0], w[1]))
    chosen: list[tuple[int, int]] = []
    used = 0
    for _, a, b in wanted:
        size = b - a + 1
        if used + size > max_lines:
            continue
        chosen.append((a, b))
        used += size
    chosen.sort()
    merged: list[list[int]] = []
    for a, b in chosen:
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    # A minified line must not make the sub-query too big to send; its number still cites it.
    return [
        Window(start=a + 1, lines=[ln[:MAX_LINE_CHARS] for ln in lines[a : b + 1]])
        for a, b in merged[:max_windows]
    ]


def window_lines(windows: Sequence[Window]) -> dict[int, str]:
    """line number -> text over all windows."""
    out: dict[int, str] = {}
    for w in windows:
        for k, text in enumerate(w.lines):
            out[w.start + k] = text
    return out
