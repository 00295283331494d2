"""CLI → daemon calls with the errors a person can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pylon.cli.output import fail
from pylon.rpc.client import DaemonNotRunning, RpcError, call_sync
from pylon.schemas.rpc import Request


def call(path: Path, req: Request, *, timeout: float | None = 30, on_progress: Any = None) -> Any:
    try:
        return call_sync(path, req, timeout=timeout, on_progress=on_progress)
    except DaemonNotRunning as exc:
        fail(str(exc))
    except RpcError as exc:
        fail(f"{exc.code}: {exc.message}")
    except TimeoutError:
        fail(f"the daemon at {path} did not answer within {timeout}s")
