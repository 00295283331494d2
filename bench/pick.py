"""The buyer's cost of choosing a node for a job, by swarm size (registry.pick_free, per call).

Why this exists: the buyer picks a node for every job it hands out, on its one event loop. Judging
every node's liveness for each pick cost O(nodes) silence computations a job: 107 µs at 20
nodes, and a swarm of random Macs may be hundreds. Prints µs per pick for an idle swarm (every
slot free: all are candidates, the least loaded wins) and one at full load (one slot free, as
when a result has just come back), and the same for the "is any node online" check each job
also makes.

    .venv/bin/python bench/pick.py [--nodes 3,20,50,500] [--n 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pylon.daemon.buyer.registry import NodeRegistry  # noqa: E402
from scheduler_support import idle_heartbeat  # noqa: E402


def swarm(nodes: int) -> NodeRegistry:
    reg = NodeRegistry(heartbeat_s=2.0)
    now = time.time()
    for i in range(nodes):
        e = reg.entry(f"{i:064x}")
        e.heartbeat = idle_heartbeat(2.0, name=f"n{i}", slots=4)
        e.last_heartbeat = e.heard_at = now
        e.completed_for_us = 1
    reg.news.note(now, now, 2.0)
    return reg


def per_call_us(fn, n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return round((time.perf_counter() - t0) / n * 1e6, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", default="3,20,50,500")
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    rows = []
    for nodes in [int(x) for x in args.nodes.split(",") if x]:
        reg = swarm(nodes)
        idle = per_call_us(reg.pick_free, args.n)
        entries = list(reg.nodes.values())
        for e in entries[:-1]:
            e.assigned_now = e.free_slots() + e.assigned_now
        full = per_call_us(reg.pick_free, args.n)
        online = per_call_us(reg.any_online, args.n)
        row = {"nodes": nodes, "pick_idle_us": idle, "pick_full_load_us": full, "any_online_us": online}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\nnodes  pick (idle) µs  pick (full load) µs  any_online µs")
    for r in rows:
        idle, full, online = r["pick_idle_us"], r["pick_full_load_us"], r["any_online_us"]
        print(f"{r['nodes']:>5}  {idle:>14}  {full:>19}  {online:>13}")


if __name__ == "__main__":
    main()
