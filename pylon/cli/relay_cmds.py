"""`pylon relay up`: the embedded Nostr relay in the foreground."""

from __future__ import annotations

import os
import sys

import anyio
import click

from pylon.cli.daemon_run import root_cause
from pylon.cli.group import cli, json_option
from pylon.cli.output import emit_json, fail
from pylon.defaults import RELAY_HOST, RELAY_PORT
from pylon.home import relay_dir
from pylon.logs import configure_logging


@cli.group()
def relay() -> None:
    """The embedded Nostr relay."""


@relay.command("up")
@click.option("--port", type=int, default=RELAY_PORT, show_default=True)
@click.option("--host", default=RELAY_HOST, show_default=True)
@click.option("--memory", is_flag=True, help="keep events in memory only (no LMDB)")
@click.option(
    "--allow",
    "allow",
    multiple=True,
    help="accept events only from these pubkeys (hex or npub; repeatable); reads stay open",
)
@json_option
def relay_up(port: int, host: str, memory: bool, allow: tuple[str, ...], as_json: bool) -> None:
    """Run the embedded relay (LMDB under PYLON_HOME/relay) until SIGTERM."""
    from pylon.relay.embedded import parse_pubkeys, run_relay_forever

    configure_logging()
    try:
        allowed = parse_pubkeys(allow)
    except ValueError as exc:
        fail(f"--allow: {exc}")
    data_dir = None if memory else relay_dir() / "lmdb"

    async def main() -> None:
        import signal

        async with anyio.create_task_group() as tg:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                tg.start_soon(
                    lambda: run_relay_forever(port=port, host=host, data_dir=data_dir, allow=allowed or None)
                )
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    return

    try:
        anyio.run(main)
    except Exception as exc:  # nostr-sdk reports a taken port as its own error, inside a group
        fail(f"cannot start the relay on {host}:{port}: {root_cause(exc)}")
    if as_json:
        emit_json({"stopped": True, "port": port})
    # The relay has stopped and LMDB has committed every write. Tearing the interpreter down
    # while nostr-sdk's runtime threads still hold Python callbacks can segfault, so leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
