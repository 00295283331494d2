"""Heartbeats (kind 11998, as nostrdvm and Amethyst use them), with NIP-40 expiration."""

from __future__ import annotations

import time

import msgspec

from pylon.keys import NostrKeys
from pylon.nostr.clock import expires_at
from pylon.nostr.event import InvalidEvent, NostrEvent, sign_event
from pylon.schemas import kinds
from pylon.schemas.events import Heartbeat
from pylon.untrusted import decode as decode_untrusted

_decoder = msgspec.json.Decoder(Heartbeat)
ONLINE_INTERVALS = 3  # a node is online while its last heartbeat is this many intervals old or newer


MAX_AHEAD_S = 2  # how far past our clock a heartbeat is stamped to come after the last one


def build_heartbeat(keys: NostrKeys, node_id: str, hb: Heartbeat, *, after: int = 0) -> NostrEvent:
    """A signed heartbeat; `after` is the created_at of the last one this node sent.

    Heartbeats are replaceable (NIP-01): of two with one created_at the relay keeps the lower
    id and refuses the other, so one sent in the same second as the last (a relay that came
    back, a state change) would be dropped. It is stamped a second after the last instead, up
    to MAX_AHEAD_S ahead of our clock (a longer burst shares that second)."""
    now = time.time()
    hb = msgspec.structs.replace(hb, sent_ms=int(now * 1000))
    # Never earlier than the last either: a beat stamped back would be refused as older.
    created_at = max(int(now), min(after + 1, int(now) + MAX_AHEAD_S))
    # Generous: a relay (or buyer) whose clock is minutes ahead of ours must not see this as
    # expired on arrival. Liveness is the buyer's receive time, never this tag.
    expires = expires_at(hb.interval_s * ONLINE_INTERVALS, now)
    tags = [["d", node_id], ["expiration", str(expires)], ["status", hb.state.value]]
    return sign_event(keys, kinds.HEARTBEAT, msgspec.json.encode(hb).decode(), tags, created_at=created_at)


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
