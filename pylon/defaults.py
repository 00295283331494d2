"""Where a local market listens by default, and a node's default width: the one place these
defaults live.

The core (relay, mint, Ollama executor) and the daemons' settings (`pylon.daemon.config`) both
read them from here, and the CLI's flags show them.
"""

from __future__ import annotations

import os

RELAY_HOST = "127.0.0.1"
RELAY_PORT = 7777
DEFAULT_RELAY = f"ws://{RELAY_HOST}:{RELAY_PORT}"
MINT_PORT = 3338
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_MODEL = "qwen2.5-coder:1.5b"
# Jobs a node runs at once unless its operator says otherwise; a buyer trusts a node it has
# not seen deliver with as many (pylon.daemon.buyer.registry.START_SLOTS).
DEFAULT_SLOTS = 4


def default_relays() -> list[str]:
    """$PYLON_RELAYS, else PYLON_HOME/config.toml's relays (issue 9), else the relay the
    `pylon up` of this PYLON_HOME runs (it may be on another port than the default), else
    ws://127.0.0.1:7777."""
    from pylon.home_config import relays

    return relays() or _stack_relays() or [DEFAULT_RELAY]


def default_mint() -> str | None:
    """$PYLON_MINT (or $PYLON_MINT_URL), else PYLON_HOME/config.toml's mint (a --mint flag
    overrides both)."""
    from pylon.home_config import mint

    return mint()


def _stack_relays() -> list[str]:
    """The relay named in PYLON_HOME/run/stack.json (written by `pylon up`), read without
    creating anything."""
    import json
    from pathlib import Path

    import platformdirs

    raw = os.environ.get("PYLON_HOME")
    home = Path(raw).expanduser() if raw else Path(platformdirs.user_data_dir("pylon"))
    try:
        p = home / "run" / "stack.json"
        if p.stat().st_size > 64 * 1024:
            return []
        relay = json.loads(p.read_text("utf-8")).get("relay")
    except (OSError, ValueError, AttributeError):
        return []
    return [relay] if isinstance(relay, str) and relay.startswith(("ws://", "wss://")) else []
