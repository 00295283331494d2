"""What `pylon doctor` reports: one line per check."""

from __future__ import annotations

import msgspec


class Check(msgspec.Struct):
    name: str  # e.g. "relay ws://127.0.0.1:7777", "ollama", "key keys/node-alice.key"
    ok: bool  # a check that does not apply (nothing configured) is ok, and says so in detail
    detail: str
    fix: str = ""  # what to run or change when not ok
