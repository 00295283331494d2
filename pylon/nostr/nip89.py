"""NIP-89 handler announcement (kind 31990) for a Pylon node."""

from __future__ import annotations

import msgspec

from pylon.keys import NostrKeys
from pylon.nostr.event import InvalidEvent, NostrEvent, sign_event
from pylon.schemas import kinds
from pylon.schemas.events import Announce
from pylon.untrusted import decode as decode_untrusted

_decoder = msgspec.json.Decoder(Announce)


def build_announce(keys: NostrKeys, node_id: str, announce: Announce) -> NostrEvent:
    tags = [["d", node_id], ["k", str(kinds.JOB_REQUEST)], ["name", announce.name]]
    tags.extend(["t", e] for e in announce.executors)
    return sign_event(keys, kinds.ANNOUNCE, msgspec.json.encode(announce).decode(), tags)


def parse_announce(ev: NostrEvent) -> Announce:
    if ev.kind != kinds.ANNOUNCE:
        raise InvalidEvent("wrong_kind")
    if ev.tag_value("k") != str(kinds.JOB_REQUEST):
        raise InvalidEvent("not_pylon_announce")
    return decode_untrusted(_decoder, ev.content, "bad_announce", InvalidEvent)
