"""What this PYLON_HOME runs, for `pylon doctor` and for `pylon up`'s own restarts.

`pylon up` writes `run/stack.json` (relay, mint, nodes, logs) when its stack is up and removes
it when it stops. `discover` reads that file and asks each daemon socket there what it is
(a node's executor and models, the buyer's mint), so the doctor checks what actually runs
here instead of every default: no Ollama check for a stack of deterministic nodes, and the
stack's own mint instead of "mint not configured".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pylon.rpc.client import DaemonNotRunning, RpcError, call_sync
from pylon.schemas import rpc

STATE_NAME = "stack.json"
MAX_STATE_BYTES = 64 * 1024


def state_path(home: Path) -> Path:
    return home / "run" / STATE_NAME


def write_state(home: Path, info: dict[str, Any]) -> None:
    p = state_path(home)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh)
    os.replace(tmp, p)


def clear_state(home: Path) -> None:
    try:
        state_path(home).unlink()
    except FileNotFoundError:
        pass


def read_state(home: Path) -> dict[str, Any] | None:
    p = state_path(home)
    try:
        if p.stat().st_size > MAX_STATE_BYTES:
            return None
        data = json.loads(p.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class Running:
    relays: list[str] = field(default_factory=list)
    mint: str | None = None
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> status
    buyer: bool = False

    def uses_ollama(self) -> bool:
        return any(n.get("executor") == "ollama" for n in self.nodes.values())

    def models(self) -> list[str]:
        return sorted({m for n in self.nodes.values() for m in n.get("models", [])})


def discover(home: Path, timeout_s: float = 2.0) -> Running:
    """Ask what runs under home (never starts or creates anything)."""
    found = Running()
    state = read_state(home) or {}
    if isinstance(state.get("relay"), str):
        found.relays = [state["relay"]]
    if isinstance(state.get("mint"), str):
        found.mint = state["mint"]
    run = home / "run"
    if not run.is_dir():
        return found
    for sock in sorted(run.glob("node-*.sock"))[:200]:
        try:
            st = call_sync(sock, rpc.StatusReq(), timeout=timeout_s)
        except (DaemonNotRunning, RpcError, OSError, TimeoutError):
            continue
        found.nodes[str(st.get("name") or sock.stem.removeprefix("node-"))] = st
    buyer = run / "buyer.sock"
    if buyer.exists():
        try:
            bal = call_sync(buyer, rpc.WalletBalanceReq(), timeout=timeout_s)
            found.buyer = True
            if not found.mint and isinstance(bal.get("mint"), str) and bal["mint"]:
                found.mint = bal["mint"]
        except RpcError:
            found.buyer = True  # a buyer without payments
        except (DaemonNotRunning, OSError, TimeoutError):
            pass
    return found
