"""The root `pylon` command group and the options every command shares."""

from __future__ import annotations

import importlib

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

# Each top-level command and the module that adds it to `cli`. A command's module is imported
# only when that command runs: `pylon relay up` is the relay restarted after a crash, and the
# swarm is out of sight until it listens again, so it must not wait on the imports of the map,
# the TUI's RPC client, payments and the rest (a third of a second, more on a loaded host).
COMMAND_MODULES: dict[str, str] = {
    "ask": "pylon.cli.ask_cmds",
    "buyer": "pylon.cli.buyer_cmds",
    "demo": "pylon.cli.market_cmds",
    "doctor": "pylon.cli.ops_cmds",
    "job": "pylon.cli.job_cmds",
    "map": "pylon.cli.map_cmds",
    "mint": "pylon.cli.pay_cmds",
    "node": "pylon.cli.node_cmds",
    "pay": "pylon.cli.pay_cmds",
    "receipts": "pylon.cli.pay_cmds",
    "refund": "pylon.cli.pay_cmds",
    "relay": "pylon.cli.relay_cmds",
    "report": "pylon.cli.audit_cmds",
    "service": "pylon.cli.ops_cmds",
    "stats": "pylon.cli.job_cmds",
    "trail": "pylon.cli.audit_cmds",
    "up": "pylon.cli.market_cmds",
    "wallet": "pylon.cli.pay_cmds",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use, from COMMAND_MODULES."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(COMMAND_MODULES[cmd_name])
        return super().get_command(ctx, cmd_name)


def load_all_commands() -> None:
    """Import every command's module (for tools that walk the whole tree, and the tests)."""
    for module in dict.fromkeys(COMMAND_MODULES.values()):
        importlib.import_module(module)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pylon")
def cli() -> None:
    """Pylon: a compute marketplace over Nostr."""
    import os

    from pylon.logs import configure_logging

    # Logs go to stderr from the first line any command logs (stdout carries only the answer:
    # --json output must parse); warnings and up unless asked, commands that run a daemon or
    # talk to relays set their own level.
    configure_logging(os.environ.get("PYLON_LOG_LEVEL") or "warning")
