"""Deterministic `pylon ask` on a real repository nobody here wrote: click, from the venv.

For "where is X defined and who uses it" on a dozen symbols, the ranked evidence must name the
file universal-ctags says defines X first (at a line ctags gives) and at least one caller in
another file. The symbols are picked from ctags' own output (defined in exactly one file, used
in another), so the check does not lean on anything Pylon computed.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import anyio
import click
import pytest
from ask_support import LocalCaller, git_repo_from, map_dir_of
from ctags_oracle import have_universal_ctags
from pylon.daemon.ask_coordinator import AskEngine

from pylon.executors.base import DeterministicExecutor

pytestmark = pytest.mark.skipif(not have_universal_ctags(), reason="needs universal-ctags")

SYMBOLS = 12


def ctags_all(root: Path) -> dict[str, dict[str, set[int]]]:
    """name -> path -> definition lines, for classes, functions and methods (ctags' kinds)."""
    import subprocess

    from ctags_oracle import CTAGS

    out = subprocess.run(
        [CTAGS, "--output-format=json", "--fields=+nK", "-R", "-f", "-", "--languages=Python", "."],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    defs: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for line in out.splitlines():
        tag = json.loads(line)
        if tag.get("_type") == "tag" and tag.get("kind") in {"class", "function", "member"}:
            defs[tag["name"]][tag["path"].removeprefix("./")].add(int(tag["line"]))
    return defs


def pick_symbols(
    root: Path, defs: dict[str, dict[str, set[int]]]
) -> list[tuple[str, str, set[int], set[str]]]:
    texts = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*.py")}
    chosen = []
    for name in sorted(defs):
        where = defs[name]
        if len(where) != 1 or len(name) < 6 or name.startswith("_") or name.lower() == name.upper():
            continue
        ((path, lines),) = where.items()
        pat = re.compile(rf"(?<![\w.]){re.escape(name)}\s*\(")  # called, not only named
        callers = {p for p, t in texts.items() if p != path and pat.search(t)}
        if callers:
            chosen.append((name, path, lines, callers))
    step = max(1, len(chosen) // SYMBOLS)
    return chosen[::step][:SYMBOLS]


@pytest.fixture(scope="module")
def click_map(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    repo = git_repo_from(Path(click.__file__).parent, tmp_path_factory.mktemp("click"))
    return repo, map_dir_of(repo, tmp_path_factory.mktemp("map"))


def test_definition_first_and_a_caller_for_a_dozen_click_symbols(
    click_map: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, map_dir = click_map
    symbols = pick_symbols(repo, ctags_all(repo))
    assert len(symbols) == SYMBOLS, symbols

    async def ask_all() -> list[tuple[str, str, set[int], set[str], dict]]:
        out = []
        for i, (name, path, lines, callers) in enumerate(symbols):
            engine = AskEngine(
                LocalCaller(DeterministicExecutor()),
                map_dir=map_dir,
                question=f"where is {name} defined and who uses it",
                fanout=8,
                depth=1,
                out_dir=tmp_path / str(i),
            )
            await engine.run()
            out.append((name, path, lines, callers, json.loads((tmp_path / str(i) / "ask.json").read_text())))
        return out

    misses = []
    for name, path, lines, callers, tree in anyio.run(ask_all):
        assert tree["mode"] == "deterministic"
        ev = tree["evidence"]
        first = ev[0] if ev else {}
        defined_first = (
            first.get("kind") == "definition"
            and first.get("symbol") == name
            and first.get("path") == path
            and any(abs(first["line"] - ln) <= 1 for ln in lines)
        )
        caller = any(e["kind"] == "use" and e["symbol"] == name and e["path"] != path for e in ev)
        # the claims say it too, with citations into the real files
        claim_paths = [c["citations"][0]["path"] for c in tree["claims"]]
        if not (defined_first and caller and claim_paths and claim_paths[0] == path):
            misses.append((name, path, sorted(callers)[:3], first, claim_paths[:3]))
    assert not misses, misses
