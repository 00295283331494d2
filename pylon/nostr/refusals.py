"""What a relay's `OK false` / `CLOSED` message means, and what the client does about it.

NIP-01 machine-readable prefixes come first (`duplicate:`, `pow:`, `blocked:`, `rate-limited:`,
`invalid:`, `error:`, `auth-required:`, `restricted:`); free text that says the event is too
big wins over the prefix, because relays put size refusals under `invalid:`, `error:` or no
prefix at all ("event too large", "content exceeds 4096 bytes", ...).
"""

from __future__ import annotations

import enum
import re


class Refusal(enum.StrEnum):
    DUPLICATE = "duplicate"  # stored already: as good as accepted
    TOO_LARGE = "too_large"  # shrink / split and publish a new event
    RATE_LIMITED = "rate_limited"  # back off, then send again
    AUTH_REQUIRED = "auth_required"  # authenticate (NIP-42), then send again once
    POW = "pow"  # needs proof of work we did not mine: give up on this relay
    BLOCKED = "blocked"
    RESTRICTED = "restricted"
    INVALID = "invalid"
    TOO_OLD = "too_old"  # created_at outside the relay's window (clock skew)
    ERROR = "error"
    UNKNOWN = "unknown"


# What the client does next for each class.
RETRY_AFTER_BACKOFF = frozenset({Refusal.RATE_LIMITED})
RETRY_AFTER_AUTH = frozenset({Refusal.AUTH_REQUIRED})
REFIT = frozenset({Refusal.TOO_LARGE})
GIVE_UP = frozenset(
    {Refusal.POW, Refusal.BLOCKED, Refusal.RESTRICTED, Refusal.INVALID, Refusal.TOO_OLD, Refusal.ERROR}
)

_PREFIXES = {
    "duplicate": Refusal.DUPLICATE,
    "pow": Refusal.POW,
    "blocked": Refusal.BLOCKED,
    "rate-limited": Refusal.RATE_LIMITED,
    "invalid": Refusal.INVALID,
    "error": Refusal.ERROR,
    "auth-required": Refusal.AUTH_REQUIRED,
    "restricted": Refusal.RESTRICTED,
}
_TOO_LARGE = re.compile(
    r"too (large|big|long)|exceed|oversized?|max(imum)?[ _-]*(event|content|message)[ _-]*(size|length)"
    r"|size limit|length limit|payload too|should be enough for anybody",
    re.IGNORECASE,
)
_TOO_OLD = re.compile(
    r"too old|too new|in the future|created_at|timestamp|creation date|too far off", re.IGNORECASE
)
_RATE = re.compile(r"rate[ -]?limit|slow down|too many|too fast", re.IGNORECASE)
_NUMBER = re.compile(r"\b(\d{3,9})\b")


def classify(message: str) -> Refusal:
    """The class of a refusal message (case-insensitive; unknown text is UNKNOWN)."""
    msg = message.strip()
    prefix, sep, _ = msg.partition(":")
    head = _PREFIXES.get(prefix.strip().lower()) if sep else None
    if head in (Refusal.DUPLICATE, Refusal.AUTH_REQUIRED, Refusal.RATE_LIMITED, Refusal.POW):
        return head
    if _TOO_LARGE.search(msg):
        return Refusal.TOO_LARGE
    if _TOO_OLD.search(msg) and head in (None, Refusal.INVALID, Refusal.ERROR):
        return Refusal.TOO_OLD
    if head is not None:
        return head
    if _RATE.search(msg):
        return Refusal.RATE_LIMITED
    return Refusal.UNKNOWN


def stated_limit(message: str, refused_size: int) -> int | None:
    """A size limit the message states ("exceeds 4096 bytes"), if it is plausible: a number
    below the refused size and not absurdly small (a joke like "280 characters" is not a limit)."""
    for m in _NUMBER.finditer(message):
        n = int(m.group(1))
        if 512 <= n < refused_size:
            return n
    return None
