"""NIP-42 client authentication: the kind 22242 event that answers a relay's AUTH challenge."""

from __future__ import annotations

from pylon.keys import NostrKeys
from pylon.nostr.event import NostrEvent, sign_event

AUTH_KIND = 22242


def build_auth(keys: NostrKeys, relay_url: str, challenge: str) -> NostrEvent:
    """Signed with the daemon's own key, so an allow-listed relay knows who is asking."""
    return sign_event(keys, AUTH_KIND, "", [["relay", relay_url], ["challenge", challenge]])


def challenge_of(ev: NostrEvent) -> str | None:
    return ev.tag_value("challenge")
