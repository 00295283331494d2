"""Which tree-sitter grammar a file gets, and the grammars themselves (loaded once, lazily).

Only the per-language wheels (tree-sitter-python, -javascript, ...) are used: each ships one
compiled grammar, so importing one costs a few milliseconds and nothing else.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading

import tree_sitter

SUPPORTED_LANGUAGES: frozenset[str] = frozenset(
    {"python", "javascript", "typescript", "tsx", "go", "rust", "java", "c"}
)

# What a result says for a file no grammar here can read: it still gets lines and a summary.
TEXT_LANGUAGE = "text"

_EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".pyw": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",  # tree-sitter-javascript parses JSX
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",  # C++ headers parse as C well enough for a map; there is no C++ wheel here
}

_ALIASES: dict[str, str] = {
    "py": "python",
    "python3": "python",
    "js": "javascript",
    "node": "javascript",
    "jsx": "javascript",
    "ecmascript": "javascript",
    "ts": "typescript",
    "golang": "go",
    "rs": "rust",
    "h": "c",
}

# Interpreter names in a `#!` line, for scripts without an extension.
_SHEBANGS: dict[str, str] = {
    "python": "python",
    "python2": "python",
    "python3": "python",
    "node": "javascript",
    "nodejs": "javascript",
    "deno": "typescript",
    "ts-node": "typescript",
}


def normalize_language(name: str | None) -> str | None:
    """A supported language's canonical name for `name` (case and common aliases forgiven), else None."""
    if not name:
        return None
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in SUPPORTED_LANGUAGES else None


def _from_shebang(text: str) -> str | None:
    if not text.startswith("#!"):
        return None
    first = text[2 : text.find("\n")] if "\n" in text else text[2:]
    words = first.split()
    if not words:
        return None
    prog = os.path.basename(words[0])
    if prog == "env":
        # `#!/usr/bin/env -S node --flags`: the first word that is not an option is the program
        rest = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        if not rest:
            return None
        prog = os.path.basename(rest[0])
    prog = prog.rstrip("0123456789.") or prog
    return _SHEBANGS.get(prog) or _SHEBANGS.get(prog.lower())


def detect_language(path: str, text: str | None = None) -> str | None:
    """The language of `path` by extension, else by a `#!` line in `text`; None = unsupported."""
    _, ext = os.path.splitext(path)
    lang = _EXTENSIONS.get(ext.lower())
    if lang is not None:
        return lang
    if text and not ext:
        return _from_shebang(text)
    return None


# Module and function in each wheel that hand out the grammar pointer.
_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
}


@functools.cache
def get_language(name: str) -> tree_sitter.Language:
    """The compiled grammar for a supported language (KeyError otherwise); loaded once per process."""
    module_name, attr = _GRAMMARS[name]
    module = importlib.import_module(module_name)
    return tree_sitter.Language(getattr(module, attr)())


_local = threading.local()


def get_parser(name: str) -> tree_sitter.Parser:
    """A parser for `name`, one per thread: a Parser holds parse state and is not thread-safe."""
    parsers: dict[str, tree_sitter.Parser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = {}
        _local.parsers = parsers
    parser = parsers.get(name)
    if parser is None:
        parser = tree_sitter.Parser(get_language(name))
        parsers[name] = parser
    return parser
