"""How big one event may be on every relay in use: the one place the size limits come from.

RelayPool.budget() fills it from each relay's NIP-11 document, the config file and what
refusals taught; DEFAULT is what an unknown relay gets (the embedded relay's 64 KiB event).
"""

from __future__ import annotations

from typing import NamedTuple

DEFAULT_MESSAGE_BYTES = 64 * 1024
ENVELOPE_BYTES = 1024  # id, pubkey, sig, kind, created_at and a few tags around the content


class Budget(NamedTuple):
    content: int  # bytes of content
    message: int  # bytes of the whole ["EVENT", {...}] frame
    tags: int  # number of tags


DEFAULT = Budget(
    content=DEFAULT_MESSAGE_BYTES - ENVELOPE_BYTES - 7 * 1024,  # 56 KiB: room for a result's tags
    message=DEFAULT_MESSAGE_BYTES,
    tags=10_000,
)
