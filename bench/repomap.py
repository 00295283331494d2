"""Benchmark of the repo-map workload (issue 3's figures).

    .venv/bin/python bench/repomap.py [--files 120] [--nodes 20] [--repeat 3]
                                      [--sim-files 200] [--concurrency 1,2,4] [--delay 1]
                                      [--only swarm,local,demo,sim] [--keep]

Figures, each printed as one JSON line, then a table:

1. `swarm`: a ~120-file repository (the test corpus's real code in seven languages plus
   Pylon's own source, committed to a fresh git repo) mapped by 20 deterministic nodes, once
   the stack is up: `pylon map --json`'s wall_s (best and median of --repeat runs; target
   ≤ 10 s), and the CLI's wall around it.
2. `local`: the same repository mapped in this one process without the swarm
   (`pylon.repomap.local.map_locally` with the deterministic extractor), and the ratio.
3. `demo`: the whole `pylon demo --nodes 20 --repo REPO --json` (relay, mint, buyer, 20
   nodes up, map, scoreboard, tear down) as a user runs it; target ≤ 45 s.
4. `sim`: parallel efficiency with a simulated model latency: 200 files, 20 nodes running
   `--executor ollama --concurrency C` (C = 1, 2, 4 by default) against ONE fake Ollama process
   (tests/ollama_fake.py) that answers every chat after --delay seconds, with no limit on
   parallel chats.
   The fan-out's ideal = files × delay / (nodes × C). `--mixed` adds a run with half the nodes
   on a second fake 3× slower (one slot each); its ideal comes from the total capacity:
   files / Σ(slots_i / delay_i).
   With a model node in the swarm the map also runs the LLM reduce step: one more chat, which
   cannot start before the last file is mapped. So the whole map's ideal is the fan-out's
   ideal + delay (the reduce goes to the node that finishes it soonest, a fast one), and
   the whole map's efficiency = that ideal / `pylon map`'s wall_s (snapshot to artifacts),
   judged against issue 11's targets: ≥ 0.9 with one slot, ≥ 0.8 with two (and more), ≥ 0.85
   with mixed speeds. Beside it: the fan-out's alone (its ideal / first request → last file
   result) and the plain ratio of the fan-out's ideal to the map's wall.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pylon.schemas import rpc  # noqa: E402

from pylon.executors.deterministic import extract_file  # noqa: E402
from pylon.executors.languages import detect_language  # noqa: E402
from pylon.localmarket.launcher import LocalMarket, pylon_argv  # noqa: E402
from pylon.logs import configure_logging  # noqa: E402
from pylon.repomap.local import map_locally  # noqa: E402
from pylon.repomap.snapshot import take_snapshot  # noqa: E402
from pylon.rpc.client import RpcClient  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "corpus"
PROJECT_DIRS = ("pylon", "daemon", "schemas", "tui", "tests", "bench")
FAKE_OLLAMA = ROOT / "tests" / "ollama_fake.py"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def emit(doc: dict[str, Any]) -> None:
    print(json.dumps(doc), flush=True)


# --- the repository ------------------------------------------------------------------------


def _code_files() -> list[tuple[Path, str]]:
    """(source, repo path) of real, non-empty code: the corpus first, then Pylon's tracked source."""
    out: list[tuple[Path, str]] = []
    for p in sorted(CORPUS.rglob("*")):
        if p.is_file() and detect_language(p.name) and p.stat().st_size > 0:
            out.append((p, "corpus/" + p.relative_to(CORPUS).as_posix()))
    listed = subprocess.run(
        ["git", "ls-files", "-z", *PROJECT_DIRS], cwd=ROOT, capture_output=True, check=True
    )
    for rel in sorted(r for r in listed.stdout.decode().split("\0") if r):
        p = ROOT / rel
        if "fixtures" in rel or not p.is_file() or p.stat().st_size == 0 or not detect_language(p.name):
            continue
        out.append((p, "pylon/" + rel))
    return out


def build_repo(dest: Path, files: int) -> Path:
    """A committed git repository of exactly `files` mappable files."""
    pool = _code_files()
    if len(pool) < files:
        raise SystemExit(f"only {len(pool)} source files available; ask for fewer")
    for src, rel in pool[:files]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / rel)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench repo"], cwd=dest, check=True)
    snap = take_snapshot(dest)
    if len(snap.files) != files:
        raise SystemExit(f"the bench repo maps {len(snap.files)} files, not {files} (skipped {snap.skipped})")
    return dest


