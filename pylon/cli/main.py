"""`pylon`: the face of the system (DESIGN §5). Every command takes --json.

The commands live by group in `pylon/cli/*_cmds.py`; `cli` imports each one's module when it
runs (`pylon.cli.group.COMMAND_MODULES`).
"""

from __future__ import annotations

import sys

from pylon.cli.group import cli


def main() -> None:
    try:
        cli(standalone_mode=True)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
