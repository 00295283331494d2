"""Private jobs: NIP-90 requests, input chunks and results encrypted with NIP-44 v2.

A buyer mapping private code must not publish it. Following NIP-90's `encrypted` convention,
a private request carries the tag `["encrypted"]` and its `i` and `param` tags move into the
content, NIP-44-encrypted to the assigned node (the `p` tag); its chunk events and the node's
result (and result parts) are encrypted the same way, the result back to the buyer. What
stays public is what routing, payment and the provenance trail need and nothing more:

- request: `p` (the node), `e` root / retry, `bid`, `submitted_ms`, `param attempt`, and
  `x` = sha256 of the plaintext input, so the trail can still tie a result to its input,
  and for a chunked input the `i` tags naming its (sealed) chunk events;
- result: `e`, `p`, `x` = sha256 of the plaintext content (the same hash a public result
  carries), timing tags and `amount`;
- chunk events: the chunk tag (the plaintext input's hash, index, count) and `p`.

Requests can only be private when they are targeted: an untargeted request has no one to be
encrypted to, so it is refused here (`build_request` needs a node) and dropped on parse.

This module wraps `nip90` (build and parse there stay the only definition of the public
shape): parsing decrypts into a plaintext view of the event (same id and signature, which
were already checked) and hands that to the `nip90` parser; building encrypts what `nip90`
would have put in the clear. Decryption failures are `InvalidEvent("nip44_<reason>")`, which
callers count and drop like any other bad event.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Sequence

import msgspec

from pylon.keys import NostrKeys
from pylon.nostr import nip13, nip44, nip90
from pylon.nostr.budget import DEFAULT as DEFAULT_BUDGET
from pylon.nostr.budget import Budget
from pylon.nostr.event import InvalidEvent, NostrEvent, now_ms, sign_event
from pylon.schemas import kinds
from pylon.schemas.events import (
    DEFAULT_TASKS,
    FileResult,
    InputChunk,
    JobRequest,
    ResultTiming,
    RunRoot,
)

ENCRYPTED_TAG = "encrypted"
# The largest plaintext sealed into one event: its payload (54.7 KB of base64) and the tags
# stay under the relay's 64 KiB event cap; one byte more pads to a 65.6 KB payload. Relays
# with smaller limits get less (sealed_limit: fitted to the pool's budget, issue 9).
SEALED_LIMIT = 40 * 1024
CHUNK_JSON_BYTES = 256  # the InputChunk JSON around a chunk's base64 data
CHUNK_DATA_BYTES = SEALED_LIMIT - CHUNK_JSON_BYTES
PUBLIC_REQUEST_TAGS = frozenset({"p", "e", "bid", "submitted_ms", "nonce", ENCRYPTED_TAG, "x"})
PRIVATE_ROOT_LABEL = "private"

_json = msgspec.json.Encoder()
_tags_decoder = msgspec.json.Decoder(list[list[str]])
_chunk_decoder = msgspec.json.Decoder(InputChunk)
_root_decoder = msgspec.json.Decoder(RunRoot)


class Sealer:
    """Encrypts to and decrypts from peers with one key pair (conversation keys cached)."""

    def __init__(self, keys: NostrKeys) -> None:
        self.pubkey = keys.pubkey
        self._conv = nip44.ConversationKeys(bytes.fromhex(keys.secret_hex()))

    def seal(self, plaintext: str, peer: str) -> str:
        return nip44.encrypt(plaintext, self._key(peer))

    def open(self, payload: str, peer: str) -> str:
        try:
            return nip44.decrypt(payload, self._key(peer))
        except nip44.Nip44Error as exc:
            raise InvalidEvent(f"nip44_{exc.reason}") from exc

    def _key(self, peer: str) -> bytes:
        try:
            return self._conv.get(peer)
        except nip44.Nip44Error as exc:
            raise InvalidEvent(f"nip44_{exc.reason}", peer[:16]) from exc

    def peer_of(self, ev: NostrEvent) -> str | None:
        """Whom `ev` is encrypted between, seen from us; None when we are not a party to it."""
        p = ev.tag_value("p")
        if ev.pubkey == self.pubkey:
            return p or self.pubkey  # no p: sealed to ourselves (a private run root)
        if p == self.pubkey:
            return ev.pubkey
        return None

    def open_event(self, ev: NostrEvent) -> str:
        peer = self.peer_of(ev)
        if peer is None:
            raise InvalidEvent("nip44_not_ours")
        return self.open(ev.content, peer)


def sealed_len(plaintext_bytes: int) -> int:
    """Bytes of the NIP-44 v2 payload (base64) that seals `plaintext_bytes` of plaintext."""
    raw = 1 + 32 + 2 + nip44.calc_padded_len(plaintext_bytes) + 32  # version, nonce, len, data, mac
    return 4 * ((raw + 2) // 3)


def sealed_limit(budget: Budget = DEFAULT_BUDGET) -> int:
    """The largest plaintext one sealed event may carry within `budget` (0: none fits)."""
    room = min(budget.content, budget.message - nip90.RESULT_TAG_BYTES)
    lo, hi = 0, SEALED_LIMIT
    while lo < hi:  # sealed_len is monotonic in the plaintext size
        mid = (lo + hi + 1) // 2
        if sealed_len(mid) <= room:
            lo = mid
        else:
            hi = mid - 1
    return lo


def is_encrypted(ev: NostrEvent) -> bool:
    return ev.tag(ENCRYPTED_TAG) is not None


def _with(ev: NostrEvent, *, content: str | None = None, tags: list[list[str]] | None = None) -> NostrEvent:
    """A plaintext view of an already verified event (never published, never re-verified)."""
    return msgspec.structs.replace(
        ev, content=ev.content if content is None else content, tags=ev.tags if tags is None else tags
    )


# --- requests and chunks ------------------------------------------------------------------


def build_chunks(
    keys: NostrKeys, sealer: Sealer, text: str, node: str, budget: Budget = DEFAULT_BUDGET
) -> tuple[str, list[NostrEvent]]:
    """`text` compressed and split across chunk events that fit `budget`, each encrypted to
    `node`. Raises nip90.InputTooLarge when the relays' limits leave no room."""
    raw = text.encode()
    digest = nip90.sha256_hex(raw)
    packed = base64.b64encode(zlib.compress(raw, 6)).decode()
    size = min(CHUNK_DATA_BYTES, sealed_limit(budget) - CHUNK_JSON_BYTES)
    if size < 256:
        raise nip90.InputTooLarge(
            f"the relays allow {budget.content} bytes of content: too small for sealed chunks"
        )
    pieces = [packed[i : i + size] for i in range(0, len(packed), size)] or [""]
    if len(pieces) + nip90.REQUEST_TAGS > budget.tags:
        raise nip90.InputTooLarge(
            f"{len(pieces)} chunks would exceed the relays' {budget.tags} tags an event"
        )
    events = []
    for idx, piece in enumerate(pieces):
        plain = _json.encode(InputChunk(sha256=digest, index=idx, total=len(pieces), data=piece)).decode()
        events.append(
            sign_event(
                keys,
                kinds.JOB_REQUEST,
                sealer.seal(plain, node),
                [[nip90.CHUNK_TAG, digest, str(idx), str(len(pieces))], ["p", node], [ENCRYPTED_TAG]],
            )
        )
    return digest, events


