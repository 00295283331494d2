"""Where a local market listens by default: the one place these defaults live.

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


def default_relays() -> list[str]:
    raw = os.environ.get("PYLON_RELAYS", "")
    return [u for u in raw.split(",") if u] or [DEFAULT_RELAY]
