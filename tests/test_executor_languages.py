"""Which grammar a file gets."""

from __future__ import annotations

import pytest

from pylon.executors.languages import (
    SUPPORTED_LANGUAGES,
    detect_language,
    get_language,
    get_parser,
    normalize_language,
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("pkg/mod.py", "python"),
        ("stubs/mod.pyi", "python"),
        ("web/app.js", "javascript"),
        ("web/app.mjs", "javascript"),
        ("web/App.jsx", "javascript"),
        ("src/index.ts", "typescript"),
        ("src/App.tsx", "tsx"),
        ("cmd/main.go", "go"),
        ("src/lib.rs", "rust"),
        ("src/Main.java", "java"),
        ("src/vec.c", "c"),
        ("include/vec.h", "c"),
        ("SRC/UPPER.PY", "python"),
        ("README.md", None),
        ("src/main.cpp", None),
        ("Makefile", None),
        (".py", None),  # a dotfile, not an extension
    ],
)
def test_detect_by_extension(path: str, expected: str | None) -> None:
    assert detect_language(path) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#!/usr/bin/env python3\nprint(1)\n", "python"),
        ("#!/usr/bin/python3.11\n", "python"),
        ("#!/usr/bin/env -S node --no-warnings\n", "javascript"),
        ("#!/bin/sh\necho hi\n", None),
        ("print(1)\n", None),
    ],
)
def test_detect_by_shebang_without_extension(text: str, expected: str | None) -> None:
    assert detect_language("bin/tool", text) == expected


def test_extension_wins_over_shebang() -> None:
    assert detect_language("tool.js", "#!/usr/bin/env python\n") == "javascript"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Python", "python"), ("py", "python"), ("JS", "javascript"), ("ts", "typescript"),
     ("golang", "go"), ("rs", "rust"), ("tsx", "tsx"), ("cpp", None), ("", None), (None, None)],
)  # fmt: skip
def test_normalize_language(name: str | None, expected: str | None) -> None:
    assert normalize_language(name) == expected


def test_every_supported_language_loads_and_parses() -> None:
    assert SUPPORTED_LANGUAGES == {"python", "javascript", "typescript", "tsx", "go", "rust", "java", "c"}
    for lang in SUPPORTED_LANGUAGES:
        assert get_language(lang) is get_language(lang)  # loaded once
        parser = get_parser(lang)
        assert parser is get_parser(lang)  # one per thread, reused
        assert parser.parse(b"x").root_node is not None
