"""The root `pylon` command group and the options every command shares."""

from __future__ import annotations

import click

from pylon import __version__
from pylon.defaults import DEFAULT_RELAY

json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON document on stdout")
relay_option = click.option(
    "--relay",
    "relays",
    multiple=True,
    help=f"relay URL (repeatable); default $PYLON_RELAYS or {DEFAULT_RELAY}",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pylon")
def cli() -> None:
    """Pylon: a compute marketplace over Nostr."""
    import os

    from pylon.logs import configure_logging

    # Logs go to stderr from the first line any command logs (stdout carries only the answer:
    # --json output must parse); warnings and up unless asked, commands that run a daemon or
    # talk to relays set their own level.
    configure_logging(os.environ.get("PYLON_LOG_LEVEL") or "warning")
