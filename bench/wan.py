"""The swarm over a wide-area network: 20 remote nodes behind tests/fault_proxy.py.

    .venv/bin/python bench/wan.py [--files 120] [--nodes 20] [--latency-ms 0,50,150]
                                  [--jitter-ms 0] [--repeat 1] [--warmup 1] [--paid]
                                  [--node-args "--no-untargeted"] [--keep]

Runs the same `pylon map` of a `--files`-file repository (bench/repomap.py's) twice over:
1. `loopback`: an ordinary local market (`LocalMarket`, nodes forked from the spawner, every
   process on the loopback relay and mint directly);
2. `wan`: remote nodes (own PYLON_HOME, key and wallet; plain subprocesses) that reach the relay
   (and, with --paid, the mint) only through a fault proxy adding each --latency-ms one way
   (so a round trip costs twice it). The nodes stay up; the proxy's latency changes between runs.

Per run: wall time (`pylon map --json`'s wall_s), end-to-end p50/p95 of the jobs, how many
pickups were re-issued (and why, from the buyer's attempts table), and bytes on the wire per
job (what went through the proxies, both ways, divided by the files). Then a table with the
ratio to loopback and the issue's target at 50 ms (wall <= 1.5 x loopback + 2 s, no job
re-issued that was not really lost). Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from fault_proxy import Faults  # noqa: E402
from faults_support import attempts, wait_for  # noqa: E402
from network_support import remote_swarm  # noqa: E402
from pylon.schemas import rpc  # noqa: E402
from repomap import build_repo  # noqa: E402

from pylon.localmarket.launcher import LocalMarket  # noqa: E402
from pylon.stats.compute import percentile  # noqa: E402

PRICE_MSATS = 1000


def log(msg: str) -> None:
    print(f"[wan] {msg}", file=sys.stderr, flush=True)


def _market(home: Path, nodes: int, paid: bool, extra_node_args: list[str]) -> LocalMarket:
    node_args = (["--price", str(PRICE_MSATS)] if paid else []) + extra_node_args
    buyer_args = ["--bid", str(PRICE_MSATS)] if paid else []
    return LocalMarket(home=home, nodes=nodes, with_mint=paid, node_args=node_args, buyer_args=buyer_args)


def _one_run(m: LocalMarket, repo: Path, out: Path, wire: Any) -> dict[str, Any]:
    before_up, before_down = wire()
    res = m.cli("map", str(repo), "--out", str(out), "--fresh", "--json", timeout=900)
    if res.returncode != 0:
        raise RuntimeError(f"pylon map failed: {res.stderr.strip()[-2000:]}")
    summary = json.loads(res.stdout)
    jobs = m.call("buyer", rpc.JobListReq(run_id=summary["run_id"], limit=100_000))["jobs"]
    e2e = sorted(j["end_to_end"] for j in jobs if j.get("end_to_end") is not None)
    run_ids = {j["job_id"] for j in jobs}
    atts = [a for a in attempts(m) if a[1] in run_ids]
    reissued = [a for a in atts if a[3] != "completed"]
    files = summary["files"] or 1
    up, down = wire()
    return {
        "files": summary["files"],
        "completed": summary["completed"],
        "failed": summary["failed"],
        "wall_s": summary["wall_s"],
        "e2e_p50_s": percentile(e2e, 0.5),
        "e2e_p95_s": percentile(e2e, 0.95),
        "attempts": len(atts),
        "reissued": len(reissued),
        "reissue_reasons": dict(Counter(f"{a[3]}:{a[4]}" for a in reissued)),
        "bytes_per_job": round((up + down - before_up - before_down) / files),
        "bytes_to_nodes_per_job": round((down - before_down) / files),
    }


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    out = dict(min(runs, key=lambda r: r["wall_s"]))
    out["wall_s_runs"] = walls
    out["wall_s_median"] = statistics.median(walls)
    return out


def loopback(
    repo: Path, work: Path, nodes: int, repeat: int, paid: bool, node_args: list[str], warmup: int
) -> dict[str, Any]:
    m = _market(work / "home-loopback", nodes, paid, node_args)
    try:
        m.start(timeout=240)
        if paid:
            m.fund("buyer", 100_000)
        for i in range(warmup):
            _one_run(m, repo, work / f"out-lo-warm-{i}", lambda: (0, 0))
        runs = [_one_run(m, repo, work / f"out-lo-{i}", lambda: (0, 0)) for i in range(repeat)]
    finally:
        m.stop()
    fig = _best(runs) | {"figure": "loopback", "nodes": nodes}
    fig["bytes_per_job"] = fig["bytes_to_nodes_per_job"] = None  # no proxy to count on
    return fig


def wan(
    repo: Path,
    work: Path,
    nodes: int,
    latencies_ms: list[float],
    jitter_ms: float,
    repeat: int,
    paid: bool,
    node_args: list[str],
    warmup: int,
) -> list[dict[str, Any]]:
    figs = []
    faults = Faults(latency_s=latencies_ms[0] / 1000, jitter_s=jitter_ms / 1000, seed=1)
    with remote_swarm(_market(work / "home-wan", 0, paid, node_args), faults) as swarm:
        m = swarm.market
        if paid:
            m.fund("buyer", 100_000)
        t0 = time.monotonic()
        for i in range(nodes):
            swarm.start_node(f"w{i}")
        wait_for(
            f"{nodes} remote nodes online",
            lambda: m.call("buyer", rpc.StatusReq())["online_nodes"] >= nodes,
            600,
            0.5,
        )
        log(f"{nodes} remote nodes up in {time.monotonic() - t0:.1f}s")
        for i in range(warmup):
            _one_run(m, repo, work / f"out-wan-warm-{i}", swarm.wire_split)
        for lat in latencies_ms:
            for p in (swarm.relay_proxy, swarm.mint_proxy):
                if p is not None:
                    p.set_faults(Faults(latency_s=lat / 1000, jitter_s=jitter_ms / 1000, seed=1))
            runs = [_one_run(m, repo, work / f"out-wan-{lat:g}-{i}", swarm.wire_split) for i in range(repeat)]
            fig = _best(runs) | {"figure": "wan", "one_way_ms": lat, "jitter_ms": jitter_ms, "nodes": nodes}
            log(json.dumps(fig))
            figs.append(fig)
    return figs


def table(lo: dict[str, Any], figs: list[dict[str, Any]]) -> None:
    print(
        f"\n{'run':<16}{'wall s':>8}{'x loop':>8}{'p50 s':>8}{'p95 s':>8}"
        f"{'reissued':>10}{'B/job':>9}{'to nodes':>9}  target"
    )
    rows = [("loopback", lo, None)] + [(f"wan {f['one_way_ms']:g} ms", f, f["one_way_ms"]) for f in figs]
    for name, f, lat in rows:
        ratio = f["wall_s"] / lo["wall_s"] if lo["wall_s"] else float("nan")
        target = ""
        if lat == 50:
            limit = 1.5 * lo["wall_s"] + 2
            target = f"wall <= {limit:.1f} s: {'met' if f['wall_s'] <= limit else 'MISSED'}"
            target += f"; re-issued {f['reissued']}"
        bpj = f["bytes_per_job"] if f["bytes_per_job"] is not None else "-"
        tonodes = f["bytes_to_nodes_per_job"] if f["bytes_to_nodes_per_job"] is not None else "-"
        print(
            f"{name:<16}{f['wall_s']:>8.2f}{ratio:>8.2f}"
            f"{f['e2e_p50_s'] or 0:>8.2f}{f['e2e_p95_s'] or 0:>8.2f}"
            f"{f['reissued']:>10}{bpj:>9}{tonodes:>9}  {target}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=120)
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--latency-ms", default="0,50,150")
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--paid", action="store_true", help="with a mint: nodes charge, the buyer pays")
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded runs first, on each market")
    ap.add_argument("--node-args", default="", help="extra `pylon node up` flags, e.g. --no-untargeted")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pylon-wan-"))
    try:
        repo = build_repo(work / "repo", a.files)
        node_args = shlex.split(a.node_args)
        lo = loopback(repo, work, a.nodes, a.repeat, a.paid, node_args, a.warmup)
        print(json.dumps(lo), flush=True)
        lats = [float(x) for x in a.latency_ms.split(",")]
        figs = wan(repo, work, a.nodes, lats, a.jitter_ms, a.repeat, a.paid, node_args, a.warmup)
        for f in figs:
            print(json.dumps(f), flush=True)
        table(lo, figs)
    finally:
        if a.keep:
            log(f"kept {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
