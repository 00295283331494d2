"""NIP-60 spending history (kind 7376): the node's receipt that it redeemed a nutzap.

NIP-60 encrypts the content to the wallet owner; Pylon's receipt is an audit record meant to
be read by anyone rebuilding a job's provenance, so its content and tags are public.
"""

from __future__ import annotations

import msgspec

from pylon.keys import NostrKeys
from pylon.nostr.event import InvalidEvent, NostrEvent, sign_event
from pylon.schemas import kinds
from pylon.schemas.events import Redemption
from pylon.untrusted import decode as decode_untrusted

_decoder = msgspec.json.Decoder(Redemption)


def build_redemption(
    keys: NostrKeys, *, redemption: Redemption, buyer: str, relay_hint: str = ""
) -> NostrEvent:
    tags = [
        ["direction", redemption.direction],
        ["amount", str(redemption.amount_sats), "sat"],
        ["e", redemption.payment_id, relay_hint, "redeemed"],
        ["e", redemption.job_id, relay_hint, "job"],
        ["p", buyer],
    ]
    return sign_event(keys, kinds.REDEMPTION, msgspec.json.encode(redemption).decode(), tags)


def parse_redemption(ev: NostrEvent) -> Redemption:
    if ev.kind != kinds.REDEMPTION:
        raise InvalidEvent("wrong_kind")
    red = decode_untrusted(_decoder, ev.content, "bad_receipt", InvalidEvent)
    marked = {t[3]: t[1] for t in ev.tags_named("e") if len(t) >= 4}
    if marked.get("redeemed") != red.payment_id or marked.get("job") != red.job_id:
        raise InvalidEvent("receipt_tags_mismatch")
    return red
