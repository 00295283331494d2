"""The buyer: `BuyerDaemon` (lifecycle, queries, RPC routes) around a `Scheduler` (the job state
machine), a `BuyerStore` (every SQL statement) and a `NodeRegistry` (the swarm as heard);
the map coordinator, the narrator and the payer attach to it (`attach_*`).

The names below load on first use, so `pylon.daemon.buyer.store` (which `pylon stats --replay`
reads with) does not pull in the daemon.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BuyerDaemon": "daemon",
    "run_buyer": "daemon",
    "ActiveJob": "scheduler",
    "Attempt": "scheduler",
    "RunTracker": "scheduler",
    "Scheduler": "scheduler",
    "SubmitError": "scheduler",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
