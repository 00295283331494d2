"""NIP-13 proof of work: leading zero bits of the event id, mined with a `nonce` tag.

A spam limit for job requests: a node started with `--min-pow N` drops requests whose id has
fewer than N leading zero bits, or whose `["nonce", n, target]` tag commits to a target below
N (a lucky low-target event must not pass: NIP-13's difficulty commitment).

Mining hashes only what changes. The nonce tag is the last tag and a request's content is
empty, so the serialised event is `prefix + nonce + suffix` with a fixed prefix: the prefix
(which carries the file text, up to 40 KiB inline) is hashed once and each try costs one
copy of that hash state plus a few dozen bytes, about 3 µs: 8 bits ≈ 1 ms, 12 bits ≈ 12 ms,
16 bits ≈ 0.2 s, 20 bits ≈ 3 s on one core (expected; the spread is wide).
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from collections.abc import Iterable

from pylon.keys import NostrKeys
from pylon.nostr.event import NostrEvent, compute_id, serialize_for_id, signed_with_id

NONCE_TAG = "nonce"
MAX_BITS = 32  # beyond this a Python miner takes hours; refuse instead of hanging


class PowError(ValueError):
    pass


def leading_zero_bits(event_id: str) -> int:
    """Leading zero bits of a hex id (NIP-13's difficulty); 0 for anything that is not hex."""
    try:
        value = int(event_id, 16)
    except ValueError:
        return 0
    bits = len(event_id) * 4
    return bits - value.bit_length() if bits else 0


def committed_target(ev: NostrEvent) -> int | None:
    """The target the author committed to in its nonce tag, or None when there is none."""
    t = ev.tag(NONCE_TAG)
    if t is None or len(t) < 3:
        return None
    try:
        return int(t[2])
    except ValueError:
        return None


def difficulty(ev: NostrEvent) -> int:
    """The proof of work that counts: the id's zero bits, capped by the committed target."""
    bits = leading_zero_bits(ev.id)
    target = committed_target(ev)
    return bits if target is None else min(bits, target)


def meets(ev: NostrEvent, min_bits: int) -> bool:
    return min_bits <= 0 or difficulty(ev) >= min_bits


def mine(
    keys: NostrKeys,
    kind: int,
    content: str,
    tags: Iterable[list[str]],
    bits: int,
    *,
    created_at: int | None = None,
) -> NostrEvent:
    """Sign an event whose id has at least `bits` leading zero bits (a nonce tag is appended)."""
    if bits < 0 or bits > MAX_BITS:
        raise PowError(f"proof of work must be 0..{MAX_BITS} bits, not {bits}")
    tag_list = [list(t) for t in tags if not (t and t[0] == NONCE_TAG)]
    ts = int(time.time()) if created_at is None else created_at
    placeholder = secrets.token_hex(16)  # random: it cannot occur elsewhere in the event
    tag_list.append([NONCE_TAG, placeholder, str(bits)])
    raw = serialize_for_id(keys.pubkey, ts, kind, tag_list, content)
    prefix, _, suffix = raw.rpartition(placeholder.encode())
    base = hashlib.sha256(prefix)
    full_bytes, rest = divmod(bits, 8)
    mask = (0xFF << (8 - rest)) & 0xFF
    for n in itertools.count():
        nb = str(n).encode()
        h = base.copy()
        h.update(nb)
        h.update(suffix)
        digest = h.digest()
        if digest[:full_bytes] == bytes(full_bytes) and (not rest or not digest[full_bytes] & mask):
            tag_list[-1][1] = str(n)
            if compute_id(keys.pubkey, ts, kind, tag_list, content) != digest:
                raise PowError("nonce splice did not reproduce the event id")  # a serialiser change
            return signed_with_id(keys, digest, ts, kind, tag_list, content)
    raise AssertionError("unreachable")
