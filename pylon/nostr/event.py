"""NIP-01 events: serialisation, id, BIP-340 signatures, verification.

Events are built and checked here in-process (msgspec + hashlib + libsecp256k1) rather than
through nostr-sdk objects, because each crossing into the bindings costs hundreds of µs and a
busy node handles several events per job.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator

import msgspec
from coincurve import PublicKeyXOnly

from pylon.keys import NostrKeys
from pylon.untrusted import BadInput, decode

_encoder = msgspec.json.Encoder()
_event_decoder: msgspec.json.Decoder[NostrEvent] | None = None


class NostrEvent(msgspec.Struct, frozen=True):
    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: list[list[str]]
    content: str
    sig: str

    def tag(self, name: str) -> list[str] | None:
        """The first tag called `name`, or None."""
        for t in self.tags:
            if t and t[0] == name:
                return t
        return None

    def tag_value(self, name: str, default: str | None = None) -> str | None:
        t = self.tag(name)
        return t[1] if t is not None and len(t) > 1 else default

    def tags_named(self, name: str) -> Iterator[list[str]]:
        return (t for t in self.tags if t and t[0] == name)


class InvalidEvent(BadInput):
    """An event that failed NIP-01 checks; `reason` is a short counter name."""


def serialize_for_id(pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str) -> bytes:
    return _encoder.encode([0, pubkey, created_at, kind, tags, content])


def compute_id(pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str) -> bytes:
    return hashlib.sha256(serialize_for_id(pubkey, created_at, kind, tags, content)).digest()


def sign_event(
    keys: NostrKeys,
    kind: int,
    content: str,
    tags: Iterable[list[str]] = (),
    created_at: int | None = None,
) -> NostrEvent:
    tag_list = [list(t) for t in tags]
    ts = int(time.time()) if created_at is None else created_at
    return signed_with_id(
        keys, compute_id(keys.pubkey, ts, kind, tag_list, content), ts, kind, tag_list, content
    )


def signed_with_id(
    keys: NostrKeys, digest: bytes, created_at: int, kind: int, tags: list[list[str]], content: str
) -> NostrEvent:
    """The event whose id (`digest`) is already computed, signed."""
    return NostrEvent(
        id=digest.hex(),
        pubkey=keys.pubkey,
        created_at=created_at,
        kind=kind,
        tags=tags,
        content=content,
        sig=keys.sign(digest),
    )


_pubkeys: dict[str, PublicKeyXOnly] = {}


def _xonly(pubkey: str) -> PublicKeyXOnly:
    """Parsed public keys are cached: a swarm has few authors and parsing costs a square root."""
    key = _pubkeys.get(pubkey)
    if key is None:
        key = PublicKeyXOnly(bytes.fromhex(pubkey))
        if len(_pubkeys) > 10_000:
            _pubkeys.clear()
        _pubkeys[pubkey] = key
    return key


def verify_event(ev: NostrEvent) -> None:
    """Raise InvalidEvent unless the id is the hash of the event and the signature is the author's."""
    try:
        digest = compute_id(ev.pubkey, ev.created_at, ev.kind, ev.tags, ev.content)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        raise InvalidEvent("malformed", str(exc)) from exc
    if digest.hex() != ev.id:
        raise InvalidEvent("bad_id")
    try:
        ok = _xonly(ev.pubkey).verify(bytes.fromhex(ev.sig), digest)
    except (ValueError, TypeError) as exc:
        raise InvalidEvent("bad_signature", str(exc)) from exc
    if not ok:
        raise InvalidEvent("bad_signature")


def encode_event(ev: NostrEvent) -> bytes:
    return _encoder.encode(ev)


def decode_event(raw: bytes | str) -> NostrEvent:
    """Decode one event's JSON; InvalidEvent(malformed) on anything that is not an event."""
    global _event_decoder
    if _event_decoder is None:
        _event_decoder = msgspec.json.Decoder(NostrEvent)
    return decode(_event_decoder, raw, "malformed", InvalidEvent)


def now_ms() -> int:
    return time.time_ns() // 1_000_000
