"""What a deterministic result depends on, as one short string.

Two nodes give byte-identical canonical results for the same input only when they run the same
extraction code on the same grammars. The version names both, so a buyer never compares (or
reuses from a cache) results of different extractors: a node on an older grammar is not a liar.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata

# Bump when the extraction rules change what a file's result is (queries, summary, signatures).
RULES_VERSION = 1

_PACKAGES = (
    "tree-sitter",
    "tree-sitter-python",
    "tree-sitter-javascript",
    "tree-sitter-typescript",
    "tree-sitter-go",
    "tree-sitter-rust",
    "tree-sitter-java",
    "tree-sitter-c",
)


@functools.cache
def deterministic_version() -> str:
    """`d<rules>-<hash of the grammar versions>`, e.g. `d1-3f2a9c0b`."""
    parts = []
    for name in _PACKAGES:
        try:
            parts.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name}=?")
    digest = hashlib.sha256(";".join(parts).encode()).hexdigest()[:8]
    return f"d{RULES_VERSION}-{digest}"