def build_request(
    keys: NostrKeys,
    sealer: Sealer,
    *,
    node: str,
    path: str,
    language: str,
    text: str,
    sha256: str,
    size: int,
    run_id: str | None,
    bid_msats: int = 0,
    tasks: Sequence[str] = DEFAULT_TASKS,
    relay_hint: str = "",
    attempt: int = 1,
    retry_of: str | None = None,
    check_of: str | None = None,
    pow_bits: int = 0,
    budget: Budget = DEFAULT_BUDGET,
) -> tuple[NostrEvent, list[NostrEvent]]:
    """A request encrypted to `node`, and the chunk events (also encrypted) to publish first,
    each fitted to `budget` (the relays' smallest limits).

    Every attempt is sealed afresh for its node, chunks included: a re-issue re-encrypts."""
    if not node:
        raise ValueError("a private request must be assigned to a node (untargeted ones cannot be encrypted)")
    params = [
        ["param", "path", path],
        ["param", "language", language],
        ["param", "tasks", ",".join(tasks)],
        ["param", "sha256", sha256],
        ["param", "size", str(size)],
    ]
    chunks: list[NostrEvent] = []
    limit = sealed_limit(budget)
    inline = _json.encode([["i", text, "text"], *params])
    chunk_refs: list[list[str]] = []
    if len(inline) <= limit:
        secret = inline.decode()
    else:
        # The chunk events' ids ride in public `i` tags, as in a public request: they name
        # sealed events and say no more than those events, public anyway, do; in the sealed
        # part they would make a big input's request too big for a small relay.
        _, chunks = build_chunks(keys, sealer, text, node, budget)
        chunk_refs = [["i", c.id, "event", relay_hint] for c in chunks]
        secret = _json.encode(params).decode()
    tags: list[list[str]] = [
        [ENCRYPTED_TAG],
        ["p", node],
        ["x", sha256],
        ["param", "attempt", str(attempt)],
        ["bid", str(bid_msats)],
        ["submitted_ms", str(now_ms())],
    ]
    tags.extend(chunk_refs)
    if run_id:
        tags.append(["e", run_id, relay_hint, "root"])
    if retry_of:
        tags.append(["e", retry_of, relay_hint, nip90.RETRY_MARKER])
    if check_of:
        tags.append(["e", check_of, relay_hint, nip90.CHECK_MARKER])
    if len(tags) > budget.tags:
        raise nip90.InputTooLarge(f"{len(chunk_refs)} chunks exceed the relays' {budget.tags} tags an event")
    content = sealer.seal(secret, node)
    if pow_bits > 0:
        return nip13.mine(keys, kinds.JOB_REQUEST, content, tags, pow_bits), chunks
    return sign_event(keys, kinds.JOB_REQUEST, content, tags), chunks


