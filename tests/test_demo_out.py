"""Issue 10 item 13: `pylon demo` deletes only the output it wrote itself.

The old demo ran `shutil.rmtree(./pylon-out)` after starting the market, whatever was there;
the CLI test below fails on it (the user's file is gone). The demo now refuses a `pylon-out`
it did not mark, before it starts anything.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pylon.cli.demo_out import MARKER, DemoOutError, claim, reset
from pylon.localmarket.launcher import pylon_argv


def test_a_foreign_pylon_out_is_refused_and_kept(tmp_path: Path) -> None:
    mine = tmp_path / "pylon-out"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work\n")
    res = subprocess.run(
        pylon_argv("demo", "--nodes", "1", "--no-mint", "--json"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode != 0
    assert "not written by `pylon demo`" in res.stderr and res.stdout == ""
    assert (mine / "thesis.tex").read_text() == "years of work\n"


def test_the_demos_own_output_is_replaced(tmp_path: Path) -> None:
    root = claim(tmp_path / "pylon-out")
    assert (root / MARKER).is_file()
    (root / "overview.md").write_text("old run")
    (root / "run-1").mkdir()
    (root / "run-1" / "repo_map.json").write_text("{}")
    claim(root)  # a second demo run may take it again
    reset(root, root)
    assert [p.name for p in root.iterdir()] == [MARKER]
    out = reset(root / "run-2", root)
    assert out.is_dir()


def test_empty_or_missing_dirs_are_claimed_and_files_or_outside_paths_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert (claim(tmp_path / "empty") / MARKER).is_file()
    assert (claim(tmp_path / "new" / "pylon-out") / MARKER).is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(DemoOutError):
        claim(tmp_path / "file")
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    with pytest.raises(DemoOutError):
        claim(tmp_path / "link")
    with pytest.raises(DemoOutError):
        reset(tmp_path / "elsewhere", tmp_path / "empty")
    with pytest.raises(DemoOutError):
        reset(tmp_path / "x", tmp_path / "not-claimed")
