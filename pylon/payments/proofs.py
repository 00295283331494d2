"""Reading Cashu proofs offline: their shape (NUT-00), their P2PK lock (NUT-10/11), their keys.

Nothing here talks to a mint, so the provenance trail can check a nutzap's amount and lock
cheaply. P2PK keys are compared by x coordinate: BIP-340 signatures (what the mint checks)
only see the x coordinate, and NIP-61 has senders write every lock key with a "02" prefix.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from coincurve import PublicKey

from pylon.payments.errors import PaymentError
from pylon.schemas.payments import PaymentErrorCode, ProofInfo
from pylon.untrusted import json_loads

_HEX = frozenset(string.hexdigits)
# the mint refuses longer secrets; refusing them here keeps garbage out of the wallet
MAX_SECRET_LEN = 1024


def _is_hex(s: object, length: int | None = None) -> bool:
    return isinstance(s, str) and bool(s) and (length is None or len(s) == length) and set(s) <= _HEX


def normalize_p2pk_pubkey(key: str) -> str:
    """A P2PK key in the NIP-61 form: "02" + 32-byte x coordinate, lower-case hex.

    Accepts that form, a 33-byte compressed key ("02"/"03" prefix) or a bare 32-byte x-only
    key. Raises ValueError for anything that is not a point on secp256k1.
    """
    if not isinstance(key, str):
        raise ValueError("a P2PK public key must be a hex string")
    k = key.strip().lower()
    if _is_hex(k, 64):
        x = k
    elif _is_hex(k, 66) and k[:2] in ("02", "03"):
        x = k[2:]
    else:
        raise ValueError(f"not a P2PK public key (want 64 or 66 hex chars): {key[:80]!r}")
    try:
        PublicKey(bytes.fromhex("02" + x))
    except Exception as exc:  # coincurve raises a bare ValueError/Exception
        raise ValueError(f"not a point on secp256k1: {key[:80]!r}") from exc
    return "02" + x


def p2pk_keys_match(a: str, b: str) -> bool:
    """Whether two P2PK keys are the same signer (same x coordinate); False if either is malformed."""
    try:
        return normalize_p2pk_pubkey(a)[2:] == normalize_p2pk_pubkey(b)[2:]
    except ValueError:
        return False


@dataclass(frozen=True)
class Lock:
    """A proof's NUT-10 spending condition, when its secret carries one."""

    kind: str
    data: str
    locktime: int | None = None
    refund: tuple[str, ...] = ()
    pubkeys: tuple[str, ...] = ()
    n_sigs: int = 1
    sigflag: str = "SIG_INPUTS"
    tags: tuple[tuple[str, ...], ...] = field(default=(), repr=False)


def parse_lock(secret: str) -> Lock | None:
    """The NUT-10 condition in `secret`, None for a plain (random) secret.

    Raises PaymentError("invalid") for a secret that claims to be a condition but is malformed.
    """
    if not secret.startswith("["):
        return None
    try:
        kind, body = json_loads(secret)  # total: a nested secret is a ValueError, not a crash
        if not isinstance(kind, str) or not isinstance(body, dict):
            raise ValueError("want [kind, {...}]")
        data = body["data"]
        if not isinstance(data, str) or not isinstance(body.get("nonce"), str):
            raise ValueError("data and nonce must be strings")
        raw_tags = body.get("tags") or []
        if not isinstance(raw_tags, list) or not all(
            isinstance(t, list) and t and all(isinstance(v, str) for v in t) for t in raw_tags
        ):
            raise ValueError("tags must be lists of strings")
    except (ValueError, TypeError, KeyError) as exc:
        raise PaymentError(PaymentErrorCode.INVALID, f"malformed NUT-10 secret ({exc})") from None

    tags = tuple(tuple(t) for t in raw_tags)

    def first(name: str) -> str | None:
        return next((t[1] for t in tags if t[0] == name and len(t) > 1), None)

    def every(name: str) -> tuple[str, ...]:
        return tuple(v for t in tags if t[0] == name for v in t[1:])

    try:
        locktime = int(lt) if (lt := first("locktime")) is not None else None
        n_sigs = int(first("n_sigs") or 1)
    except ValueError:
        raise PaymentError(PaymentErrorCode.INVALID, "locktime/n_sigs tag is not an integer") from None
    return Lock(
        kind=kind,
        data=data,
        locktime=locktime,
        refund=every("refund"),
        pubkeys=every("pubkeys"),
        n_sigs=n_sigs,
        sigflag=first("sigflag") or "SIG_INPUTS",
        tags=tags,
    )


