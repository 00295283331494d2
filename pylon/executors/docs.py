"""Doc text a file carries about itself: docstrings, doc comments, the file's leading comment.

Read lazily: only the definitions a summary shows ever have their docs looked up.
"""

from __future__ import annotations

import re

import tree_sitter

_COMMENTS = frozenset({"comment", "line_comment", "block_comment"})
# Nodes that wrap a definition and carry its leading comment: `export`, `declare`, Go's
# `type (...)`, a JS `const x = ...` statement.
_WRAPPERS = frozenset(
    {
        "export_statement",
        "ambient_declaration",
        "decorated_definition",
        "type_declaration",
        "const_declaration",
        "var_declaration",
        "lexical_declaration",
        "variable_declaration",
        "expression_statement",
    }
)
# Between a doc comment and its item: Rust `#[attr]`, Python decorators.
_SKIPPABLE = frozenset({"attribute_item", "decorator"})
# Statements that open a file; a comment right above them describes the file, not a definition.
_PREAMBLE = frozenset(
    {
        "package_clause",
        "package_declaration",
        "import_declaration",
        "import_statement",
        "import_from_statement",
        "future_import_statement",
        "preproc_include",
        "use_declaration",
        "extern_crate_declaration",
        "preproc_ifdef",
        "preproc_def",
        "expression_statement",  # 'use strict';
    }
)
_LICENSE = re.compile(r"copyright|licen[cs]e|spdx|all rights reserved|\(c\)\s*\d{4}", re.IGNORECASE)
_PY_STRING_PREFIX = re.compile(r"^[rRuUbBfF]{0,2}")
_MAX_DOC_LINES = 3


def _text(src: bytes, node: tree_sitter.Node) -> str:
    return src[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _comment_lines(text: str) -> list[str]:
    """A comment's text without its markers (//, ///, /* */, leading *, #)."""
    text = text.strip()
    if text.startswith("/*"):
        text = text[2:]
        if text[:1] in ("*", "!"):
            text = text[1:]
        text = text.removesuffix("*/")
        lines = []
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("*"):
                line = line[1:]
            lines.append(line.strip())
        return lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        for marker in ("///", "//!", "//", "#"):
            if line.startswith(marker):
                line = line[len(marker) :]
                break
        out.append(line.strip())
    return out


def _paragraph(lines: list[str], limit: int = _MAX_DOC_LINES) -> list[str]:
    """The first paragraph of doc text, skipping leading blanks and stopping at @tags."""
    out: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            if out:
                break
            continue
        if stripped.startswith(("!", ".. ", "```")) or "-*-" in stripped:
            continue  # `#!`, an editor's `-*- coding -*-`, an RST directive, a code fence
        if stripped.startswith("@") or set(stripped) <= set("-=*#/~_"):
            if out:
                break
            continue
        out.append(" ".join(stripped.split()))
        if len(out) >= limit:
            break
    return out


def _python_docstring(src: bytes, block: tree_sitter.Node | None) -> list[str]:
    if block is None:
        return []
    for child in block.named_children:
        if child.type == "comment":
            continue
        if child.type == "expression_statement" and child.named_child_count == 1:
            string = child.named_child(0)
            if string is not None and string.type == "string":
                return _string_lines(_text(src, string))
        return []
    return []


def _string_lines(text: str) -> list[str]:
    text = _PY_STRING_PREFIX.sub("", text, count=1)
    for quote in ('"""', "'''", '"', "'"):
        if text.startswith(quote) and text.endswith(quote) and len(text) >= 2 * len(quote):
            return text[len(quote) : -len(quote)].splitlines()
    return text.splitlines()


def _leading_comments(node: tree_sitter.Node) -> list[tree_sitter.Node]:
    """The comments directly above `node` (no blank line between), nearest last."""
    anchor = node
    for _ in range(4):
        parent = anchor.parent
        if parent is None or parent.type not in _WRAPPERS:
            break
        anchor = parent
    found: list[tree_sitter.Node] = []
    below = anchor.start_point[0]
    prev = anchor.prev_named_sibling
    while prev is not None:
        if prev.type in _SKIPPABLE:
            below = prev.start_point[0]
            prev = prev.prev_named_sibling
            continue
        if prev.type not in _COMMENTS or prev.end_point[0] < below - 1:
            break
        found.append(prev)
        below = prev.start_point[0]
        prev = prev.prev_named_sibling
    found.reverse()
    return found


def doc_of(language: str, src: bytes, node: tree_sitter.Node) -> str:
    """The first line of a definition's docstring or doc comment, or ''."""
    lines: list[str] = []
    if language == "python" and node.type in ("function_definition", "class_definition"):
        lines = _paragraph(_python_docstring(src, node.child_by_field_name("body")), 1)
    if not lines:
        comments = _leading_comments(node)
        text: list[str] = []
        for c in comments:
            text.extend(_comment_lines(_text(src, c)))
        lines = _paragraph(text, 1)
    return lines[0] if lines else ""


def _comment_groups(root: tree_sitter.Node) -> tuple[list[list[tree_sitter.Node]], tree_sitter.Node | None]:
    """Leading comments of a file, grouped by blank lines, and the first node after them."""
    groups: list[list[tree_sitter.Node]] = []
    after: tree_sitter.Node | None = None
    for child in root.named_children:
        if child.type not in _COMMENTS:
            after = child
            break
        if groups and child.start_point[0] <= groups[-1][-1].end_point[0] + 1:
            groups[-1].append(child)
        else:
            groups.append([child])
        if len(groups) > 8:
            break
    return groups, after


def module_doc(language: str, src: bytes, root: tree_sitter.Node) -> list[str]:
    """Up to three lines describing the file: its docstring, else its leading non-license comment."""
    if language == "python":
        lines = _paragraph(_python_docstring(src, root))
        if lines:
            return lines
    groups, after = _comment_groups(root)
    for i, group in enumerate(groups):
        raw = [line for c in group for line in _comment_lines(_text(src, c))]
        body = "\n".join(raw)
        if _LICENSE.search(body) and not (language == "rust" and _text(src, group[0]).startswith("//!")):
            continue
        last = i == len(groups) - 1
        attached = (
            last
            and after is not None
            and after.start_point[0] <= group[-1].end_point[0] + 1
            and after.type not in _PREAMBLE
            and not _text(src, group[0]).startswith("//!")
        )
        if attached:
            return []  # it documents the definition below it; that one's summary line shows it
        lines = _paragraph(raw)
        if lines:
            return lines
    return []
