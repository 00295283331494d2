"""What the daemons' foreground commands share: the --mint check and running until SIGTERM."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import click

from pylon.cli.output import fail


def root_cause(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__


def mint_url(value: str | None) -> str | None:
    """--mint: checked here, so a typo is a one-line error and not a daemon that dies starting."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"want a mint URL http(s)://host[:port], not {value!r}", param_hint="--mint")
    return value.strip().rstrip("/")


def run_daemon(main: Callable[[], Awaitable[Any]], what: str) -> None:
    from pylon.daemon.rpc_server import ServerStartError

    try:
        anyio.run(main)
    except ServerStartError as exc:
        fail(f"{what}: {exc}")
    except KeyboardInterrupt:
        pass