# --- measurements --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def market_cpu(market: LocalMarket, extra: dict[str, int] | None = None) -> dict[str, float | None]:
    pids = {name: p.popen.pid for name, p in market.procs.items() if p.popen is not None} | (extra or {})
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def cpu_used(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float] | None:
    """CPU seconds per kind of process between two samples (a busy machine sways it less than wall time)."""
    if any(v is None for v in (*before.values(), *after.values())):
        return None
    out: dict[str, float] = {}
    for name, b in before.items():
        kind = "nodes" if name.startswith("node-") else name
        out[kind] = out.get(kind, 0.0) + (after[name] or 0.0) - (b or 0.0)
    out = {k: round(v, 2) for k, v in out.items()}
    out["total"] = round(sum(out.values()), 2)
    return out


def cli_map(
    market: LocalMarket, repo: Path, out: Path, privacy: str = "private"
) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    res = market.cli("map", str(repo), "--out", str(out), f"--{privacy}", "--fresh", "--json", timeout=600)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"pylon map failed: {res.stderr.strip()}")
    return json.loads(res.stdout), wall


def swarm(
    repo: Path, work: Path, nodes: int, repeat: int, node_args: list[str], privacy: str = "private"
) -> dict[str, Any]:
    """`privacy`: private (NIP-44 encrypted jobs, the default for a local path), public, or
    both (runs alternate; the figures are the private runs', the public median beside them)."""
    market = LocalMarket(home=work / "home-swarm", nodes=nodes, heartbeat_s=1.0, node_args=node_args)
    t0 = time.perf_counter()
    public_walls: list[float] = []
    try:
        market.start(timeout=180)
        up_s = time.perf_counter() - t0
        before = market_cpu(market)
        runs = []
        for i in range(repeat):
            if privacy == "both":
                public_walls.append(cli_map(market, repo, work / f"out-pub-{i}", "public")[0]["wall_s"])
            runs.append(
                cli_map(market, repo, work / f"out-swarm-{i}", "public" if privacy == "public" else "private")
            )
        cpu = cpu_used(before, market_cpu(market))
    finally:
        market.stop()
    walls = [s["wall_s"] for s, _ in runs]
    last = runs[-1][0]
    return {
        "figure": "swarm",
        "files": last["files"],
        "nodes": nodes,
        "completed": last["completed"],
        "failed": last["failed"],
        "providers": last["providers"],
        "up_s": round(up_s, 2),
        "map_wall_s_best": min(walls),
        "map_wall_s_median": statistics.median(walls),
        "map_wall_s_runs": walls,
        "cli_wall_s_median": round(statistics.median(w for _, w in runs), 3),
        "cpu_s_per_run": {k: round(v / repeat, 2) for k, v in cpu.items()} if cpu else None,
        "target_s": 10.0,
        "privacy": privacy,
        **(
            {
                "public_map_wall_s_median": statistics.median(public_walls),
                "private_over_public": round(statistics.median(walls) / statistics.median(public_walls), 3),
            }
            if public_walls
            else {}
        ),
        "ok": min(walls) <= 10.0 and all(s["failed"] == 0 for s, _ in runs),
    }


def local(repo: Path, work: Path, repeat: int) -> dict[str, Any]:
    walls = []
    summary: dict[str, Any] = {}
    for i in range(repeat):
        t0 = time.perf_counter()
        summary = map_locally(repo, work / f"out-local-{i}", extract_file)
        walls.append(round(time.perf_counter() - t0, 3))
    return {
        "figure": "local",
        "files": summary["files"],
        "completed": summary["completed"],
        "failed": summary["failed"],
        "wall_s_best": min(walls),
        "wall_s_median": statistics.median(walls),
        "wall_s_runs": walls,
    }


def demo(repo: Path, work: Path, nodes: int) -> dict[str, Any]:
    cwd = work / "demo-cwd"
    cwd.mkdir()
    env = {**os.environ, "PYLON_HOME": str(work / "home-demo"), "PYLON_LOG_LEVEL": "warning"}
    t0 = time.perf_counter()
    res = subprocess.run(
        pylon_argv("demo", "--nodes", str(nodes), "--repo", str(repo), "--json"),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"pylon demo failed: {res.stderr.strip()[-2000:]}")
    doc = json.loads(res.stdout)
    run = doc["runs"][-1]
    return {
        "figure": "demo",
        "nodes": nodes,
        "files": run["files"],
        "completed": run["completed"],
        "providers": doc["scoreboard"]["providers"],
        "wall_s": round(wall, 2),
        "demo_total_s": doc["total_s"],
        "up_s": doc["up_s"],
        "map_wall_s": run["wall_s"],
        "target_s": 45.0,
        "ok": wall <= 45.0,
    }


def start_fake_ollama(delay: float, log_dir: Path) -> tuple[subprocess.Popen[str], str]:
    err = open(log_dir / "fake-ollama.log", "w")
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_OLLAMA), "--port", "0", "--delay", str(delay)],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        start_new_session=True,
    )
    err.close()
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"the fake Ollama did not start (printed {url!r})")
    return proc, url


