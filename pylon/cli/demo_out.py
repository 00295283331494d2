"""Where `pylon demo` writes its artifacts, and the rule that it deletes only what it wrote.

The demo maps into `./pylon-out` and replaces the previous demo's output there. A directory of
that name the demo did not create (the user's own, another tool's) is never deleted: the demo
marks every output directory it creates with MARKER and refuses to reuse one without it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MARKER = ".pylon-demo"
_MARKER_TEXT = "written by `pylon demo`; it may delete this directory's contents on its next run\n"


class DemoOutError(Exception):
    pass


def claim(root: Path) -> Path:
    """Make `root` the demo's output directory, or raise DemoOutError if it belongs to someone else."""
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise DemoOutError(f"{root} exists and is not a directory the demo made; move it away")
    if root.exists() and not (root / MARKER).is_file() and any(root.iterdir()):
        raise DemoOutError(
            f"{root} exists and was not written by `pylon demo`: refusing to delete it; "
            "move it away or run the demo from another directory"
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(_MARKER_TEXT)
    return root


def reset(out: Path, root: Path) -> Path:
    """Empty `out` (the claimed `root`, or a directory inside it) for a fresh run; keeps the marker."""
    if not (root / MARKER).is_file():
        raise DemoOutError(f"{root} is not the demo's output directory")
    out = out.resolve() if out.exists() else out
    if out != root.resolve() and root.resolve() not in out.parents:
        raise DemoOutError(f"{out} is outside the demo's output directory {root}")
    if out.exists():
        for child in out.iterdir():
            if child.name == MARKER:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out
