"""NIP-61 nutzaps: where a node accepts ecash (10019) and the payment itself (9321).

A Pylon nutzap pays for one job: its proofs are P2PK-locked to the node's advertised key,
and it tags the result it pays for and the job (the request id), so the payment is linked to
the job by a pure relay query.
"""

from __future__ import annotations

import msgspec

from pylon.keys import NostrKeys
from pylon.nostr.event import InvalidEvent, NostrEvent, sign_event
from pylon.schemas import kinds
from pylon.schemas.events import Nutzap, NutzapInfo
from pylon.untrusted import decode as decode_untrusted

MAX_PROOFS = 64
# A Cashu proof is flat (amount, id, secret, C, witness) plus a flat dleq: a shape with bounded
# nesting, so a stranger's `proof` tag nested 2000 deep fails validation instead of recursing.
_proof_decoder = msgspec.json.Decoder(dict[str, int | str | dict[str, int | str] | None])


def mint_key(url: str) -> str:
    """A mint URL as nutzaps and nutzap info compare them: no trailing slash, case-insensitive."""
    return url.strip().rstrip("/").lower()


def build_nutzap_info(
    keys: NostrKeys, *, mints: list[str], relays: list[str], p2pk_pubkey: str
) -> NostrEvent:
    tags = [["mint", m, "sat"] for m in mints] + [["relay", r] for r in relays] + [["pubkey", p2pk_pubkey]]
    return sign_event(keys, kinds.NUTZAP_INFO, "", tags)


def parse_nutzap_info(ev: NostrEvent) -> NutzapInfo:
    if ev.kind != kinds.NUTZAP_INFO:
        raise InvalidEvent("wrong_kind")
    mints = [t[1] for t in ev.tags_named("mint") if len(t) > 1]
    relays = [t[1] for t in ev.tags_named("relay") if len(t) > 1]
    pk = ev.tag_value("pubkey")
    if not mints or not pk:
        raise InvalidEvent("bad_nutzap_info")
    return NutzapInfo(mints=mints, relays=relays, p2pk_pubkey=pk)


def build_nutzap(
    keys: NostrKeys,
    *,
    job_id: str,
    result_id: str,
    node: str,
    mint: str,
    amount_msats: int,
    proofs: list[dict],
    comment: str = "",
    relay_hint: str = "",
) -> NostrEvent:
    tags: list[list[str]] = [["proof", msgspec.json.encode(p).decode()] for p in proofs]
    tags += [
        ["u", mint],
        ["e", result_id, relay_hint, "result"],
        ["e", job_id, relay_hint, "job"],
        ["p", node],
        ["amount", str(amount_msats), "msat"],
        ["unit", "sat"],
    ]
    return sign_event(keys, kinds.NUTZAP, comment, tags)


def parse_nutzap(ev: NostrEvent) -> Nutzap:
    if ev.kind != kinds.NUTZAP:
        raise InvalidEvent("wrong_kind")
    proofs = []
    for t in ev.tags_named("proof"):
        if len(t) < 2:
            raise InvalidEvent("bad_proof")
        proofs.append(decode_untrusted(_proof_decoder, t[1], "bad_proof", InvalidEvent))
    if not proofs or len(proofs) > MAX_PROOFS:
        raise InvalidEvent("bad_proof", f"{len(proofs)} proofs")
    marked = {t[3]: t[1] for t in ev.tags_named("e") if len(t) >= 4}
    job_id, result_id = marked.get("job"), marked.get("result")
    node, mint = ev.tag_value("p"), ev.tag_value("u")
    amount = ev.tag_value("amount")
    if not (job_id and result_id and node and mint and amount):
        raise InvalidEvent("malformed_nutzap")
    try:
        amount_msats = int(amount)
    except ValueError as exc:
        raise InvalidEvent("bad_amount") from exc
    return Nutzap(
        payment_id=ev.id,
        job_id=job_id,
        result_id=result_id,
        node=node,
        buyer=ev.pubkey,
        mint=mint,
        amount_msats=amount_msats,
        proofs=proofs,
        unit=ev.tag_value("unit", "sat") or "sat",
    )
