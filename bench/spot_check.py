"""What spot checks cost: a paid 120-file map with `--spot-check 0.05` beside the same with 0.

    .venv/bin/python bench/spot_check.py [--files 120] [--nodes 10] [--shares 0,0.05] [--repeat 1]

For each share, a fresh paid market (relay, testnet mint, buyer, N nodes, each asking
--price msats a job) maps the same repository once per repeat; printed per run: the map's wall
time, the files checked and the check jobs sent, and the msats paid in all (files + checks).
Then the ratios against share 0. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pylon.schemas import rpc  # noqa: E402
from repomap import build_repo, cli_map  # noqa: E402

from pylon.localmarket.launcher import LocalMarket  # noqa: E402


def paid_msats(market: LocalMarket, timeout: float = 60.0) -> int:
    """Wait (bounded) for every completed job to be paid; the msats paid in all."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = market.call("buyer", rpc.JobListReq(limit=100_000))["jobs"]
        done = [j for j in jobs if j["state"] == "completed"]
        if all(j["paid"] for j in done) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    total = 0
    for j in done:
        if j["paid"]:
            total += int(market.call("buyer", rpc.JobStatusReq(job_id=j["job_id"]))["amount_msats"])
    return total


def run(repo: Path, work: Path, share: float, nodes: int, price: int, repeat: int) -> dict[str, Any]:
    market = LocalMarket(
        home=work / f"home-{share}",
        nodes=nodes,
        with_mint=True,
        memory_relay=True,
        heartbeat_s=1.0,
        node_args=["--price", str(price)],
        buyer_args=["--bid", str(price), "--spot-check", str(share)],
    )
    try:
        market.start(timeout=180)
        market.fund()
        runs = []
        for i in range(repeat):
            summary, _ = cli_map(market, repo, work / f"out-{share}-{i}")
            runs.append(summary)
        msats = paid_msats(market)
    finally:
        market.stop()
    checks = [r.get("checks") or {} for r in runs]
    return {
        "share": share,
        "files": runs[-1]["files"],
        "nodes": nodes,
        "wall_s_median": statistics.median(r["wall_s"] for r in runs),
        "wall_s_runs": [r["wall_s"] for r in runs],
        "files_checked": sum(c.get("checked", 0) for c in checks),
        "check_jobs": sum(c.get("check_jobs", 0) for c in checks),
        "check_cost_msats": sum(c.get("cost_msats", 0) for c in checks),
        "paid_msats_total": msats,
        "failed": sum(r["failed"] for r in runs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=120)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--shares", default="0,0.05")
    ap.add_argument("--price", type=int, default=1000, help="msats per job")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pylon-bench-spot-") as tmp:
        work = Path(tmp)
        repo = build_repo(work / "repo", args.files)
        figs = []
        for share in (float(s) for s in args.shares.split(",")):
            fig = run(repo, work, share, args.nodes, args.price, args.repeat)
            print(json.dumps(fig), flush=True)
            figs.append(fig)
    base = figs[0]
    head = ("share", "wall s", "checked", "checks", "paid msat", "wall ×", "sats ×")
    print("\n" + " ".join(f"{h:>9}" for h in head))
    for f in figs:
        wall_x = f["wall_s_median"] / (base["wall_s_median"] or float("nan"))
        sats_x = f["paid_msats_total"] / (base["paid_msats_total"] or float("nan"))
        row = (f["share"], f"{f['wall_s_median']:.2f}", f["files_checked"], f["check_jobs"])
        row += (f["paid_msats_total"], f"{wall_x:.2f}", f"{sats_x:.2f}")
        print(" ".join(f"{x:>9}" for x in row))


if __name__ == "__main__":
    main()
