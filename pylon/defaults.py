"""Where a local market listens by default: the one place these defaults live.

The core (relay, mint, Ollama executor) and the daemons' settings (`pylon.daemon.config`) both
read them from here, and the CLI's flags show them.
"""

from __future__ import annotations

RELAY_HOST = "127.0.0.1"
RELAY_PORT = 7777
DEFAULT_RELAY = f"ws://{RELAY_HOST}:{RELAY_PORT}"
MINT_PORT = 3338
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_MODEL = "qwen2.5-coder:1.5b"


def default_relays() -> list[str]:
    """$PYLON_RELAYS, else PYLON_HOME/config.toml's relays (issue 9), else the local default."""
    from pylon.home_config import relays

    return relays() or [DEFAULT_RELAY]


def default_mint() -> str | None:
    """$PYLON_MINT, else PYLON_HOME/config.toml's mint (a --mint flag overrides both)."""
    from pylon.home_config import mint

    return mint()