def parse_public_request(ev: NostrEvent) -> JobRequest:
    """What anyone can read of an encrypted request: routing, the input's hash, no input."""
    public = [t for t in ev.tags if t and t[0] not in (ENCRYPTED_TAG, "i")]
    sha = ev.tag_value("x") or ""
    view = _with(ev, tags=[*public, ["param", "path", ""], ["i", "", "text"], ["param", "sha256", sha]])
    req = nip90.parse_request(view)
    req.text = None
    req.encrypted = True
    return req


def parse_request(ev: NostrEvent, sealer: Sealer | None) -> JobRequest:
    """`nip90.parse_request`, decrypting an encrypted request when it is addressed to us (or
    is our own); anyone else gets the public view (`parse_public_request`)."""
    if not is_encrypted(ev):
        return nip90.parse_request(ev)
    if ev.kind != kinds.JOB_REQUEST:
        raise InvalidEvent("wrong_kind")
    if not ev.tag_value("p"):
        raise InvalidEvent("encrypted_untargeted")
    if sealer is None or sealer.peer_of(ev) is None:
        return parse_public_request(ev)
    try:
        secret = _tags_decoder.decode(sealer.open_event(ev))
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise InvalidEvent("malformed_private_request", str(exc)[:80]) from exc
    # Only input and params come from the sealed part, and public routing tags win.
    public = [
        t for t in ev.tags if (t and t[0] in PUBLIC_REQUEST_TAGS) or (t and t[:2] == ["param", "attempt"])
    ]
    private = [t for t in secret if t and t[0] in ("i", "param") and t[:2] != ["param", "attempt"]]
    if not any(t[0] == "i" for t in private):  # a chunked input: its chunk ids are public tags
        public += [t for t in ev.tags if len(t) >= 3 and t[0] == "i" and t[2] == "event"]
    req = nip90.parse_request(_with(ev, content="", tags=[*private, *public]))
    x = ev.tag_value("x")
    if x and req.sha256 != x:
        raise InvalidEvent("hash_mismatch", "sealed sha256 differs from the public x tag")
    req.encrypted = True
    return req