async def run_jobs(sock: Path, run_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Telemetry of the run's jobs, and of the reduce step's job (path overview.md, no run)."""
    client = await RpcClient.connect(sock, client="bench")
    try:
        listing = (await client.call(rpc.JobListReq(limit=100_000), timeout=60))["jobs"]
        mine = [j["job_id"] for j in listing if j["run_id"] == run_id]
        reduce = [j["job_id"] for j in listing if j["path"] == "overview.md" and not j["run_id"]]
        tele = [await client.call(rpc.JobStatusReq(job_id=i), timeout=30) for i in mine]
        red = [await client.call(rpc.JobStatusReq(job_id=i), timeout=30) for i in reduce]
        return tele, red
    finally:
        await client.aclose()


def sim(
    work: Path,
    repo: Path,
    nodes: int,
    concurrency: int,
    delay: float,
    node_args: list[str],
    mixed: bool = False,
) -> dict[str, Any]:
    fake, url = start_fake_ollama(delay, work)
    slow, slow_url = start_fake_ollama(3 * delay, work) if mixed else (None, "")
    slow_nodes = [f"n{i}" for i in range(nodes // 2)] if mixed else []
    tag = f"{concurrency}{'-mixed' if mixed else ''}"
    market = LocalMarket(
        home=work / f"home-sim-{tag}",
        nodes=nodes,
        heartbeat_s=1.0,
        node_args=[
            "--executor",
            "ollama",
            "--ollama-host",
            url,
            "--concurrency",
            str(concurrency),
            *node_args,
        ],
        node_extra={n: ["--ollama-host", slow_url] for n in slow_nodes},
    )
    try:
        market.start(timeout=180)
        before = market_cpu(market, {"fake_ollama": fake.pid})
        summary, _ = cli_map(market, repo, work / f"out-sim-{tag}")
        cpu = cpu_used(before, market_cpu(market, {"fake_ollama": fake.pid}))
        tele, red = anyio.run(run_jobs, market.socket_of("buyer"), summary["run_id"])
    finally:
        market.stop()
        for f in (fake, slow):
            if f is not None:
                f.terminate()
                f.wait(timeout=10)
    # The ideal from the total capacity: files over the swarm's rate (slots / latency, summed).
    rate = sum(concurrency / (3 * delay if f"n{i}" in slow_nodes else delay) for i in range(nodes))
    ideal = summary["files"] / rate
    done = [t for t in tele if t["state"] == "completed"]
    first = min(t["submitted"] for t in tele)
    last = max(t["received"] for t in done)
    fan_out = last - first
    reduce_s = red[-1]["end_to_end"] if red and red[-1].get("end_to_end") is not None else None
    exec_times = [t["exec_time"] for t in done if t.get("exec_time") is not None]
    return {
        "figure": "sim",
        "files": summary["files"],
        "completed": summary["completed"],
        "failed": summary["failed"],
        "providers": summary["providers"],
        "nodes": nodes,
        "concurrency": concurrency,
        "mixed_speeds": f"{len(slow_nodes)} of {nodes} nodes 3x slower" if mixed else None,
        "delay_s": delay,
        "ideal_s": round(ideal, 3),
        "map_wall_s": summary["wall_s"],
        "efficiency": round(ideal / summary["wall_s"], 3),
        # The reduce step is one more model call after the fan-out: the ideal of a map with it.
        "efficiency_with_reduce": round((ideal + delay) / summary["wall_s"], 3),
        "fan_out_s": round(fan_out, 3),
        "fan_out_efficiency": round(ideal / fan_out, 3),
        "reduce_step_s": reduce_s,
        "exec_p50_s": statistics.median(exec_times) if exec_times else None,
        # All the CPU the map took, spread over every core: no wall time can beat this here.
        "cpu_s": cpu,
        "cpu_floor_s": round(cpu["total"] / (os.cpu_count() or 1), 2) if cpu else None,
        "target": target_efficiency(concurrency, mixed),
        "ok": (ideal + delay) / summary["wall_s"] >= target_efficiency(concurrency, mixed),
    }


def target_efficiency(concurrency: int, mixed: bool) -> float:
    """Issue 11's targets for the whole map's efficiency."""
    if mixed:
        return 0.85
    return 0.9 if concurrency == 1 else 0.8


def table(figs: dict[str, dict[str, Any]]) -> None:
    rows: list[tuple[str, str, str, str]] = []
    if s := figs.get("swarm"):
        rows.append(
            (
                f"map {s['files']} files, {s['nodes']} nodes (stack up)",
                f"{s['map_wall_s_best']:.2f} s best, {s['map_wall_s_median']:.2f} s median",
                "≤ 10 s",
                "yes" if s["ok"] else "no",
            )
        )
    if lo := figs.get("local"):
        rows.append(
            (f"map {lo['files']} files in one process", f"{lo['wall_s_median']:.2f} s median", "-", "-")
        )
    if lo and s:
        rows.append(
            (
                "swarm vs one process (local / swarm)",
                f"{lo['wall_s_median'] / s['map_wall_s_median']:.2f}x",
                "-",
                "-",
            )
        )
    if d := figs.get("demo"):
        rows.append(
            (
                f"pylon demo --nodes {d['nodes']} (whole)",
                f"{d['wall_s']:.1f} s (up {d['up_s']:.1f} s)",
                "≤ 45 s",
                "yes" if d["ok"] else "no",
            )
        )
    for m in (f for k, f in figs.items() if k.startswith("sim")):
        rows.append(
            (
                f"whole-map efficiency, {m['files']} files × {m['delay_s']:g} s, "
                f"{m['nodes']}×{m['concurrency']} slots"
                + (" (mixed speeds)" if m.get("mixed_speeds") else ""),
                f"{m['efficiency_with_reduce']:.2f} (map {m['map_wall_s']:.2f} s vs ideal "
                f"{m['ideal_s'] + m['delay_s']:.2f} s)",
                f"≥ {m['target']:g}",
                "yes" if m["ok"] else "no",
            )
        )
        rows.append(
            (
                "  fan-out alone; fan-out ideal / map wall; CPU floor",
                f"{m['fan_out_efficiency']:.2f} ({m['fan_out_s']:.2f} s); {m['efficiency']:.2f}; "
                f"{m['cpu_floor_s']} s",
                "-",
                "-",
            )
        )
    w = max(len(r[0]) for r in rows) if rows else 10
    v = max(len(r[1]) for r in rows) if rows else 10
    print(f"\n{'figure':<{w}}  {'value':<{v}}  {'target':<7}  ok")
    for r in rows:
        print(f"{r[0]:<{w}}  {r[1]:<{v}}  {r[2]:<7}  {r[3]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=120)
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sim-files", type=int, default=200)
    ap.add_argument("--concurrency", default="1,2,4", help="slots per node in the simulated-latency runs")
    ap.add_argument("--delay", type=float, default=1.0, help="simulated model latency per file (s)")
    ap.add_argument("--only", default="swarm,local,demo,sim", help="which figures (comma-separated)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument(
        "--privacy",
        default="private",
        choices=("private", "public", "both"),
        help="swarm runs' --private/--public",
    )
    ap.add_argument(
        "--mixed", action="store_true", help="with sim: also a run with half the nodes 3x slower (1 slot)"
    )
    ap.add_argument("--node-args", default="", help="extra node flags, e.g. --node-args='--no-untargeted'")
    args = ap.parse_args()
    only = {f.strip() for f in args.only.split(",") if f.strip()}
    node_args = shlex.split(args.node_args)

    configure_logging()
    work = Path(tempfile.mkdtemp(prefix="pylon-bench-repomap-"))
    figs: dict[str, dict[str, Any]] = {}
    try:
        repo = build_repo(work / "repo", args.files)
        log(f"repo of {args.files} files at {repo}; {args.nodes} nodes; {os.cpu_count()} CPUs")
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "swarm": lambda: swarm(repo, work, args.nodes, args.repeat, node_args, args.privacy),
            "local": lambda: local(repo, work, args.repeat),
            "demo": lambda: demo(repo, work, args.nodes),
        }
        if "sim" in only:
            sim_repo = build_repo(work / "repo-sim", args.sim_files)
            for c in (int(x) for x in args.concurrency.split(",") if x):
                steps[f"sim-c{c}"] = functools.partial(
                    sim, work, sim_repo, args.nodes, c, args.delay, node_args
                )
            if args.mixed:
                steps["sim-mixed"] = functools.partial(
                    sim, work, sim_repo, args.nodes, 1, args.delay, node_args, mixed=True
                )
        for name, step in steps.items():
            if name.split("-")[0] not in only:
                continue
            # The machine may be shared: say how busy it was when the figure was taken.
            load_before = os.getloadavg()[0]
            figs[name] = step() | {"loadavg_1m_before": round(load_before, 2), "cpus": os.cpu_count()}
            if name == "local" and "swarm" in figs:
                speedup = figs[name]["wall_s_median"] / figs["swarm"]["map_wall_s_median"]
                figs[name]["swarm_speedup"] = round(speedup, 2)
            emit(figs[name])
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    table(figs)


if __name__ == "__main__":
    os.environ.setdefault("PYLON_LOG_LEVEL", "warning")
    main()
