"""`pylon` imports a command's module only when that command runs, so `pylon relay up` (the
relay restarted after a crash, with the swarm out of sight until it listens) starts on the
relay's own imports; and the table it goes by names every command, each in its own module."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import click
from click.testing import CliRunner

from pylon.cli.group import COMMAND_MODULES, cli, load_all_commands


def _tree(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _tree(sub, f"{path} {name}")


def test_the_table_names_every_command_and_the_module_that_defines_it() -> None:
    load_all_commands()
    assert set(cli.commands) == set(COMMAND_MODULES)
    for name, command in cli.commands.items():
        # Every command under `pylon NAME` is defined beside it: one added to the group from
        # another module would be missing whenever only NAME's module is loaded (`pylon node
        # refund` was, from the payments' module).
        for path, sub in _tree(command, name):
            assert sub.callback is not None, path
            assert sub.callback.__module__ == COMMAND_MODULES[name], path


def test_a_subcommand_runs_with_only_its_groups_module_loaded() -> None:
    probe = (
        "from click.testing import CliRunner\n"
        "from pylon.cli.group import cli\n"
        "out = CliRunner().invoke(cli, ['node', 'refund', '--help'])\n"
        "assert out.exit_code == 0, out.output\n"
        "print(out.output)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Give a job's payment back" in out.stdout


def test_help_lists_every_command() -> None:
    out = CliRunner().invoke(cli, ["--help"])
    assert out.exit_code == 0, out.output
    listed = {line.split()[0] for line in out.output.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(COMMAND_MODULES)


def test_the_relay_command_does_not_load_the_rest() -> None:
    probe = (
        "import json, sys\n"
        "from pylon.cli.group import cli\n"
        "assert cli.get_command(None, 'relay') is not None\n"
        "import pylon.relay.embedded\n"
        "print(json.dumps(sorted(m for m in ('httpx', 'pylon.repomap', 'pylon.cli.map_cmds',"
        " 'pylon.cli.pay_cmds', 'pylon.rpc.client', 'cashu') if m in sys.modules)))\n"
    )
    argv = [sys.executable, "-c", probe]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == []


def test_an_unknown_command_is_still_refused() -> None:
    out = CliRunner().invoke(cli, ["no-such-command"])
    assert out.exit_code == 2
    assert "No such command" in out.output