def open_chunks(req: JobRequest, chunks: Sequence[NostrEvent], sealer: Sealer) -> list[NostrEvent]:
    """Plaintext views of an encrypted request's chunk events (public chunks pass through)."""
    if not req.encrypted:
        return list(chunks)
    out = []
    for c in chunks:
        if c.pubkey != req.buyer:
            continue  # someone else's event under that id cannot be one of our chunks
        out.append(_with(c, content=sealer.open(c.content, req.buyer)) if is_encrypted(c) else c)
    return out


# --- results ------------------------------------------------------------------------------


def build_result_with_parts(
    keys: NostrKeys,
    sealer: Sealer | None,
    *,
    request: JobRequest,
    result: FileResult,
    timing: ResultTiming,
    amount_msats: int = 0,
    budget: Budget = DEFAULT_BUDGET,
) -> tuple[NostrEvent, list[NostrEvent]]:
    """`nip90.build_result_with_parts`, encrypted back to the buyer for an encrypted request,
    fitted to `budget` either way.

    `x` is the sha256 of the plaintext content (JSON, or zlib+base64 when that is too big),
    so the buyer checks it after decrypting exactly as for a public result."""
    if not request.encrypted:
        return nip90.build_result_with_parts(
            keys, request=request, result=result, timing=timing, amount_msats=amount_msats, budget=budget
        )
    if sealer is None:
        raise ValueError("an encrypted request needs a sealer to answer")
    limit = sealed_limit(budget)
    if limit < 256:
        raise nip90.ResultTooLarge(
            f"the relays allow {budget.content} bytes of content: too small for sealed parts"
        )
    raw = _json.encode(result)
    encoding: str | None = None
    content = raw.decode()
    if len(raw) > limit:
        content, encoding = base64.b64encode(zlib.compress(raw, 9)).decode(), nip90.COMPRESSED
    digest = nip90.sha256_hex(content.encode())
    pieces = [content] if len(content.encode()) <= limit else _split(content, limit)
    max_parts = min(
        nip90.MAX_RESULT_PARTS,
        budget.tags - nip90.REQUEST_TAGS,
        (budget.message - nip90.RESULT_TAG_BYTES) // nip90.PART_TAG_BYTES,
    )
    if len(pieces) > max_parts:
        raise nip90.ResultTooLarge(f"the result for {result.path} is {len(content)} bytes even compressed")
    parts: list[NostrEvent] = []
    if len(pieces) > 1:
        for idx, piece in enumerate(pieces):
            parts.append(
                sign_event(
                    keys,
                    kinds.JOB_FEEDBACK,
                    sealer.seal(piece, request.buyer),
                    nip90.part_tags(request, digest, idx, len(pieces), [ENCRYPTED_TAG]),
                )
            )
    tags = nip90.result_tags(request, digest, timing, amount_msats, parts, encoding, [ENCRYPTED_TAG])
    sealed = "" if parts else sealer.seal(content, request.buyer)
    return sign_event(keys, kinds.JOB_RESULT, sealed, tags), parts


def _split(text: str, n: int) -> list[str]:
    # Split on characters, not bytes, and keep every piece's UTF-8 size within n (the content
    # is ASCII base64 here, so the pieces are exactly n bytes).
    return [text[i : i + n] for i in range(0, len(text), n)]


def open_result(
    ev: NostrEvent, parts: Sequence[NostrEvent], sealer: Sealer
) -> tuple[NostrEvent, list[NostrEvent]]:
    """Plaintext views of an encrypted result and its parts (public ones pass through)."""
    if not is_encrypted(ev):
        return ev, list(parts)
    if ev.tag_value("p") != sealer.pubkey and ev.pubkey != sealer.pubkey:
        raise InvalidEvent("nip44_not_ours")
    peer = ev.pubkey if ev.pubkey != sealer.pubkey else (ev.tag_value("p") or "")
    opened = _with(ev, content=sealer.open(ev.content, peer) if ev.content else "")
    opened_parts = [_with(p, content=sealer.open(p.content, peer)) for p in parts if p.pubkey == ev.pubkey]
    return opened, opened_parts


