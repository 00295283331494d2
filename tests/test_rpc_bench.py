"""Round-trip rate of a `status` call on one connection, daemon in its own process.

    .venv/bin/python tests/test_rpc_bench.py [CALLS]     # prints the figures as one JSON line

As a test it only checks a floor far below any real machine, so a regression by an order of
magnitude (say, a sleep or a per-call reconnect) fails, while a busy CI box does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from pylon.schemas.rpc import StatusReq

from pylon.rpc.client import RpcClient

# The daemon side: a real RpcServer whose status handler returns a realistic NodeStatus.
_DAEMON = """
import sys, anyio
from pathlib import Path
from pylon.daemon.rpc_server import RpcServer
from pylon.logs import configure_logging
from pylon.schemas.rpc import NodeStatus

configure_logging("warning")  # logs to stderr: stdout carries only "ready"

STATUS = NodeStatus(name="bench", pubkey="ab" * 32, state="online", running=1, queued=2,
                    completed=300, failed=1, models=["qwen2.5-coder:1.5b"], failures={"timeout": 1})

async def handler(req, ctx):
    return STATUS

async def main():
    server = RpcServer(Path(sys.argv[1]), daemon="node", name="bench", pubkey="ab" * 32, handler=handler)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the parent closes our stdin
        tg.cancel_scope.cancel()

anyio.run(main)
"""


async def _measure(path: Path, calls: int, concurrency: int) -> float:
    async with await RpcClient.connect(path) as client:
        await client.call(StatusReq())  # warm up

        async def worker(n: int) -> None:
            for _ in range(n):
                await client.call(StatusReq())

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker, calls // concurrency)
        return (calls // concurrency) * concurrency / (time.perf_counter() - start)


def bench(calls: int = 2000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run" / "node-bench.sock"
        daemon = subprocess.Popen(
            [sys.executable, "-c", _DAEMON, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert daemon.stdout is not None and daemon.stdout.readline().strip() == "ready"
            return {
                "calls": calls,
                "sequential_calls_per_s": round(anyio.run(_measure, path, calls, 1)),
                "concurrent16_calls_per_s": round(anyio.run(_measure, path, calls, 16)),
            }
        finally:
            assert daemon.stdin is not None
            daemon.stdin.close()
            daemon.wait(timeout=10)


def test_status_round_trip_rate() -> None:
    figures = bench(calls=1000)
    print(json.dumps(figures))
    assert figures["sequential_calls_per_s"] > 100
    assert figures["concurrent16_calls_per_s"] > 100


if __name__ == "__main__":
    print(json.dumps(bench(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)))
