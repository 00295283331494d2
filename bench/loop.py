"""Benchmark of the market loop: N jobs through 1, 3, 10 and 20 nodes, beside the peer.

Each configuration is a fresh local market of real processes (relay, buyer, nodes). Jobs are
small Python snippets like the peer's (`def fI(): return I`), submitted as fast as the
buyer's RPC takes them. Figures: jobs/s (all jobs / first submit → last result verified at
the buyer), p50/p95 end-to-end as the buyer saw it, the per-stage medians (queue wait,
execution, publish), and each node's peak RSS. The peer is nostrdvm 1.1.8 serving the same
kind of microjob (../shared/peers/nostrdvm_bench.py) in its own venv (bench/.peer-venv).

    .venv/bin/python bench/loop.py [--jobs 500] [--nodes 1,3,10,20] [--no-peer] [--lmdb]
                                   [--concurrency 4]

Both sides use an in-memory relay by default (the peer's own set-up); --lmdb runs Pylon's
relay on LMDB as `pylon relay up` does by default.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pylon.schemas import rpc  # noqa: E402

from pylon.localmarket.launcher import LocalMarket, free_port  # noqa: E402
from pylon.rpc.client import RpcClient  # noqa: E402

PEER_SCRIPT = ROOT.parent / "shared" / "peers" / "nostrdvm_bench.py"
PEER_VENV = ROOT / "bench" / ".peer-venv"


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 4)


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


async def push_jobs(sock: Path, n: int, batch: int = 50) -> list[str]:
    """Submit n jobs through the buyer's RPC, `batch` files per call."""
    client = await RpcClient.connect(sock, client="bench")
    ids: list[str] = []
    try:
        for start in range(0, n, batch):
            items = [
                rpc.SubmitItem(
                    path=f"bench/f{i}.py", text=f"def f{i}():\n    return {i}\n", language="python"
                )
                for i in range(start, min(n, start + batch))
            ]
            res = await client.call(rpc.SubmitManyReq(items=items), timeout=60)
            if res["errors"]:
                raise RuntimeError(f"submissions refused: {res['errors'][:3]}")
            ids.extend(res["job_ids"])
    finally:
        await client.aclose()
    return ids


async def wait_done(sock: Path, ids: list[str], timeout: float) -> list[dict]:
    client = await RpcClient.connect(sock, client="bench")
    want = set(ids)
    deadline = time.monotonic() + timeout
    try:
        while True:
            jobs = (await client.call(rpc.JobListReq(), timeout=60))["jobs"]
            mine = [j for j in jobs if j["job_id"] in want]
            if len(mine) == len(want) and all(
                j["state"] in ("completed", "failed", "cancelled") for j in mine
            ):
                break
            if time.monotonic() > deadline:
                break
            await anyio.sleep(0.25)
        return [await client.call(rpc.JobStatusReq(job_id=i)) for i in ids]
    finally:
        await client.aclose()


def run_pylon(nodes: int, jobs: int, lmdb: bool, concurrency: int = 4) -> dict:
    home = Path(tempfile.mkdtemp(prefix="pylon-bench-"))
    market = LocalMarket(
        home=home,
        nodes=nodes,
        memory_relay=not lmdb,
        heartbeat_s=2.0,
        node_args=["--concurrency", str(concurrency)],
        # A node's memory as a provider runs it (one `pylon node up` of its own), not a fork
        # sharing the spawner's pages, which RSS would count in full anyway.
        fork_nodes=False,
    )
    try:
        market.start(timeout=120)
        sock = market.socket_of("buyer")
        t0 = time.time()
        ids = anyio.run(push_jobs, sock, jobs)
        submit_s = time.time() - t0
        tele = anyio.run(wait_done, sock, ids, 300.0)
        rss = {name: peak_rss_mb(p.popen.pid) for name, p in market.procs.items() if p.popen is not None}
    finally:
        market.stop()
        shutil.rmtree(home, ignore_errors=True)
    done = [t for t in tele if t["state"] == "completed"]
    e2e = [t["received"] - t["submitted"] for t in done if t.get("received") and t.get("submitted")]
    first = min(t["submitted"] for t in tele)
    last = max((t["received"] for t in done if t.get("received")), default=first)
    wall = max(last - first, 1e-9)
    node_rss = [v for k, v in rss.items() if k.startswith("node-") and v is not None]
    return {
        "system": "pylon",
        "nodes": nodes,
        "node_concurrency": concurrency,
        "jobs": jobs,
        "completed": len(done),
        "failed": sum(t["state"] == "failed" for t in tele),
        "wall_s": round(wall, 3),
        "jobs_per_s": round(len(done) / wall, 1),
        "p50_s": pct(e2e, 0.5),
        "p95_s": pct(e2e, 0.95),
        "submit_s": round(submit_s, 3),
        "stage_p50_s": {
            "queue_wait": pct([t["queue_wait"] for t in done if t["queue_wait"] is not None], 0.5),
            "exec": pct([t["exec_time"] for t in done if t["exec_time"] is not None], 0.5),
            "publish": pct([t["publish_time"] for t in done if t["publish_time"] is not None], 0.5),
        },
        "reissued": sum(t["attempts"] > 1 for t in tele),
        "node_peak_rss_mb": {
            "max": max(node_rss, default=None),
            "median": statistics.median(node_rss) if node_rss else None,
        },
        "buyer_peak_rss_mb": rss.get("buyer"),
        "relay": "lmdb" if lmdb else "memory",
    }


