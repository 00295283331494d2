"""What `pylon up` tells a person: where everything is, a live line while it runs, what stopped.

The live line (nodes online, jobs done, sats paid) is drawn only on a terminal; piped or with
--json, `pylon up` prints its banner (or its JSON document) once and then waits quietly.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from pylon.cli.output import stderr
from pylon.localmarket.launcher import DEMO_FUND_SATS, LocalMarket
from pylon.rpc.client import DaemonNotRunning, RpcError
from pylon.schemas import rpc

# Below this the buyer cannot pay for many jobs: `pylon up` tops it up (and says so).
LOW_BALANCE_SATS = 1_000
LIVE_INTERVAL_S = 1.0
POLL_S = 0.1  # how soon a caught signal is seen


def fund_once(market: LocalMarket) -> tuple[int, int]:
    """(balance, sats added now). A restart finds the wallet funded and leaves it alone."""
    try:
        balance = int(market.call("buyer", rpc.WalletBalanceReq(), timeout=30)["balance_sats"])
    except (RpcError, DaemonNotRunning, OSError, TimeoutError):
        balance = 0
    if balance >= LOW_BALANCE_SATS:
        return balance, 0
    return market.fund("buyer", DEMO_FUND_SATS), DEMO_FUND_SATS


def print_up_banner(market: LocalMarket, info: dict[str, Any], funded: int) -> None:
    names = ", ".join(info["nodes"]) or "none"
    daemons = "relay, mint, buyer" if info["mint"] else "relay, buyer"
    lines = [
        f"[green]up[/]: {daemons} and {len(info['nodes'])} nodes ({names})",
        f"  relay      {info['relay']}",
    ]
    if info["mint"]:
        lines.append(f"  mint       {info['mint']} (testnet, FakeWallet)")
    if info["buyer_balance_sats"] is not None:
        how = (
            f"funded with {funded:,} testnet sats just now"
            if funded
            else "funded before; not topped up (`pylon wallet fund N` adds more)"
        )
        lines.append(f"  wallet     {info['buyer_balance_sats']:,} sats, {how}")
    lines += [
        f"  PYLON_HOME {info['home']}",
        f"  logs       {info['logs']}/",
        "try: pylon map .  |  pylon stats  |  pylon-tui buyer      Ctrl-C stops everything",
    ]
    for line in lines:
        stderr.print(line, highlight=False)


def _live_line(market: LocalMarket, start_balance: int | None) -> str:
    try:
        st = market.call("buyer", rpc.StatusReq(), timeout=5)
        nodes = market.call("buyer", rpc.NodesReq(), timeout=5)["nodes"]
    except (RpcError, DaemonNotRunning, OSError, TimeoutError):
        return "[yellow]buyer not answering[/]"
    online = [n for n in nodes if n.get("online")]
    paused = sum(1 for n in online if n.get("state") != "online")
    part = f"nodes online {len(online)}/{market.nodes}" + (f" ({paused} paused)" if paused else "")
    part += f" · jobs done {st['completed']:,}" + (f", failed {st['failed']:,}" if st["failed"] else "")
    if start_balance is not None:
        try:
            bal = int(market.call("buyer", rpc.WalletBalanceReq(), timeout=5)["balance_sats"])
            part += f" · paid {max(0, start_balance - bal):,} sats"
        except (RpcError, DaemonNotRunning, OSError, TimeoutError):
            pass
    return part


class StopSignal:
    """SIGINT/SIGTERM, caught by Python handlers from the moment it is installed.

    A handler, not a blocked mask plus sigwait: a mask is per thread, and the threads started
    before it (the node spawner's reader) would still take a process-directed Ctrl-C and raise
    KeyboardInterrupt in the middle of the shutdown. Python runs handlers in the main thread
    whichever thread the kernel picked; a second Ctrl-C while stopping is absorbed the same way.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._caught)

    def _caught(self, signum: int, _frame: object) -> None:
        self.signum = signum

    def wait(self, timeout: float) -> bool:
        """True once a signal came; otherwise after about `timeout` seconds, False."""
        deadline = time.monotonic() + timeout
        while self.signum is None and time.monotonic() < deadline:
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        return self.signum is not None


def wait_for_stop(market: LocalMarket, stop: StopSignal, *, live: bool) -> None:
    """Until SIGINT/SIGTERM. On a terminal, a live status line."""
    if not (live and sys.stderr.isatty()):
        while not stop.wait(LIVE_INTERVAL_S):
            pass
        return
    start_balance: int | None = None
    if market.with_mint:
        try:
            start_balance = int(market.call("buyer", rpc.WalletBalanceReq(), timeout=10)["balance_sats"])
        except (RpcError, DaemonNotRunning, OSError, TimeoutError):
            start_balance = None
    with stderr.status(_live_line(market, start_balance), spinner="dots") as status:
        while not stop.wait(LIVE_INTERVAL_S):
            status.update(_live_line(market, start_balance))


def stopped_summary(market: LocalMarket) -> str:
    parts = ["relay"] + (["mint"] if market.with_mint else []) + ["buyer"]
    names = market.node_names()
    listed = ", ".join(names) or "none"
    return f"{', '.join(parts)} and {len(names)} nodes ({listed}); state kept in {market.home}"
