"""msats (the protocol's unit) ↔ sats (the mint's unit).

NIP-90 `bid` and `amount` tags carry millisatoshis; a Cashu sat keyset cannot express less than
one sat. Pylon rounds a price UP to whole sats: the node is never paid less than it asked, and
a buyer overpays by at most 999 msats per job. The nutzap then states what was actually paid
(`amount_msats = sats * 1000`), so a node checks `covers(paid_sats, price_msats)`.
"""

from __future__ import annotations

MSATS_PER_SAT = 1000


def sats_for_msats(msats: int) -> int:
    """Whole sats that pay a price of `msats` (rounded up; 0 stays 0)."""
    if isinstance(msats, bool) or not isinstance(msats, int):
        raise TypeError(f"msats must be an int, not {type(msats).__name__}")
    if msats < 0:
        raise ValueError(f"msats must be >= 0, got {msats}")
    return -(-msats // MSATS_PER_SAT)


def msats_for_sats(sats: int) -> int:
    if isinstance(sats, bool) or not isinstance(sats, int):
        raise TypeError(f"sats must be an int, not {type(sats).__name__}")
    if sats < 0:
        raise ValueError(f"sats must be >= 0, got {sats}")
    return sats * MSATS_PER_SAT


def covers(paid_sats: int, price_msats: int) -> bool:
    """Whether `paid_sats` pays a price of `price_msats` in full."""
    return paid_sats * MSATS_PER_SAT >= price_msats
