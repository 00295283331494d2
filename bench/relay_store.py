"""The embedded relay's write rate: LMDB (what `pylon up` and `pylon demo` use) against memory.

Why this exists: every step of a job is an event the relay stores before it passes it on, so
the store's write rate bounds the swarm; when it falls behind, every heartbeat arrives late
(docs/design.md section 4). Publishes N signed 400-byte events, C at a time, to a fresh
relay per store and prints events/s and OK latency (p50, p99).

    .venv/bin/python bench/relay_store.py [--events 2000] [--in-flight 1,50]
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

import anyio

from pylon.keys import NostrKeys
from pylon.nostr.event import sign_event
from pylon.nostr.relay_client import RelayPool
from pylon.relay.embedded import EmbeddedRelay


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _measure(store: str, events: int, in_flight: int) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory() as tmp:
        relay = EmbeddedRelay(port=_free_port(), data_dir=Path(tmp) / "lmdb" if store == "lmdb" else None)
        url = await relay.start()
        keys = NostrKeys.generate()
        pool = RelayPool([url], keys=keys)
        evs = [sign_event(keys, kind=1, content="x" * 400 + str(i)) for i in range(events)]
        latencies: list[float] = []
        limit = anyio.Semaphore(in_flight)

        async def one(ev) -> None:
            async with limit:
                t = time.perf_counter()
                await pool.publish_checked(ev, timeout=60)
                latencies.append(time.perf_counter() - t)

        async with anyio.create_task_group() as tg:
            await pool.start(tg)
            t0 = time.perf_counter()
            async with anyio.create_task_group() as pubs:
                for ev in evs:
                    pubs.start_soon(one, ev)
            wall = time.perf_counter() - t0
            tg.cancel_scope.cancel()
        await relay.stop()
    latencies.sort()
    return {
        "store": store,
        "in_flight": in_flight,
        "events": events,
        "events_per_s": round(events / wall),
        "ok_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "ok_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--in-flight", default="1,50", help="comma-separated: events awaiting their OK at once")
    args = ap.parse_args()
    rows = []
    for in_flight in (int(x) for x in args.in_flight.split(",")):
        for store in ("memory", "lmdb"):
            rows.append(anyio.run(_measure, store, args.events, in_flight))
            print(json.dumps(rows[-1]))
    by = {(r["store"], r["in_flight"]): r["events_per_s"] for r in rows}
    for in_flight in sorted({r["in_flight"] for r in rows}):
        ratio = by["memory", in_flight] / by["lmdb", in_flight]
        print(f"in flight {in_flight}: memory / LMDB = {ratio:.1f}x")


if __name__ == "__main__":
    main()
