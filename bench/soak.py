"""Soak under churn: N nodes, M jobs, a share of the nodes killed (-9) and restarted along the
way, and one relay kill (-9) and restart, all on real processes (LMDB relay, mint, buyer, nodes).

The jobs go out in ten waves while chaos happens between them (so it hits work in flight):

    after wave 1: kill the first half of the victims      after wave 5: kill the second half
    after wave 3: restart them                            after wave 7: restart them
    after wave 4: kill the relay and restart it on its port

Figures: success rate, lost jobs (never finished, or refused at submit; target 0), double
payments (jobs with more than one 9321 nutzap, or more than one accepted result; target 0),
p50/p95 end-to-end of completed jobs, re-issues and their reasons, and peak memory (RSS
sampled every 0.5 s: the largest single process of each kind, and the whole market's total).

    .venv/bin/python bench/soak.py [--nodes 50] [--jobs 1000] [--kill-frac 0.2] [--no-mint]

50 node processes on a 2-core machine: heartbeats every 2 s and one job at a time per node.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pylon.schemas import kinds, rpc  # noqa: E402

from pylon.localmarket.launcher import LocalMarket  # noqa: E402
from pylon.nostr.filters import Filter  # noqa: E402
from pylon.nostr.relay_client import RelayPool  # noqa: E402
from pylon.rpc.client import RpcClient, RpcError  # noqa: E402

TERMINAL = ("completed", "failed", "cancelled")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 3)


class MemorySampler:
    """Peak RSS per process name (children included: the mint runs nutshell) and of the total."""

    def __init__(self, market: LocalMarket, interval: float = 0.5) -> None:
        self.market = market
        self.interval = interval
        self.peak: dict[str, float] = {}
        self.peak_total = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._t.start()

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)

    def _rss(self, pid: int) -> float:
        try:
            p = psutil.Process(pid)
            return sum(x.memory_info().rss for x in [p, *p.children(recursive=True)]) / 2**20
        except psutil.Error:
            return 0.0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            total = 0.0
            for name, proc in list(self.market.procs.items()):
                if proc.popen is None or proc.popen.poll() is not None:
                    continue
                mb = self._rss(proc.popen.pid)
                total += mb
                self.peak[name] = max(self.peak.get(name, 0.0), mb)
            self.peak_total = max(self.peak_total, total)

    def summary(self) -> dict[str, Any]:
        nodes = [v for k, v in self.peak.items() if k.startswith("node-")]
        return {
            "node_max_mb": round(max(nodes, default=0), 1),
            "node_median_mb": round(statistics.median(nodes), 1) if nodes else None,
            "buyer_mb": round(self.peak.get("buyer", 0), 1),
            "relay_mb": round(self.peak.get("relay", 0), 1),
            "mint_mb": round(self.peak.get("mint", 0), 1) if "mint" in self.peak else None,
            "total_mb": round(self.peak_total, 1),
        }


async def submit_wave(sock: Path, start: int, n: int, concurrency: int = 16) -> tuple[list[str], int]:
    """Submit n small files; a refused submit is tried again (3 times) before it counts as lost."""
    client = await RpcClient.connect(sock, client="soak")
    ids: list[str] = []
    refused = 0
    sem = anyio.Semaphore(concurrency)

    async def one(i: int) -> None:
        nonlocal refused
        async with sem:
            for attempt in range(3):
                try:
                    res = await client.call(
                        rpc.SubmitReq(
                            path=f"soak/f{i}.py",
                            language="python",
                            text=f"class C{i}:\n    def run(self):\n        return {i}\n",
                        ),
                        timeout=60,
                    )
                    ids.append(res["job_id"])
                    return
                except RpcError:
                    await anyio.sleep(1 + attempt)
            refused += 1

    try:
        async with anyio.create_task_group() as tg:
            for i in range(start, start + n):
                tg.start_soon(one, i)
    finally:
        await client.aclose()
    return ids, refused


def buyer_status(m: LocalMarket) -> dict[str, Any]:
    return m.call("buyer", rpc.StatusReq(), timeout=30)


def wait_outstanding_below(m: LocalMarket, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if buyer_status(m)["outstanding"] < n:
                return
        except (RpcError, OSError, TimeoutError):
            pass
        time.sleep(0.25)


def wait_terminal(m: LocalMarket, ids: set[str], timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    states: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        listing = m.call("buyer", rpc.JobListReq(limit=1_000_000), timeout=60)["jobs"]
        states = {j["job_id"]: j for j in listing if j["job_id"] in ids}
        if len(states) == len(ids) and all(j["state"] in TERMINAL for j in states.values()):
            break
        time.sleep(1)
    return states


def nutzaps_per_job(m: LocalMarket, to_job: dict[str, str]) -> tuple[Counter[str], Counter[str]]:
    """(nutzap events per job, distinct sets of proofs per job).

    A nutzap the relay did not acknowledge in time is published again with the same proofs (the
    payer never mints twice for a job): that is a second event, not a second payment. Paying
    twice means two different sets of proofs for one job."""

    async def go() -> list[Any]:
        pool = RelayPool([m.relay_url])
        async with anyio.create_task_group() as tg:
            await pool.start(tg, wait_s=10)
            evs = await pool.query([Filter(kinds=[kinds.NUTZAP])], timeout=60)
            tg.cancel_scope.cancel()
        return evs

    events: Counter[str] = Counter()
    proof_sets: dict[str, set[frozenset[str]]] = {}
    for ev in anyio.run(go):
        job = next(
            (to_job.get(t[1], t[1]) for t in ev.tags if len(t) >= 4 and t[0] == "e" and t[3] == "job"), None
        )
        if job is None:
            continue
        events[job] += 1
        secrets = frozenset(
            json.loads(t[1]).get("secret", t[1]) for t in ev.tags if len(t) > 1 and t[0] == "proof"
        )
        proof_sets.setdefault(job, set()).add(secrets)
    return events, Counter({j: len(v) for j, v in proof_sets.items()})


def db(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def log(msg: str, t0: float) -> None:
    print(f"[soak {time.monotonic() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def soak(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="pylon-soak-"))
    price = args.price_msats if args.mint else 0
    m = LocalMarket(
        home=home,
        nodes=args.nodes,
        memory_relay=False,
        heartbeat_s=args.heartbeat,
        with_mint=args.mint,
        fork_nodes=False,  # peak memory per node as a provider runs it, one process of its own
        node_args=["--concurrency", str(args.concurrency), *(["--price", str(price)] if price else [])],
        buyer_args=[
            "--pickup-timeout",
            str(args.pickup_timeout),
            "--result-timeout",
            str(args.result_timeout),
            *(["--bid", str(price)] if price else []),
        ],
    )
    t0 = time.monotonic()
    sampler = MemorySampler(m)
    chaos: list[str] = []
    victims = m.node_names()[: max(0, round(args.nodes * args.kill_frac))]
    halves = [victims[: len(victims) // 2], victims[len(victims) // 2 :]]
    try:
        m.start(timeout=max(120.0, args.nodes * 6.0))
        start_s = time.monotonic() - t0
        log(f"market up: {args.nodes} nodes in {start_s:.1f}s", t0)
        if price:
            m.call("buyer", rpc.WalletFundReq(amount_sats=args.jobs * price // 1000 + 1000), timeout=120)
        sampler.start()
        sock = m.socket_of("buyer")
        wave = args.jobs // 10
        ids: list[str] = []
        refused = 0
        run_t0 = time.time()
        for w in range(10):
            n = wave if w < 9 else args.jobs - 9 * wave
            got, ref = anyio.run(submit_wave, sock, w * wave, n)
            ids += got
            refused += ref
            wait_outstanding_below(m, max(1, wave // 2), 60)
            if w == 1 or w == 5:
                for name in halves[0 if w == 1 else 1]:
                    m.kill(f"node-{name}", signal.SIGKILL)
                chaos.append(f"after wave {w + 1}: killed {len(halves[0 if w == 1 else 1])} nodes (-9)")
            elif w == 3 or w == 7:
                for name in halves[0 if w == 3 else 1]:
                    m.start_node(name)
                chaos.append(f"after wave {w + 1}: restarted {len(halves[0 if w == 3 else 1])} nodes")
            elif w == 4:
                m.kill("relay", signal.SIGKILL)
                m.start_relay()
                chaos.append(f"after wave {w + 1}: relay killed (-9) and restarted")
            if chaos and chaos[-1].startswith(f"after wave {w + 1}:"):
                log(chaos[-1], t0)
            log(f"wave {w + 1}: {len(got)} submitted, {ref} refused", t0)
        states = wait_terminal(m, set(ids), args.finish_timeout)
        wall = time.time() - run_t0
        log(f"all terminal after {wall:.1f}s", t0)
        paid_wait = 0.0
        if price:
            t = time.monotonic()
            if hasattr(m, "wait_paid"):
                m.wait_paid(120)
            paid_wait = time.monotonic() - t
        tdb = home / "buyer" / "telemetry.db"
        rows = db(tdb, "SELECT job_id, state, end_to_end, attempts, error FROM jobs")
        attempts = db(tdb, "SELECT request_id, job_id, node, outcome, error FROM attempts")
        results = Counter(r[0] for r in db(tdb, "SELECT job_id FROM results"))
        to_job = {r[0]: r[1] for r in attempts}
        nutzaps, proof_sets = nutzaps_per_job(m, to_job) if price else (Counter(), Counter())
        pay_rows = db(tdb, "SELECT job_id FROM payments") if price else []
        from pylon.keys import load_or_create_keys

        killed_pks = {load_or_create_keys(home / "nodes" / n / "nostr.key").pubkey for n in victims}
    finally:
        sampler.stop()
        m.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)

    mine = set(ids)
    completed = [r for r in rows if r[0] in mine and r[1] == "completed"]
    e2e = [r[2] for r in completed if r[2] is not None]
    stuck = [j for j in ids if states.get(j, {}).get("state") not in TERMINAL]
    failed = Counter(r[4] for r in rows if r[0] in mine and r[1] != "completed")
    return {
        "nodes": args.nodes,
        "jobs": args.jobs,
        "killed_nodes": len(victims),
        "relay_restarts": 1,
        "heartbeat_s": args.heartbeat,
        "paid": bool(price),
        "startup_s": round(start_s, 1),
        "wall_s": round(wall, 1),
        "jobs_per_s": round(len(completed) / max(wall, 1e-9), 2),
        "completed": len(completed),
        "success_rate": round(len(completed) / args.jobs, 4),
        "failed": dict(failed),
        "lost": len(stuck) + refused,
        "lost_detail": {"never_finished": len(stuck), "refused_at_submit": refused},
        "double_results": sum(1 for n in results.values() if n > 1),
        "double_payments": sum(1 for n in proof_sets.values() if n > 1)
        + (len(pay_rows) - len(set(pay_rows))),
        "nutzaps_resent": sum(1 for n in nutzaps.values() if n > 1),
        "paid_jobs": len(set(nutzaps)) if price else None,
        "payment_wait_s": round(paid_wait, 1),
        "p50_e2e_s": pct(e2e, 0.5),
        "p95_e2e_s": pct(e2e, 0.95),
        "reissued_jobs": sum(1 for r in rows if r[0] in mine and (r[3] or 0) > 1),
        "failed_attempts": dict(Counter(e for _, _, _, o, e in attempts if o == "failed")),
        # Re-issues for attempts really lost (on a node that was killed) vs the rest (on nodes
        # never killed: the relay restart, a late acknowledgement, a straggler's backup twin).
        "failed_attempts_on_killed_nodes": sum(
            1 for _, _, n, o, _ in attempts if o == "failed" and n in killed_pks
        ),
        "failed_attempts_on_live_nodes": dict(
            Counter(e for _, _, n, o, e in attempts if o == "failed" and n not in killed_pks)
        ),
        "peak_rss": sampler.summary(),
        "chaos": chaos,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--kill-frac", type=float, default=0.2)
    ap.add_argument("--heartbeat", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=1, help="jobs at a time per node")
    ap.add_argument("--pickup-timeout", type=float, default=8.0)
    ap.add_argument("--result-timeout", type=float, default=20.0)
    ap.add_argument("--price-msats", type=int, default=1000)
    ap.add_argument(
        "--mint", action=argparse.BooleanOptionalAction, default=True, help="pay each job in ecash"
    )
    ap.add_argument("--finish-timeout", type=float, default=600.0)
    ap.add_argument("--keep", action="store_true", help="keep the soak's PYLON_HOME (logs, databases)")
    args = ap.parse_args()
    res = soak(args)
    print(json.dumps(res), flush=True)
    r = res["peak_rss"]
    print(
        f"\n{res['nodes']} nodes, {res['jobs']} jobs, {res['killed_nodes']} nodes killed -9 and restarted, "
        f"{res['relay_restarts']} relay restart ({'paid' if res['paid'] else 'unpaid'})"
    )
    print(
        f"success rate     {res['success_rate'] * 100:.1f}%  "
        f"({res['completed']}/{res['jobs']}; failed {res['failed']})"
    )
    print(f"lost jobs        {res['lost']}  (target 0)")
    print(
        f"double payments  {res['double_payments']}  (target 0); double results {res['double_results']}; "
        f"{res['nutzaps_resent']} jobs' nutzaps re-sent with the same proofs"
    )
    print(
        f"latency          p50 {res['p50_e2e_s']} s, p95 {res['p95_e2e_s']} s; {res['jobs_per_s']} jobs/s "
        f"over {res['wall_s']} s; {res['reissued_jobs']} jobs re-issued {res['failed_attempts']}"
    )
    print(
        f"peak memory      node max {r['node_max_mb']} MB (median {r['node_median_mb']}), "
        f"buyer {r['buyer_mb']} MB, "
        f"relay {r['relay_mb']} MB, mint {r['mint_mb']} MB; total {r['total_mb']} MB"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYLON_LOG_LEVEL", "warning")
    main()
