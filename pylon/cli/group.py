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
