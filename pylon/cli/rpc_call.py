"""CLI → daemon calls with the errors a person can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pylon.cli.output import fail
from pylon.rpc.client import CLOSED, DaemonNotRunning, RpcError, call_sync
from pylon.schemas.rpc import Request


def human_error(exc: RpcError) -> str:
    """The daemon's words, its code after them for scripts (a code is no sentence's first word)."""
    return f"{exc.message} ({exc.code})" if exc.message else exc.code


def call(
    path: Path,
    req: Request,
    *,
    timeout: float | None = 30,
    on_progress: Any = None,
    reraise_closed: bool = False,
) -> Any:
    """`reraise_closed`: a connection lost mid-call is the caller's to handle (RpcError CLOSED)."""
    try:
        return call_sync(path, req, timeout=timeout, on_progress=on_progress)
    except DaemonNotRunning as exc:
        fail(str(exc))
    except RpcError as exc:
        if reraise_closed and exc.code == CLOSED:
            raise
        fail(human_error(exc))
    except TimeoutError:
        fail(f"the daemon at {path} did not answer within {timeout}s")