def validate_proof(proof: Any) -> dict[str, Any]:
    """A NUT-00 proof dict checked for shape (not for validity: only the mint can say that).

    Returns a clean copy holding only id, amount, secret, C and (if present and well-formed)
    dleq; any incoming witness is dropped, since the redeemer signs for itself.
    """
    if not isinstance(proof, dict):
        raise PaymentError(PaymentErrorCode.INVALID, "a proof must be a JSON object")
    pid, amount, secret, c = proof.get("id"), proof.get("amount"), proof.get("secret"), proof.get("C")
    if not _is_hex(pid) or len(pid) not in (16, 66):
        raise PaymentError(PaymentErrorCode.INVALID, "proof id is not a keyset id")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0 or amount & (amount - 1):
        raise PaymentError(PaymentErrorCode.INVALID, "proof amount must be a positive power of two")
    if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET_LEN:
        raise PaymentError(PaymentErrorCode.INVALID, "proof secret missing or too long")
    if not _is_hex(c, 66) or c[:2] not in ("02", "03"):
        raise PaymentError(PaymentErrorCode.INVALID, "proof C is not a compressed point")
    clean: dict[str, Any] = {"id": pid.lower(), "amount": amount, "secret": secret, "C": c.lower()}
    dleq = proof.get("dleq")
    if dleq is not None:
        if not isinstance(dleq, dict) or not all(_is_hex(dleq.get(k), 64) for k in ("e", "s", "r")):
            raise PaymentError(PaymentErrorCode.INVALID, "proof dleq is malformed")
        clean["dleq"] = {k: dleq[k].lower() for k in ("e", "s", "r")}
    return clean


def validate_proofs(proofs: Any) -> list[dict[str, Any]]:
    """validate_proof over a non-empty list, refusing a secret that appears twice."""
    if not isinstance(proofs, Sequence) or isinstance(proofs, str | bytes) or not proofs:
        raise PaymentError(PaymentErrorCode.INVALID, "want a non-empty list of proofs")
    clean = [validate_proof(p) for p in proofs]
    if len({p["secret"] for p in clean}) != len(clean):
        raise PaymentError(PaymentErrorCode.INVALID, "the same proof appears twice")
    return clean


def inspect_proofs(proofs: Any) -> ProofInfo:
    """Amount, keysets and P2PK lock of a nutzap's proofs, without asking the mint.

    Raises PaymentError("invalid") for proofs that are not well-formed NUT-00 proofs.
    """
    clean = validate_proofs(proofs)
    locks = [parse_lock(p["secret"]) for p in clean]
    keysets = list(dict.fromkeys(p["id"] for p in clean))

    lock_pubkey: str | None = None
    if all(lk is not None and lk.kind == "P2PK" for lk in locks):
        first = locks[0].data.lower()  # type: ignore[union-attr]
        if all(p2pk_keys_match(first, lk.data) for lk in locks):  # type: ignore[union-attr]
            lock_pubkey = first
    locktimes = [lk.locktime for lk in locks if lk is not None and lk.locktime is not None]
    refund = list(dict.fromkeys(k.lower() for lk in locks if lk is not None for k in lk.refund))
    return ProofInfo(
        amount_sats=sum(p["amount"] for p in clean),
        count=len(clean),
        keyset_ids=keysets,
        lock_pubkey=lock_pubkey,
        locktime=min(locktimes) if locktimes else None,
        refund_pubkeys=refund,
        has_dleq=all("dleq" in p for p in clean),
    )
