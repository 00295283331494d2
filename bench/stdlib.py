"""Scale on real code: `pylon map` of this machine's whole CPython `Lib/` with 20 nodes.

    .venv/bin/python bench/stdlib.py [--nodes 20] [--lib PATH] [--timeout 900] [--keep]

Copies every .py file of the standard library (site-packages and __pycache__ left out) to a
scratch directory, then prints, one JSON line each and a summary:
1. `local`: `pylon.repomap.local.map_locally` in this one process (deterministic extractor):
   wall time, files, which failed locally.
2. `swarm`: a local market with --nodes deterministic nodes (`LocalMarket`), `pylon map --json`
   of the same directory: wall time, completed / failed, and every file that parses locally but
   did not complete in the swarm, with its error, attempts and how long it took to fail.
3. The ratio swarm / local (issue 9's target: <= 4) and whether every locally parsed file
   completed. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from network_support import telemetry  # noqa: E402

from pylon.executors.deterministic import extract_file  # noqa: E402
from pylon.localmarket.launcher import LocalMarket  # noqa: E402
from pylon.repomap.local import map_locally  # noqa: E402


def log(msg: str) -> None:
    print(f"[stdlib] {msg}", file=sys.stderr, flush=True)


def copy_lib(src: Path, dest: Path) -> int:
    n = 0
    for p in sorted(src.rglob("*.py")):
        rel = p.relative_to(src)
        if "site-packages" in rel.parts or "__pycache__" in rel.parts or not p.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest / rel)
        n += 1
    return n


def local(repo: Path, out: Path) -> tuple[dict[str, Any], set[str]]:
    t0 = time.perf_counter()
    summary = map_locally(repo, out, extract_file, max_files=100_000)
    wall = time.perf_counter() - t0
    repo_map = json.loads((out / "repo_map.json").read_text())
    ok = set(repo_map["files"])
    fig = {
        "figure": "local",
        "files": summary["files"],
        "completed": summary["completed"],
        "failed": summary["failed"],
        "wall_s": round(wall, 3),
    }
    return fig, ok


def swarm(repo: Path, work: Path, nodes: int, timeout: float, parsed_locally: set[str]) -> dict[str, Any]:
    m = LocalMarket(home=work / "home", nodes=nodes, heartbeat_s=1.0)
    try:
        t_up = time.perf_counter()
        m.start(timeout=300)
        up_s = time.perf_counter() - t_up
        t0 = time.perf_counter()
        res = m.cli("map", str(repo), "--out", str(work / "out-swarm"), "--json", timeout=timeout)
        cli_wall = time.perf_counter() - t0
        if res.returncode != 0:
            return {"figure": "swarm", "error": res.stderr.strip()[-2000:], "cli_wall_s": round(cli_wall, 3)}
        summary = json.loads(res.stdout)
        jobs = telemetry(m.home, summary["run_id"])
        atts = attempts(m)
    finally:
        m.stop()
    not_done = []
    for j in jobs:
        if j["state"] == "completed":
            continue
        # When each attempt went out (s after submission) and how it ended: a failure that
        # came after three full timeouts shows as three attempts a timeout apart.
        mine = sorted((a for a in atts if a[1] == j["job_id"]), key=lambda a: a[2])
        sub = j.get("submitted") or (mine[0][2] if mine else 0)
        tried = [(round(a[2] - sub, 1), a[3], a[4]) for a in mine]
        not_done.append(
            {
                "path": j["path"],
                "state": j["state"],
                "error": j["error"],
                "attempts": j["attempts"],
                "parses_locally": j["path"] in parsed_locally,
                "attempts_issued_s_outcome_error": tried,
            }
        )
    return {
        "figure": "swarm",
        "nodes": nodes,
        "files": summary["files"],
        "completed": summary["completed"],
        "failed": summary["failed"],
        "wall_s": summary["wall_s"],
        "cli_wall_s": round(cli_wall, 3),
        "up_s": round(up_s, 2),
        "errors": dict(Counter(str(d["error"]) for d in not_done)),
        "not_completed": not_done,
    }


def attempts(m: LocalMarket) -> list[tuple[str, str, float, str | None, str | None]]:
    """(request_id, job_id, issued, outcome, error) of every attempt, from the buyer's db."""
    con = sqlite3.connect(f"file:{m.home / 'buyer' / 'telemetry.db'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT request_id, job_id, issued, outcome, error FROM attempts").fetchall()
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--lib", default=sysconfig.get_paths()["stdlib"])
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pylon-stdlib-"))
    try:
        repo = work / "Lib"
        n = copy_lib(Path(a.lib), repo)
        log(f"{n} .py files from {a.lib}")
        lo, parsed = local(repo, work / "out-local")
        print(json.dumps(lo), flush=True)
        sw = swarm(repo, work, a.nodes, a.timeout, parsed)
        print(json.dumps(sw), flush=True)
        if "wall_s" in sw:
            ratio = sw["wall_s"] / lo["wall_s"] if lo["wall_s"] else float("nan")
            missing = [d for d in sw["not_completed"] if d["parses_locally"]]
            print(
                f"\nlocal {lo['wall_s']:.2f} s ({lo['completed']}/{lo['files']} parsed), "
                f"swarm of {a.nodes} {sw['wall_s']:.2f} s ({sw['completed']}/{sw['files']} completed): "
                f"ratio {ratio:.2f} (target <= 4); parsed locally but not completed in the swarm: "
                f"{len(missing)}"
            )
            for d in missing:
                print(
                    f"  {d['path']}: {d['state']} {d['error']} "
                    f"attempts (issued s, outcome, error): {d['attempts_issued_s_outcome_error']}"
                )
    finally:
        if a.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
