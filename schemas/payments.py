"""Payment shapes: what a Cashu nutzap holds and why one was refused (NIP-61, NUT-00/10/11)."""

from __future__ import annotations

import enum

import msgspec


class PaymentErrorCode(enum.StrEnum):
    """Why a wallet operation was refused. Every one leaves the wallet's balance unchanged."""

    WRONG_LOCK = "wrong_lock"  # the proofs are not P2PK-locked to (or refundable by) our key
    SPENT = "spent"  # the mint has already seen these proofs spent
    INVALID = "invalid"  # malformed, forged, or rejected by the mint for any other reason
    MINT_UNREACHABLE = "mint_unreachable"  # no answer from the mint (down, timeout, 5xx)
    LOCKED = "locked"  # a refund tried before the lock's locktime
    WRONG_MINT = "wrong_mint"  # the proofs name a keyset this wallet's mint does not have
    INSUFFICIENT_FUNDS = "insufficient_funds"  # not enough balance to send


class ProofInfo(msgspec.Struct, frozen=True):
    """What a set of proofs promises, read offline (no mint round trip).

    `lock_pubkey` is the P2PK key all proofs are locked to, or None when any proof is not P2PK
    or they disagree. `locktime` is the earliest locktime among the proofs (unix seconds).
    """

    amount_sats: int
    count: int
    keyset_ids: list[str]
    lock_pubkey: str | None
    locktime: int | None
    refund_pubkeys: list[str]
    has_dleq: bool


class SweepResult(msgspec.Struct, frozen=True):
    """Outcome of settling the locked payments a buyer still tracks as outstanding."""

    settled_sats: int  # the receiver redeemed them: gone for good
    refunded_sats: int  # locktime passed unredeemed: swapped back into the balance
    outstanding_sats: int  # still locked and not yet refundable