def ensure_peer() -> Path | None:
    py = PEER_VENV / "bin" / "python"
    if py.exists():
        return py
    print("[bench] installing the peer (nostr-dvm 1.1.8) into bench/.peer-venv …", file=sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "nostr-dvm==1.1.8"], check=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"[bench] peer unavailable: {exc}", file=sys.stderr)
        return None
    return py


def run_peer(jobs: int) -> dict | None:
    py = ensure_peer()
    if py is None or not PEER_SCRIPT.exists():
        return None
    port = free_port()
    try:
        out = subprocess.run(
            [str(py), str(PEER_SCRIPT), str(jobs), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tempfile.mkdtemp(prefix="peer-"),
        )
    except subprocess.TimeoutExpired:
        return None
    for line in out.stdout.splitlines():
        if line.startswith('{"peer"'):
            return json.loads(line)
    print(
        f"[bench] the peer printed no figures:\n{out.stdout[-1500:]}\n{out.stderr[-1500:]}", file=sys.stderr
    )
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--nodes", default="1,3,10,20")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--lmdb", action="store_true")
    ap.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="slots each node declares (each holds that many of the buyer's jobs, and one more)",
    )
    args = ap.parse_args()
    peer = None if args.no_peer else run_peer(args.jobs)
    if peer:
        print(json.dumps(peer), flush=True)
    rows = []
    for n in [int(x) for x in args.nodes.split(",") if x]:
        row = run_pylon(n, args.jobs, args.lmdb, args.concurrency)
        if peer and peer.get("jobs_per_s"):
            row["vs_peer"] = {
                "jobs_per_s_ratio": round(row["jobs_per_s"] / peer["jobs_per_s"], 2),
                "p50_ratio": round(row["p50_s"] / peer["p50_s"], 2)
                if row["p50_s"] and peer.get("p50_s")
                else None,
                "p95_ratio": round(row["p95_s"] / peer["p95_s"], 2)
                if row["p95_s"] and peer.get("p95_s")
                else None,
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\nnodes  jobs/s   p50_s   p95_s  queue  exec   publish  node_rss_max  vs_peer(jobs/s, p95)")
    for r in rows:
        vp = r.get("vs_peer", {})
        st = r["stage_p50_s"]
        print(
            f"{r['nodes']:>5}  {r['jobs_per_s']:>6}  {r['p50_s']!s:>6}  {r['p95_s']!s:>6}  "
            f"{st['queue_wait']!s:>5}  "
            f"{st['exec']!s:>5}  {st['publish']!s:>7}  {r['node_peak_rss_mb']['max']!s:>10} MB  "
            f"{vp.get('jobs_per_s_ratio', '-')}x, {vp.get('p95_ratio', '-')}x"
        )
    if peer:
        print(
            f"peer: {peer['jobs_per_s']} jobs/s, p50 {peer['p50_s']} s, "
            f"p95 {peer['p95_s']} s ({peer['peer']})"
        )


if __name__ == "__main__":
    os.environ.setdefault("PYLON_LOG_LEVEL", "warning")
    main()
