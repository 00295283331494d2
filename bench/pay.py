"""Benchmark of paid jobs: N jobs through 10 nodes, each verified result paid by nutzap.

A fresh local market of real processes (relay, `pylon mint up`, buyer, nodes); every node
asks PRICE msats, the buyer bids it and pays with the `auto` policy. Jobs are small Python
snippets submitted as fast as the buyer's RPC takes them. Figures:

- paid_jobs_per_s: all jobs / (first submit → last payment published), the target is ≥ 25;
- results_per_s: the same market's result rate (first submit → last result verified);
- payment latency (result verified → nutzap published), its share of the paid end-to-end
  (submit → paid), p50/p95 of both;
- receipts: each node's redemption (kind 7376) arrived, and the wallets add up exactly.
- then a paced phase in the same market (--paced N jobs at --rate R/s, below capacity): the
  payment's latency and share of end-to-end when payments do not queue behind a burst;
- with --baseline, the same market without a mint (results only) for comparison.

    .venv/bin/python bench/pay.py [--jobs 300] [--nodes 10] [--price 1000]
                                  [--paced 100 --rate 10] [--baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pylon.schemas import rpc  # noqa: E402

from pylon.localmarket.launcher import LocalMarket  # noqa: E402
from pylon.rpc.client import RpcClient  # noqa: E402

TARGET_PAID_PER_S = 25.0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 4)


async def push_jobs(sock: Path, n: int, concurrency: int = 64) -> list[str]:
    client = await RpcClient.connect(sock, client="bench")
    ids: list[str] = [""] * n
    sem = anyio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            res = await client.call(
                rpc.SubmitReq(
                    path=f"bench/f{i}.py", text=f"def f{i}():\n    return {i}\n", language="python"
                ),
                timeout=60,
            )
            ids[i] = res["job_id"]

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    await client.aclose()
    return ids


async def push_paced(sock: Path, n: int, rate: float) -> list[str]:
    """n jobs at a steady `rate` per second, each submitted on its own schedule."""
    client = await RpcClient.connect(sock, client="bench")
    ids: list[str] = [""] * n
    t0 = time.monotonic()

    async def one(i: int) -> None:
        res = await client.call(
            rpc.SubmitReq(path=f"bench/p{i}.py", text=f"def p{i}():\n    return {i}\n", language="python"),
            timeout=60,
        )
        ids[i] = res["job_id"]

    async with anyio.create_task_group() as tg:
        for i in range(n):
            await anyio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            tg.start_soon(one, i)
    await client.aclose()
    return ids


def latency(tele: list[dict[str, Any]]) -> dict[str, Any]:
    paid = [t for t in tele if t["state"] == "completed" and t["is_paid"] and t["paid"]]
    pay_lat = [t["paid"] - t["received"] for t in paid]
    paid_e2e = [t["paid"] - t["submitted"] for t in paid]
    shares = [
        (t["paid"] - t["received"]) / (t["paid"] - t["submitted"]) for t in paid if t["paid"] > t["submitted"]
    ]
    return {
        "paid": len(paid),
        "result_e2e_p50_s": pct([t["received"] - t["submitted"] for t in paid], 0.5),
        "payment_latency_p50_s": pct(pay_lat, 0.5),
        "payment_latency_p95_s": pct(pay_lat, 0.95),
        "paid_e2e_p50_s": pct(paid_e2e, 0.5),
        "paid_e2e_p95_s": pct(paid_e2e, 0.95),
        "payment_share_of_e2e_median": round(statistics.median(shares), 3) if shares else None,
    }


async def wait_done(sock: Path, ids: list[str], timeout: float, paid: bool) -> list[dict[str, Any]]:
    """Every job terminal (and, with `paid`, every completed one paid), then their telemetry."""
    client = await RpcClient.connect(sock, client="bench")
    want = set(ids)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            jobs = [
                j for j in (await client.call(rpc.JobListReq(), timeout=60))["jobs"] if j["job_id"] in want
            ]
            terminal = len(jobs) == len(want) and all(
                j["state"] in ("completed", "failed", "cancelled") for j in jobs
            )
            if terminal and (not paid or all(j["paid"] for j in jobs if j["state"] == "completed")):
                break
            await anyio.sleep(0.2)
        return [await client.call(rpc.JobStatusReq(job_id=i)) for i in ids]
    finally:
        await client.aclose()


def wait_receipts(market: LocalMarket, n: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        got = len(market.call("buyer", rpc.ReceiptsReq())["receipts"])
        if got >= n:
            break
        time.sleep(0.2)
    return got


def run(
    nodes: int, jobs: int, price_msats: int, with_mint: bool, paced: int = 0, rate: float = 10.0
) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="pylon-paybench-"))
    node_args = ["--concurrency", "4"] + (["--price", str(price_msats)] if with_mint else [])
    buyer_args = ["--bid", str(price_msats)] if with_mint else []
    market = LocalMarket(
        home=home,
        nodes=nodes,
        memory_relay=True,
        heartbeat_s=2.0,
        with_mint=with_mint,
        node_args=node_args,
        buyer_args=buyer_args,
    )
    price_sats = -(-price_msats // 1000)
    try:
        market.start(timeout=180)
        extra: dict[str, Any] = {}
        if with_mint:
            market.fund("buyer", (jobs + paced) * price_sats + 1000)
            before = {n: market.call(n, rpc.WalletBalanceReq())["balance_sats"] for n in market.node_names()}
        sock = market.socket_of("buyer")
        ids = anyio.run(push_jobs, sock, jobs)
        tele = anyio.run(wait_done, sock, ids, 600.0, with_mint)
        if with_mint:
            t_r = time.monotonic()
            receipts = wait_receipts(market, sum(t["is_paid"] for t in tele), 120)
            after = {n: market.call(n, rpc.WalletBalanceReq())["balance_sats"] for n in market.node_names()}
            status = market.call("buyer", rpc.StatusReq())
            extra = {
                "receipts": receipts,
                "receipts_wait_s": round(time.monotonic() - t_r, 2),
                "nodes_earned_sats": sum(after.values()) - sum(before.values()),
                "buyer_balance_sats": market.call("buyer", rpc.WalletBalanceReq())["balance_sats"],
                "payment_failures": {k: v for k, v in status["dropped"].items() if k.startswith("payment")},
            }
            if paced:
                pids = anyio.run(push_paced, sock, paced, rate)
                extra["paced"] = {"jobs": paced, "rate_per_s": rate}
                extra["paced"] |= latency(anyio.run(wait_done, sock, pids, 600.0, True))
    finally:
        market.stop()
        shutil.rmtree(home, ignore_errors=True)
    done = [t for t in tele if t["state"] == "completed"]
    first = min(t["submitted"] for t in tele)
    last_result = max(t["received"] for t in done)
    row: dict[str, Any] = {
        "nodes": nodes,
        "jobs": jobs,
        "completed": len(done),
        "mint": with_mint,
        "results_per_s": round(len(done) / max(last_result - first, 1e-9), 1),
        "result_e2e_p50_s": pct([t["received"] - t["submitted"] for t in done], 0.5),
        "result_e2e_p95_s": pct([t["received"] - t["submitted"] for t in done], 0.95),
    }
    if not with_mint:
        return row
    paid = [t for t in done if t["is_paid"] and t["paid"]]
    last_paid = max((t["paid"] for t in paid), default=first)
    pay_lat = [t["paid"] - t["received"] for t in paid]
    paid_e2e = [t["paid"] - t["submitted"] for t in paid]
    shares = [
        (t["paid"] - t["received"]) / (t["paid"] - t["submitted"]) for t in paid if t["paid"] > t["submitted"]
    ]
    row |= {
        "paid": len(paid),
        "price_msats": price_msats,
        "paid_jobs_per_s": round(len(paid) / max(last_paid - first, 1e-9), 1),
        "target_paid_jobs_per_s": TARGET_PAID_PER_S,
        "payment_latency_p50_s": pct(pay_lat, 0.5),
        "payment_latency_p95_s": pct(pay_lat, 0.95),
        "paid_e2e_p50_s": pct(paid_e2e, 0.5),
        "paid_e2e_p95_s": pct(paid_e2e, 0.95),
        "payment_share_of_e2e_median": round(statistics.median(shares), 3) if shares else None,
        "payment_share_of_e2e_p50_ratio": (
            round(pct(pay_lat, 0.5) / pct(paid_e2e, 0.5), 3) if pay_lat and pct(paid_e2e, 0.5) else None
        ),
        "wallets_add_up": extra["nodes_earned_sats"] == len(paid) * price_sats,
    } | extra
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--price", type=int, default=1000, help="msats per job")
    ap.add_argument("--paced", type=int, default=100, help="jobs in the paced phase (0: none)")
    ap.add_argument("--rate", type=float, default=10.0, help="jobs/s in the paced phase")
    ap.add_argument("--baseline", action="store_true", help="also run the same market without payments")
    args = ap.parse_args()
    rows = [run(args.nodes, args.jobs, args.price, True, args.paced, args.rate)]
    print(json.dumps(rows[0]), flush=True)
    if args.baseline:
        rows.append(run(args.nodes, args.jobs, args.price, False))
        print(json.dumps(rows[1]), flush=True)
    r = rows[0]
    print(
        f"\n{r['nodes']} nodes, {r['jobs']} jobs at {r['price_msats']} msats: "
        f"{r['paid_jobs_per_s']} paid jobs/s (target ≥ {TARGET_PAID_PER_S:g}), "
        f"results {r['results_per_s']}/s; "
        f"payment p50 {r['payment_latency_p50_s']}s p95 {r['payment_latency_p95_s']}s = "
        f"{r['payment_share_of_e2e_median']} of the paid end-to-end (p50 {r['paid_e2e_p50_s']}s); "
        f"receipts {r['receipts']}/{r['paid']}; wallets add up: {r['wallets_add_up']}"
    )
    if "paced" in r:
        p = r["paced"]
        print(
            f"paced {p['jobs']} jobs at {p['rate_per_s']:g}/s: result e2e p50 {p['result_e2e_p50_s']}s, "
            f"payment p50 {p['payment_latency_p50_s']}s p95 {p['payment_latency_p95_s']}s = "
            f"{p['payment_share_of_e2e_median']} "
            f"of the paid end-to-end (p50 {p['paid_e2e_p50_s']}s, p95 {p['paid_e2e_p95_s']}s)"
        )
    if args.baseline:
        b = rows[1]
        print(
            f"without payments: {b['results_per_s']} results/s, e2e p50 {b['result_e2e_p50_s']}s "
            f"p95 {b['result_e2e_p95_s']}s"
        )


if __name__ == "__main__":
    os.environ.setdefault("PYLON_LOG_LEVEL", "warning")
    main()
