"""`pylon`: the face of the system (DESIGN §5). Every command takes --json.

The commands live by group in `pylon/cli/*_cmds.py`; this module gathers them under `cli`.
"""

from __future__ import annotations

import sys

from pylon.cli.group import cli


def main() -> None:
    try:
        cli(standalone_mode=True)
    except BrokenPipeError:
        sys.exit(0)


def _register_commands() -> None:
    # Imported for their side effect of adding commands to `cli`.
    from pylon.cli import (  # noqa: F401
        ask_cmds,
        audit_cmds,
        buyer_cmds,
        job_cmds,
        map_cmds,
        market_cmds,
        node_cmds,
        ops_cmds,
        pay_cmds,
        relay_cmds,
    )


_register_commands()

if __name__ == "__main__":
    main()