def parse_result(ev: NostrEvent, parts: Sequence[NostrEvent], sealer: Sealer | None) -> nip90.ParsedResult:
    """`nip90.parse_result`, decrypting an encrypted result first (InvalidEvent without a key)."""
    if not is_encrypted(ev):
        return nip90.parse_result(ev, parts)
    if sealer is None:
        raise InvalidEvent("encrypted")
    opened, opened_parts = open_result(ev, parts, sealer)
    return nip90.parse_result(opened, opened_parts)


def parse_result_public(ev: NostrEvent) -> nip90.ParsedResult:
    """What anyone can read of an encrypted result: its tags (job, timing, amount, the
    plaintext's hash), with an empty payload. For statistics replayed without the buyer's
    key; never for accepting a result."""
    job = nip90.result_job_id(ev)
    x = ev.tag_value("x")
    if ev.kind != kinds.JOB_RESULT or not job or not x:
        raise InvalidEvent("malformed_result")

    def num(name: str) -> int:
        return nip90._int(ev.tag_value(name, "0") or "0", "bad_tag")

    return nip90.ParsedResult(
        job_id=job,
        node=ev.pubkey,
        result=FileResult(path="", language="", lines=0, symbols=[], imports=[], summary=""),
        timing=ResultTiming(
            received_ms=num("received"),
            started_ms=num("started"),
            finished_ms=num("finished"),
            published_ms=num("published"),
        ),
        amount_msats=num("amount"),
        content_sha256=x,
    )


def parse_result_for_stats(
    ev: NostrEvent, parts: Sequence[NostrEvent], sealer: Sealer | None
) -> nip90.ParsedResult:
    """`parse_result` where the key allows, else the public view of an encrypted result."""
    if is_encrypted(ev) and (sealer is None or sealer.peer_of(ev) is None):
        return parse_result_public(ev)
    return parse_result(ev, parts, sealer)


def check_sealed_shape(ev: NostrEvent) -> str | None:
    """For readers without the key: is the content a well-formed NIP-44 v2 payload? (None: yes)"""
    if not ev.content:
        return None if nip90.result_part_ids(ev) else "empty encrypted content"
    try:
        data = base64.b64decode(ev.content, validate=True)
    except ValueError:
        return "encrypted content is not base64"
    if len(data) < 99 or data[0] != nip44.VERSION:
        return "encrypted content is not a NIP-44 v2 payload"
    return None


# --- run roots ----------------------------------------------------------------------------


def build_run_root(keys: NostrKeys, sealer: Sealer, root: RunRoot, *, private: bool) -> NostrEvent:
    """The run's root event; for a private run, the repo, its commit and its skip list are
    sealed to the buyer itself (only its trail reads them) and the public part keeps the
    snapshot hash and the file count, which say nothing about names or contents."""
    if not private:
        return nip90.build_run_root(keys, root)
    return sign_event(
        keys,
        kinds.JOB_REQUEST,
        sealer.seal(_json.encode(root).decode(), keys.pubkey),
        [
            ["i", PRIVATE_ROOT_LABEL, "url"],
            ["param", "snapshot", root.snapshot_sha256],
            [nip90.ROOT_TAG, str(root.files)],
            [ENCRYPTED_TAG],
        ],
    )


def parse_run_root(ev: NostrEvent, sealer: Sealer | None) -> RunRoot:
    if not is_encrypted(ev):
        return nip90.parse_run_root(ev)
    if sealer is None or ev.pubkey != sealer.pubkey:
        files = ev.tag(nip90.ROOT_TAG)
        snap = next((t[2] for t in ev.tags_named("param") if len(t) >= 3 and t[1] == "snapshot"), "")
        return RunRoot(
            repo=PRIVATE_ROOT_LABEL,
            snapshot_sha256=snap,
            files=int(files[1]) if files and len(files) > 1 and files[1].isdigit() else 0,
        )
    try:
        return _root_decoder.decode(sealer.open(ev.content, sealer.pubkey))
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise InvalidEvent("malformed_root", str(exc)[:80]) from exc


# --- feedback -----------------------------------------------------------------------------


def public_message(req: JobRequest, message: str) -> str:
    """Feedback of a private job carries its error code only: an executor's message may quote
    the file (a parse error, a path)."""
    return "" if req.encrypted else message
