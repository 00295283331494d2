"""universal-ctags as the oracle for which symbols a file defines."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

CTAGS = shutil.which("ctags")

# ctags kinds that are definitions a repo map should list, per ctags language name.
DEFINITION_KINDS = {
    "Python": {"class", "function", "member"},
}


def have_universal_ctags() -> bool:
    if CTAGS is None:
        return False
    out = subprocess.run([CTAGS, "--version"], capture_output=True, text=True).stdout
    return "Universal Ctags" in out


def ctags_definitions(path: Path, language: str = "Python") -> set[tuple[str, int]]:
    out = subprocess.run(
        [CTAGS, "--output-format=json", "--fields=+nK", "-f", "-", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wanted = DEFINITION_KINDS[language]
    defs = set()
    for line in out.splitlines():
        tag = json.loads(line)
        if tag.get("_type") != "tag" or tag.get("kind") not in wanted:
            continue
        defs.add((tag["name"], int(tag["line"])))
    return defs


def recall(expected: set[tuple[str, int]], got: set[tuple[str, int]]) -> tuple[int, int]:
    """(matched, total): a ctags definition matches a symbol of the same name within one line."""
    by_name: dict[str, list[int]] = {}
    for name, line in got:
        by_name.setdefault(name, []).append(line)
    matched = sum(1 for name, line in expected if any(abs(line - g) <= 1 for g in by_name.get(name, [])))
    return matched, len(expected)
