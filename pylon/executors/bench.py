"""Time the deterministic executor: `python -m pylon.executors.bench [FILE ...]`.

Prints CPU microseconds per extraction (best of several rounds, so other load on the machine
inflates the figures less) for a 20-line and a 1000-line Python file built here, then for each
FILE given.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pylon.executors.deterministic import extract_file
from pylon.executors.languages import detect_language

SMALL = '''"""Tiny module."""
import os
from typing import Any

CONST = 3


class Foo:
    """A foo."""

    def __init__(self, a: int) -> None:
        self.a = a

    def bar(self, b: int) -> int:
        """Add."""
        return self.a + b


def helper(x: Any) -> str:
    return str(x)
'''

_BLOCK = '''

class Widget{i}(Base):
    """Widget number {i}."""

    size: int = {i}

    def __init__(self, name: str, parts: list[str] | None = None) -> None:
        self.name = name
        self.parts = parts or []

    def render(self, width: int = 80) -> str:
        """Render it."""
        lines = [self.name.center(width)]
        for part in self.parts:
            lines.append(f"- {{part}}")
        return "\\n".join(lines)


def make_widget{i}(name: str) -> Widget{i}:
    return Widget{i}(name)
'''


def thousand_lines() -> str:
    text = '"""Widgets."""\nimport os\nfrom typing import Any\n'
    i = 0
    while text.count("\n") < 1000:
        text += _BLOCK.format(i=i)
        i += 1
    return "\n".join(text.splitlines()[:1000]) + "\n"


def best_us(path: str, text: str, rounds: int = 7, budget_s: float = 0.3) -> float:
    extract_file(path, text)  # warm the grammar, query and parser caches
    start = time.process_time()
    extract_file(path, text)
    once = max(time.process_time() - start, 1e-6)
    n = max(1, min(5000, int(budget_s / once)))
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(n):
            extract_file(path, text)
        best = min(best, (time.process_time() - start) / n)
    return best * 1e6


def main(argv: list[str]) -> None:
    cases: list[tuple[str, str, str]] = [
        ("python, 20 lines", "small.py", SMALL),
        ("python, 1000 lines", "big.py", thousand_lines()),
    ]
    for arg in argv:
        path = Path(arg)
        if detect_language(path.name) is not None:
            cases.append((arg, path.name, path.read_text(encoding="utf-8")))
    for label, path, text in cases:
        lines = text.count("\n")
        print(f"{label:60} {lines:6} lines {len(text.encode()):8} B {best_us(path, text):10.1f} µs")


if __name__ == "__main__":
    main(sys.argv[1:])
