"""Figures for issue 12: incremental `pylon map` and repo_map.md's token budget.

A real third-party package (click, as installed in this venv) is copied into a git repository
and mapped by a local market (relay, buyer, 3 nodes) through the CLI, as a person would:
first map, the same commit again (no jobs), after a one-file edit (one job), and --fresh.
Prints wall times (the CLI process, start-up included, and the buyer's own `wall_s`), jobs
sent, and repo_map.md's token count at 1024 and 4096. Figures, not pass/fail.

    .venv/bin/python bench/map_incremental.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import click  # noqa: E402

from pylon.localmarket.launcher import LocalMarket  # noqa: E402
from pylon.repomap.tokens import count_tokens  # noqa: E402


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@example.org", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def timed_map(m: LocalMarket, repo: Path, out: Path, *extra: str) -> dict:
    t0 = time.perf_counter()
    res = m.cli("map", str(repo), "--out", str(out), "--json", *extra, timeout=600)
    cli_s = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(res.stderr)
    doc = json.loads(res.stdout)
    return {
        "cli_s": round(cli_s, 3),
        "buyer_wall_s": doc["wall_s"],
        "sent": doc["sent"],
        "cached": doc["cached"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3, help="same-commit re-runs to time")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pylon-bench-incr-"))
    repo = work / "repo"
    shutil.copytree(Path(click.__file__).parent, repo / "click", ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "click")
    m = LocalMarket(home=work / "home", nodes=3, memory_relay=True, heartbeat_s=1.0)
    figures: dict = {"repo": f"click {click.__version__}" if hasattr(click, "__version__") else "click"}
    try:
        m.start(timeout=120)
        figures["first"] = timed_map(m, repo, work / "o1", "--tokens", "1024")
        figures["tokens_1024"] = count_tokens((work / "o1" / "repo_map.md").read_text())
        again = [timed_map(m, repo, work / f"o2-{i}", "--tokens", "4096") for i in range(args.repeat)]
        figures["same_commit"] = again
        figures["tokens_4096"] = count_tokens((work / "o2-0" / "repo_map.md").read_text())
        with (repo / "click" / "globals.py").open("a") as fh:
            fh.write("\n\ndef bench_edit() -> None:\n    pass\n")
        git(repo, "commit", "-qam", "edit")
        figures["one_edit"] = timed_map(m, repo, work / "o3")
        figures["fresh"] = timed_map(m, repo, work / "o4", "--fresh")
    finally:
        m.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
