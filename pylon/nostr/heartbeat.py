"""Heartbeats (kind 11998, as nostrdvm and Amethyst use them), with NIP-40 expiration."""

from __future__ import annotations

import time

import msgspec

from pylon.keys import NostrKeys
from pylon.nostr.event import InvalidEvent, NostrEvent, sign_event
from pylon.schemas import kinds
from pylon.schemas.events import Heartbeat
from pylon.untrusted import decode as decode_untrusted

_decoder = msgspec.json.Decoder(Heartbeat)
ONLINE_INTERVALS = 3  # a node is online while its last heartbeat is this many intervals old or newer


def build_heartbeat(keys: NostrKeys, node_id: str, hb: Heartbeat) -> NostrEvent:
    expires = int(time.time() + hb.interval_s * ONLINE_INTERVALS) + 1
    tags = [["d", node_id], ["expiration", str(expires)], ["status", hb.state.value]]
    return sign_event(keys, kinds.HEARTBEAT, msgspec.json.encode(hb).decode(), tags)


def parse_heartbeat(ev: NostrEvent) -> Heartbeat:
    if ev.kind != kinds.HEARTBEAT:
        raise InvalidEvent("wrong_kind")
    return decode_untrusted(_decoder, ev.content, "bad_heartbeat", InvalidEvent)


def is_expired(ev: NostrEvent, now: float | None = None) -> bool:
    raw = ev.tag_value("expiration")
    if not raw:
        return False
    try:
        return int(raw) < (time.time() if now is None else now)
    except ValueError:
        return True
