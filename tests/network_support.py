"""Remote nodes behind tests/fault_proxy.py, some with skewed clocks (libfaketime).

Shared by tests/test_network_*.py and bench/wan.py: a market whose buyer, relay and mint run
here as usual and whose nodes are "remote": own PYLON_HOME, key and wallet, plain subprocesses
that reach the relay and the mint only through a fault proxy each.
"""

from __future__ import annotations

import glob
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fault_proxy import FaultProxy, Faults

from pylon.localmarket.launcher import LocalMarket

_LIB_GLOBS = (
    "/usr/lib/*/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
)


def libfaketime() -> str | None:
    """Path of libfaketime (Debian package `faketime`, installed by .ci/run), or None."""
    for pattern in _LIB_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def faketime_env(offset_s: int) -> dict[str, str]:
    """Environment that makes a process's wall clock `offset_s` seconds off (monotonic kept)."""
    lib = libfaketime()
    if lib is None or shutil.which("faketime") is None:
        raise RuntimeError("libfaketime is not installed (apt-get install faketime)")
    return {
        "LD_PRELOAD": lib,
        "FAKETIME": f"{offset_s:+d}",
        # Sleeps, timeouts and anyio's clock stay real: only the wall clock is off, as on a
        # machine whose clock is wrong.
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_RESET": "1",
    }


def telemetry(home: Path, run_id: str) -> list[dict[str, Any]]:
    """The buyer's telemetry rows of a run (every JobTelemetry field), read-only."""
    con = sqlite3.connect(f"file:{home / 'buyer' / 'telemetry.db'}?mode=ro", uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM jobs WHERE run_id = ?", (run_id,))]
    finally:
        con.close()


@dataclass
class RemoteSwarm:
    market: LocalMarket
    relay_proxy: FaultProxy
    mint_proxy: FaultProxy | None
    names: list[str] = field(default_factory=list)

    @property
    def relay_url(self) -> str:
        return f"ws://127.0.0.1:{self.relay_proxy.port}"

    @property
    def mint_url(self) -> str | None:
        return f"http://127.0.0.1:{self.mint_proxy.port}" if self.mint_proxy else None

    def start_node(self, name: str, clock_offset_s: int = 0) -> None:
        env = faketime_env(clock_offset_s) if clock_offset_s else {}
        self.market.start_remote_node(name, self.relay_url, self.mint_url, env)
        self.names.append(name)

    def home_of(self, name: str) -> Path:
        return self.market.remote_homes[name]

    def wire_bytes(self) -> int:
        """Bytes through the proxies so far, both ways."""
        return sum(self.wire_split())

    def wire_split(self) -> tuple[int, int]:
        """(from the nodes, to the nodes) through the proxies so far."""
        up = down = 0
        for p in (self.relay_proxy, self.mint_proxy):
            if p is not None:
                st = p.stats()
                up, down = up + st["bytes_up"], down + st["bytes_down"]
        return up, down


@contextmanager
def remote_swarm(
    market: LocalMarket, faults: Faults, mint_faults: Faults | None = None
) -> Iterator[RemoteSwarm]:
    """Start `market` (relay, mint, buyer; its own `nodes` as usual) behind a proxy in front of
    its relay and one in front of its mint; remote nodes are added with RemoteSwarm.start_node.

    Nodes reach both through the proxies. The buyer talks to its relay directly but to the mint
    through the mint proxy: a node's nutzap info names the mint by the URL the node uses, and a
    buyer pays only at a mint of that name (`mint_faults`, default `faults`, applies to both).
    """
    relay_proxy = FaultProxy.start("127.0.0.1", market.relay_port, faults, max_runtime_s=3600)
    mint_proxy = None
    if market.with_mint:
        mint_proxy = FaultProxy.start(
            "127.0.0.1", market.mint_port, mint_faults or faults, max_runtime_s=3600
        )
        market.buyer_args = [*market.buyer_args, "--mint", f"http://127.0.0.1:{mint_proxy.port}"]
    try:
        market.start(timeout=90)
        yield RemoteSwarm(market, relay_proxy, mint_proxy)
    finally:
        # The nodes drain through the proxies, so those go last.
        market.stop()
        relay_proxy.stop()
        if mint_proxy is not None:
            mint_proxy.stop()
