"""How the TUI holds up under a busy swarm: 50 nodes and 2,000 jobs streaming in.

    .venv/bin/python bench/tui_updates.py [--nodes 50] [--jobs 2000] [--tabs swarm,nodes,runs,jobs]

The data comes from a fake buyer daemon speaking the real protocol: the daemons' own RpcServer
(pylon.daemon.rpc_server: Unix socket, length-prefixed msgpack frames, Subscribe + Push) in a
separate process, answering the calls the TUI makes and pushing what BuyerDaemon._push_loop
pushes at its cadence (every 0.5 s: one "jobs" batch, the "nodes" list, "status", "run").
Each job goes assigned → processing → completed over three ticks; 2,000 jobs arrive at 80 per
tick (one map run), so each tick carries ~240 job updates and the 50-node list.

The app runs unmodified (the real RpcSource, Link, models and screens) in its own process on a
real pseudo-terminal of 160×48, with one tab in view per run. It reports its own CPU time while
the stream lasts, the frames Textual actually wrote to the terminal, the CPU each coalesced
refresh took, the longest event-loop step in CPU time (what a keypress or a frame can wait
behind the app's own work, unaffected by other processes on a shared box), and how late a
60 Hz timer woke (wall clock).

Digging in: TUI_BENCH_DEBUG=1 writes, beside each run's stats, the slowest loop steps and the
time spent in layout, rendering and the model; TUI_BENCH_PROFILE=PREFIX writes a cProfile of
the app per tab (PREFIX-TAB.prof).
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Any

PUSH_INTERVAL_S = 0.5  # the buyer daemon's batching cadence (daemon/buyer/daemon.py PUSH_INTERVAL_S)
PER_TICK = 80
COLS, ROWS = 160, 48
RUN_ID = "ab" * 32


# --- the fake buyer daemon -----------------------------------------------------------------------


def serve(sock: Path, n_nodes: int, n_jobs: int) -> None:
    import anyio
    from pylon.daemon.rpc_server import RpcFailure, RpcServer
    from pylon.schemas import rpc

    from pylon.logs import configure_logging

    configure_logging()
    start = time.time()
    nodes = [
        {
            "pubkey": f"{i:02x}" * 32,
            "name": f"node-{i:02d}",
            "state": "online",
            "online": True,
            "queue_depth": 0,
            "running": 0,
            "completed": 0,
            "failed": 0,
            "last_heartbeat": start,
            "executors": ["deterministic"],
            "models": [],
            "price_msats": 0,
            "assigned_now": 0,
            "banned": False,
        }
        for i in range(n_nodes)
    ]
    jobs: dict[str, dict[str, Any]] = {}
    stage: dict[str, int] = {}  # job_id → ticks since it was assigned
    state = {"tick": 0, "completed": 0}

    def job_row(jid: str) -> dict[str, Any]:
        return jobs[jid]

    async def handler(req: rpc.Request, ctx: Any) -> Any:
        match req:
            case rpc.StatusReq():
                return status()
            case rpc.NodesReq():
                return {"nodes": nodes}
            case rpc.RunsReq():
                return {
                    "runs": [
                        {
                            "run_id": RUN_ID,
                            "repo": "/bench/repo",
                            "files": n_jobs,
                            "completed": state["completed"],
                            "failed": 0,
                            "started": start,
                            "finished": None,
                            "out_dir": None,
                        }
                    ]
                }
            case rpc.JobListReq():
                return {"jobs": [job_row(j) for j in jobs]}
            case rpc.StatsReq():
                done = state["completed"]
                return {
                    "online_nodes": n_nodes,
                    "jobs_completed": done,
                    "jobs_failed": 0,
                    "jobs_total": len(jobs),
                    "success_rate": 1.0 if done else 0.0,
                    "jobs_per_min": done / max(1e-9, time.time() - start) * 60,
                    "p50_e2e_s": 1.0,
                    "p95_e2e_s": 1.5,
                    "top_providers": [
                        {"pubkey": n["pubkey"], "completed": n["completed"], "name": n["name"]}
                        for n in sorted(nodes, key=lambda n: -n["completed"])[:5]
                    ],
                }
        raise RpcFailure("unknown_method", type(req).__name__)

    def status() -> dict[str, Any]:
        outstanding = sum(1 for j in jobs.values() if j["state"] != "completed")
        return {
            "name": "bench-buyer",
            "pubkey": "bb" * 32,
            "relays": [],
            "online_nodes": n_nodes,
            "outstanding": outstanding,
            "completed": state["completed"],
            "failed": 0,
        }

    server = RpcServer(sock, daemon="buyer", name="bench-buyer", pubkey="bb" * 32, handler=handler)

    async def pump() -> None:
        while not server.has_subscribers():
            await anyio.sleep(0.05)
        await anyio.sleep(1.0)  # let the app finish its first load
        quiet_ticks = 0
        while quiet_ticks < 6:
            await anyio.sleep(PUSH_INTERVAL_S)
            state["tick"] += 1
            batch = []
            for jid in list(stage):
                stage[jid] += 1
                node = nodes[int(jid[:4], 16) % n_nodes]
                if stage[jid] == 1:
                    jobs[jid]["state"] = "processing"
                elif stage[jid] == 2:
                    jobs[jid].update(state="completed", end_to_end=1.0, paid=True)
                    node["completed"] += 1
                    node["running"] = max(0, node["running"] - 1)
                    state["completed"] += 1
                    del stage[jid]
                batch.append(dict(jobs[jid], attempts=1))
            for _ in range(PER_TICK):
                if len(jobs) >= n_jobs:
                    break
                i = len(jobs)
                jid = f"{i:04x}" + "0" * 60
                node = nodes[i % n_nodes]
                node["running"] += 1
                jobs[jid] = {
                    "job_id": jid,
                    "run_id": RUN_ID,
                    "path": f"src/pkg{i % 40:02d}/file_{i:04d}.py",
                    "state": "assigned",
                    "provider_pubkey": node["pubkey"],
                    "error": None,
                    "end_to_end": None,
                    "paid": False,
                }
                stage[jid] = 0
                batch.append(dict(jobs[jid], attempts=1))
            now = time.time()
            for n in nodes:  # heartbeats every 10 s: a twentieth of the swarm reports each tick
                if (int(n["name"][-2:]) + state["tick"]) % 20 == 0:
                    n["last_heartbeat"] = now
                    n["queue_depth"] = n["running"] % 3
            if batch:
                server.publish("jobs", batch)
            else:
                quiet_ticks += 1
            server.publish("nodes", nodes)
            server.publish("status", status())
            server.publish(
                "run", {"run_id": RUN_ID, "files": n_jobs, "completed": state["completed"], "failed": 0}
            )
        await anyio.sleep_forever()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve)
            tg.start_soon(pump)

    anyio.run(main)


# --- the app, measured -----------------------------------------------------------------------------


def run_app(sock: Path, tab: str, n_jobs: int, out: Path) -> None:
    import asyncio

    from pylon.tui.app import PylonApp
    from pylon.tui.screens.base import MainScreen
    from pylon.tui.source import RpcSource

    flush_ms: list[float] = []

    def timed(real: Any) -> Any:
        def flush(self: MainScreen) -> None:
            t0 = time.thread_time()  # CPU, not wall: the box may be shared
            real(self)
            flush_ms.append((time.thread_time() - t0) * 1000)

        return flush

    for cls in MainScreen.__subclasses__():  # the buyer and node screens' coalesced refresh
        cls.flush = timed(cls.flush)  # type: ignore[method-assign]

    spans: dict[str, list[float]] = {}
    if os.environ.get("TUI_BENCH_DEBUG"):  # where the long steps come from
        from pylon.tui.model import BuyerModel
        from textual.screen import Screen
        from textual.widgets import RichLog, Sparkline

        def spy(cls: Any, name: str) -> None:
            real = getattr(cls, name)

            def wrapper(*a: Any, **k: Any) -> Any:
                c0 = time.thread_time()
                try:
                    return real(*a, **k)
                finally:
                    spans.setdefault(f"{cls.__name__}.{name}", []).append((time.thread_time() - c0) * 1000)

            setattr(cls, name, wrapper)

        from textual.widget import Widget

        real_render_lines = Widget.render_lines

        def render_lines(self: Widget, crop: Any) -> Any:
            c0 = time.thread_time()
            try:
                return real_render_lines(self, crop)
            finally:
                spans.setdefault(f"render_lines[{type(self).__name__}]", []).append(
                    (time.thread_time() - c0) * 1000
                )

        Widget.render_lines = render_lines  # type: ignore[method-assign]
        for cls, name in (
            (Screen, "_refresh_layout"),
            (Screen, "_compositor_refresh"),
            (BuyerModel, "apply"),
            (BuyerModel, "set_jobs"),
            (RichLog, "write"),
            (Sparkline, "render"),
        ):
            if hasattr(cls, name) and callable(getattr(cls, name)):
                spy(cls, name)
    lags: list[float] = []
    busy: list[float] = []
    steps: list[float] = []  # CPU ms of each event-loop step (one callback or one task step)
    real_run = asyncio.events.Handle._run

    slow: list[tuple[float, str]] = []

    def run_step(handle: asyncio.events.Handle) -> None:
        c0 = time.thread_time()
        real_run(handle)
        took = (time.thread_time() - c0) * 1000
        steps.append(took)
        if took > 1000 / 60 and os.environ.get("TUI_BENCH_DEBUG"):
            slow.append((took, repr(handle)[:300]))

    # The longest stretch the loop spends in one step is what a keypress or a frame can wait behind;
    # measured in the thread's CPU time, so other processes on a shared box do not inflate it.
    asyncio.events.Handle._run = run_step  # type: ignore[method-assign]
    marks: dict[str, float] = {}

    class BenchApp(PylonApp):
        frames = 0
        frame_times: list[float] = []

        def _display(self, screen: Any, renderable: Any) -> None:
            # Textual's own write to the terminal: count the frames that carried an update.
            if renderable is not None:
                self.frames += 1
                self.frame_times.append(time.perf_counter())
            super()._display(screen, renderable)

        def on_mount(self) -> None:
            super().on_mount()
            self.run_worker(probe(), group="bench")
            self.run_worker(watch(), group="bench")

    app = BenchApp(RpcSource(sock, "buyer"))

    async def probe() -> None:
        # Every 1/60 s: how late the loop woke us (wall clock: includes other processes on a shared
        # box) and how much CPU the app's thread burned since (its own work only: a stretch over
        # ~17 ms is a 60 Hz frame the app itself could not have drawn).
        period = 1 / 60
        while True:
            t0, c0 = time.perf_counter(), time.thread_time()
            await asyncio.sleep(period)
            lags.append((time.perf_counter() - t0 - period) * 1000)
            busy.append((time.thread_time() - c0) * 1000)

    async def watch() -> None:
        m = app.buyer_model
        while not app.link.connected:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        app.main_screen.action_tab(tab)  # type: ignore[union-attr]
        while not m.jobs:
            await asyncio.sleep(0.005)
        marks["start"], marks["cpu0"] = time.perf_counter(), time.process_time()
        lags.clear()
        busy.clear()
        steps.clear()
        flush_ms.clear()
        app.frames = 0
        app.frame_times.clear()
        while sum(1 for j in m.jobs.values() if j["state"] == "completed") < n_jobs:
            await asyncio.sleep(0.01)
        # The stream is over when the last completion has been drawn (the next refresh or two).
        await asyncio.sleep(app.flush_s * 2)
        marks["end"], marks["cpu1"] = time.perf_counter(), time.process_time()
        screen = app.main_screen
        shown = {"jobs": "#jobs-table", "nodes": "#nodes-table"}.get(tab)
        rows = screen.query_one(shown).row_count if shown else None  # type: ignore[union-attr]
        leaves = None
        if tab == "runs":
            from pylon.tui.widgets.runs_tree import RunsTree

            tree = screen.query_one(RunsTree)  # type: ignore[union-attr]
            leaves = f"{tree.dir_count}d/{tree.leaf_count}l"  # a 2,000-file run: directories, closed
        wall = marks["end"] - marks["start"]
        cpu = marks["cpu1"] - marks["cpu0"]
        gaps = [b - a for a, b in zip(app.frame_times, app.frame_times[1:], strict=False)]
        out.write_text(
            json.dumps(
                {
                    "tab": tab,
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "cpu_pct": 100 * cpu / wall,
                    "frames": app.frames,
                    "fps": app.frames / wall,
                    "max_frame_gap_ms": 1000 * max(gaps) if gaps else None,
                    "flushes": len(flush_ms),
                    "flush_p50_ms": _pct(flush_ms, 50),
                    "flush_p95_ms": _pct(flush_ms, 95),
                    "flush_max_ms": max(flush_ms) if flush_ms else None,
                    "lag_p50_ms": _pct(lags, 50),
                    "lag_p99_ms": _pct(lags, 99),
                    "lag_max_ms": max(lags) if lags else None,
                    "step_max_ms": max(steps) if steps else None,
                    "step_p999_ms": _pct(steps, 99.9),
                    "steps_over_one_frame": sum(1 for x in steps if x > 1000 / 60),
                    "steps": len(steps),
                    "busy_p99_ms": _pct(busy, 99),
                    "busy_max_ms": max(busy) if busy else None,
                    "ticks_over_one_frame": sum(1 for b in busy if b > 1000 / 60),
                    "ticks": len(busy),
                    "jobs_seen": len(m.jobs),
                    "nodes_seen": len(m.nodes),
                    "rows": rows,
                    "leaves": leaves,
                    "dropped_pushes": app.link.dropped_pushes,
                    "resyncs": app.link.resyncs,
                }
            )
        )
        if slow or spans:
            lines = [f"{t:.1f} {h}" for t, h in sorted(slow)[-10:]]
            lines += [
                f"{k}: n={len(v)} max={max(v):.1f} over16={sum(x > 16.7 for x in v)} sum={sum(v):.0f}"
                for k, v in spans.items()
            ]
            Path(str(out) + ".slow").write_text("\n".join(lines))
        app.exit()

    profile_to = os.environ.get("TUI_BENCH_PROFILE")
    if profile_to:
        import cProfile

        cProfile.runctx("app.run()", globals(), {"app": app}, filename=f"{profile_to}-{tab}.prof")
    else:
        app.run()


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


# --- the conductor -----------------------------------------------------------------------------------


def run_once(tab: str, n_nodes: int, n_jobs: int, tmp: Path) -> dict[str, Any]:
    sock = tmp / "run" / f"bench-{tab}.sock"
    sock.parent.mkdir(mode=0o700, exist_ok=True)
    out = tmp / f"stats-{tab}.json"
    env = dict(
        os.environ,
        PYLON_HOME=str(tmp),
        TERM="xterm-256color",
        COLUMNS=str(COLS),
        LINES=str(ROWS),
        PYLON_LOG_LEVEL="warning",
    )
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(sock), "--nodes", str(n_nodes), "--jobs", str(n_jobs)],
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the fake daemon did not start")
            time.sleep(0.05)
        master, slave = pty.openpty()
        _set_size(slave, ROWS, COLS)
        app = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--app",
                str(sock),
                "--tab",
                tab,
                "--jobs",
                str(n_jobs),
                "--out",
                str(out),
            ],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        written = [0]
        tail = bytearray()  # the last of the screen: the traceback, if the app fails

        def drain() -> None:  # the terminal: read and discard what the app draws
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    return
                if not data:
                    return
                written[0] += len(data)
                tail.extend(data)
                del tail[:-20000]

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            app.wait(timeout=180)
        except subprocess.TimeoutExpired:
            app.kill()
            raise
        finally:
            os.close(master)
        if app.returncode != 0 or not out.exists():
            text = tail.decode(errors="replace")
            raise RuntimeError(
                f"the app failed (exit {app.returncode}); its terminal ended with:\n{text[-4000:]}"
            )
        stats = json.loads(out.read_text())
        stats["terminal_bytes"] = written[0]
        return stats
    finally:
        server.terminate()
        server.wait(timeout=10)


def _set_size(fd: int, rows: int, cols: int) -> None:
    import fcntl

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--tabs", default="swarm,nodes,runs,jobs", help="which tab is in view, one run each")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    p.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--app", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--tab", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.nodes, args.jobs)
        return
    if args.app:
        run_app(args.app, args.tab, args.jobs, args.out)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="pylon-tui-bench-") as tmp:
        os.chmod(tmp, 0o700)
        for tab in args.tabs.split(","):
            results.append(run_once(tab, args.nodes, args.jobs, Path(tmp)))
    if args.json:
        print(
            json.dumps(
                {
                    "nodes": args.nodes,
                    "jobs": args.jobs,
                    "push_interval_s": PUSH_INTERVAL_S,
                    "terminal": f"{COLS}x{ROWS}",
                    "runs": results,
                },
                indent=2,
            )
        )
        return
    print(
        f"pylon-tui under {args.nodes} nodes and {args.jobs} jobs (pushes every {PUSH_INTERVAL_S}s, "
        f"~{3 * PER_TICK} job updates a push), terminal {COLS}x{ROWS}, one run per tab in view"
    )
    cols = [
        ("tab", 6, lambda r: r["tab"]),
        ("stream s", 9, lambda r: f"{r['wall_s']:.1f}"),
        ("app CPU s", 10, lambda r: f"{r['cpu_s']:.2f}"),
        ("CPU %", 6, lambda r: f"{r['cpu_pct']:.0f}"),
        ("frames/s", 9, lambda r: f"{r['fps']:.1f}"),
        (
            "refresh CPU ms p50/p95/max",
            27,
            lambda r: f"{r['flush_p50_ms']:.1f}/{r['flush_p95_ms']:.1f}/{r['flush_max_ms']:.1f}",
        ),
        ("longest step ms", 16, lambda r: f"{r['step_max_ms']:.1f}"),
        ("steps >16.7ms", 14, lambda r: f"{r['steps_over_one_frame']}/{r['steps']}"),
        ("lag ms p99/max", 15, lambda r: f"{r['lag_p99_ms']:.0f}/{r['lag_max_ms']:.0f}"),
        ("jobs", 6, lambda r: str(r["jobs_seen"])),
        ("shown", 9, lambda r: str(r["rows"] if r["rows"] is not None else (r["leaves"] or "-"))),
    ]
    print("".join(name.rjust(width) if k else name.ljust(width) for k, (name, width, _) in enumerate(cols)))
    for r in results:
        print("".join(f(r).rjust(width) if k else f(r).ljust(width) for k, (_, width, f) in enumerate(cols)))
    print(
        "step = one event-loop callback, in the app thread's CPU time: the longest is the most a keypress\n"
        "or a frame waits behind the app's own work (over 16.7 ms drops a 60 Hz frame); lag = how late a\n"
        "60 Hz timer woke, wall clock, so it includes other processes competing for the same cores"
    )


if __name__ == "__main__":
    main()
