"""A file's summary: at most 20 lines, built only from the file itself, the same every time.

Layout: a header; the file's own doc (up to 3 lines); its imports; one line per top-level
definition (signature — first doc line); top-level variables and constants grouped by kind;
then, while lines remain, the members of each type under it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pylon.schemas.events import Symbol

MAX_LINES = 20
LINE_WIDTH = 160
_MAX_IMPORTS_SHOWN = 8
_MAX_NAMES_SHOWN = 10
_TEXT_PREVIEW_LINES = 9
# Shown as grouped name lists rather than a line each.
_MINOR_KINDS = ("const", "variable", "field", "enum_member", "macro", "type")
_PLURALS = {"const": "consts", "variable": "variables", "field": "fields", "enum_member": "enum members",
            "macro": "macros", "type": "types"}  # fmt: skip


@dataclass(slots=True)
class SummaryEntry:
    symbol: Symbol
    doc: Callable[[], str]  # lazy: docs are read only for what the summary shows


def _clip(line: str, width: int = LINE_WIDTH) -> str:
    line = line.rstrip()
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


def _names(names: list[str], limit: int = _MAX_NAMES_SHOWN) -> str:
    unique = list(dict.fromkeys(names))
    shown = ", ".join(unique[:limit])
    return shown + (f", … (+{len(unique) - limit})" if len(unique) > limit else "")


def _entry_line(entry: SummaryEntry, indent: str = "") -> str:
    sym = entry.symbol
    head = sym.signature or f"{sym.kind} {sym.name}"
    doc = entry.doc()
    return _clip(f"{indent}{head} — {doc}" if doc else f"{indent}{head}")


def _grouped(entries: list[SummaryEntry], indent: str = "") -> list[str]:
    by_kind: dict[str, list[str]] = {}
    for e in entries:
        by_kind.setdefault(e.symbol.kind, []).append(e.symbol.name)
    shown = [kind for kind in _MINOR_KINDS if kind in by_kind]
    return [_clip(f"{indent}{_PLURALS[kind]}: {_names(by_kind[kind])}") for kind in shown]


def build_summary(
    *,
    path: str,
    language: str,
    lines: int,
    entries: list[SummaryEntry],
    imports: list[str],
    module_doc: list[str],
) -> str:
    packages = [e.symbol.name for e in entries if e.symbol.kind == "package"]
    entries = [e for e in entries if e.symbol.kind != "package"]
    where = f", package {packages[0]}" if packages else ""
    out = [_clip(f"{path} — {language}, {lines} lines, {len(entries)} symbols{where}")]
    out.extend(_clip(line) for line in module_doc[:3])
    if imports:
        out.append(_clip("imports: " + _names(imports, _MAX_IMPORTS_SHOWN)))

    top_names = {e.symbol.name for e in entries if not e.symbol.parent}
    all_names = {e.symbol.name for e in entries}
    # A member whose parent is not defined here (a Go method on a type from another file)
    # is shown as if it were top-level; members of nested types are left to their type's line.
    top = [e for e in entries if not e.symbol.parent or e.symbol.parent not in all_names]
    members: dict[str, list[SummaryEntry]] = {}
    for e in entries:
        if e.symbol.parent and e.symbol.parent in top_names:
            members.setdefault(e.symbol.parent, []).append(e)

    majors = [e for e in top if e.symbol.kind not in _MINOR_KINDS]
    minor_lines = _grouped([e for e in top if e.symbol.kind in _MINOR_KINDS])

    room = MAX_LINES - len(out) - len(minor_lines)
    if len(majors) > room:
        keep = max(room - 1, 0)
        rest = majors[keep:]
        majors = majors[:keep]
        overflow = [_clip("… +" + str(len(rest)) + " more: " + _names([e.symbol.name for e in rest]))]
    else:
        overflow = []
    room -= len(majors) + len(overflow)

    blocks: list[list[str]] = []
    expanded: set[str] = set()  # a C struct and its typedef share a name: members go under the first
    for e in majors:
        block = [_entry_line(e)]
        kids = members.get(e.symbol.name, []) if e.symbol.name not in expanded else []
        expanded.add(e.symbol.name)
        if kids and room > 0:
            kid_lines = [_entry_line(k, "  ") for k in kids if k.symbol.kind not in _MINOR_KINDS]
            kid_lines += _grouped([k for k in kids if k.symbol.kind in _MINOR_KINDS], "  ")
            if len(kid_lines) > room:
                if room >= 2:
                    hidden = kid_lines[room - 1 :]
                    kid_lines = [*kid_lines[: room - 1], f"  … +{len(hidden)} more"]
                else:
                    kid_lines = [_clip("  members: " + _names([k.symbol.name for k in kids]))]
            room -= len(kid_lines)
            block.extend(kid_lines)
        blocks.append(block)

    for block in blocks:
        out.extend(block)
    out.extend(overflow)
    out.extend(minor_lines)
    return "\n".join(out[:MAX_LINES])


def build_text_summary(path: str, text: str, lines: int) -> str:
    """For a file no grammar reads: the header and its first non-blank lines."""
    out = [f"{path} — text, {lines} lines"]
    for line in text.splitlines():
        if line.strip():
            out.append(_clip(line.strip(), 120))
            if len(out) > _TEXT_PREVIEW_LINES:
                break
    return "\n".join(out)
