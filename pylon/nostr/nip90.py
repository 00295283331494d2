"""NIP-90 data-vending-machine events for Pylon's job kind (5931 → 7000 / 6931).

Building and parsing live side by side so the two can never drift apart. Parsers raise
InvalidEvent with a short reason; callers count those reasons and drop the event.
"""

from __future__ import annotations

import base64
import hashlib
import math
import zlib
from collections.abc import Sequence

import msgspec

from pylon.keys import NostrKeys
from pylon.nostr import nip13
from pylon.nostr.budget import DEFAULT as DEFAULT_BUDGET
from pylon.nostr.budget import ENVELOPE_BYTES, Budget
from pylon.nostr.event import InvalidEvent, NostrEvent, now_ms, sign_event
from pylon.schemas import kinds
from pylon.schemas.errors import ErrorCode
from pylon.schemas.events import (
    DEFAULT_TASKS,
    Feedback,
    FeedbackStatus,
    FileResult,
    InputChunk,
    JobRequest,
    ResultTiming,
    RunRoot,
)
from pylon.untrusted import decode as decode_untrusted

MAX_INPUT_BYTES = 1024 * 1024  # files up to 1 MiB map; larger ones are too_large
INLINE_LIMIT = 40 * 1024  # text this size or smaller rides in the request itself
CHUNK_DATA_BYTES = 40 * 1024  # base64 payload per chunk event, well under the 64 KiB event cap
# 1 MiB of incompressible text is ~1.37 MB once zlib'd and base64'd: 35 chunks. More is a lie.
MAX_CHUNKS = 40
MIN_CHUNK_PIECE = 768  # the smallest piece build_chunks makes (a 1 KiB content limit, issue 9)


def max_chunks(size: int) -> int:
    """How many chunks a declared size may need on the smallest relays we fit to; more is a lie."""
    return max(MAX_CHUNKS, math.ceil((min(size, MAX_INPUT_BYTES) * 1.37 + 4096) / MIN_CHUNK_PIECE))


_INFLATE_STEP = 64 * 1024  # decompressed bytes produced per step while reassembling
_SHA256_HEX = frozenset("0123456789abcdef")
CHUNK_TAG = "chunk"
ROOT_TAG = "pylon-run"
RETRY_MARKER = "retry"  # a re-issued attempt points at the job it retries
CHECK_MARKER = "check"  # a spot check points at the job whose result it re-computes

_result_decoder = msgspec.json.Decoder(FileResult)
_chunk_decoder = msgspec.json.Decoder(InputChunk)
_root_decoder = msgspec.json.Decoder(RunRoot)
_json = msgspec.json.Encoder()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- requests -----------------------------------------------------------------------------


CHUNK_OVERHEAD = 256  # the InputChunk JSON around the data, escaped into the event
REQUEST_TAGS = 16  # tags a request has besides one `i` per chunk


class InputTooLarge(ValueError):
    pass


def needs_chunks(text: str, budget: Budget = DEFAULT_BUDGET) -> bool:
    """Whether `text` must go in chunk events rather than inline in the request's tag (the
    request must fit the relays' whole-message limit, JSON escaping included)."""
    if len(text.encode()) > INLINE_LIMIT:
        return True
    return len(_json.encode(text)) + 2 * ENVELOPE_BYTES > budget.message


def build_chunks(keys: NostrKeys, text: str, budget: Budget = DEFAULT_BUDGET) -> tuple[str, list[NostrEvent]]:
    """Compress `text` and split it across chunk events that fit `budget` (the relays'
    smallest limits); returns (sha256, chunk events)."""
    raw = text.encode()
    digest = sha256_hex(raw)
    packed = base64.b64encode(zlib.compress(raw, 6)).decode()
    size = min(CHUNK_DATA_BYTES, budget.content, budget.message - ENVELOPE_BYTES) - CHUNK_OVERHEAD
    if size < 256:
        raise InputTooLarge(f"the relays allow {budget.content} bytes of content: too small for chunks")
    pieces = [packed[i : i + size] for i in range(0, len(packed), size)] or [""]
    if len(pieces) + REQUEST_TAGS > budget.tags:
        raise InputTooLarge(f"{len(pieces)} chunks would exceed the relays' {budget.tags} tags an event")
    events = []
    for idx, piece in enumerate(pieces):
        content = _json.encode(InputChunk(sha256=digest, index=idx, total=len(pieces), data=piece)).decode()
        events.append(
            sign_event(keys, kinds.JOB_REQUEST, content, [[CHUNK_TAG, digest, str(idx), str(len(pieces))]])
        )
    return digest, events


def build_request(
    keys: NostrKeys,
    *,
    path: str,
    language: str,
    text: str | None,
    sha256: str,
    size: int,
    chunk_ids: Sequence[str] = (),
    node: str | None,
    run_id: str | None,
    bid_msats: int = 0,
    tasks: Sequence[str] = DEFAULT_TASKS,
    relay_hint: str = "",
    attempt: int = 1,
    retry_of: str | None = None,
    check_of: str | None = None,
    pow_bits: int = 0,
) -> NostrEvent:
    tags: list[list[str]] = []
    if text is not None:
        tags.append(["i", text, "text"])
    else:
        tags.extend(["i", cid, "event", relay_hint] for cid in chunk_ids)
    tags += [
        ["param", "path", path],
        ["param", "language", language],
        ["param", "tasks", ",".join(tasks)],
        ["param", "sha256", sha256],
        ["param", "size", str(size)],
        ["param", "attempt", str(attempt)],
        ["bid", str(bid_msats)],
        ["submitted_ms", str(now_ms())],
    ]
    if node:
        tags.append(["p", node])
    if run_id:
        tags.append(["e", run_id, relay_hint, "root"])
    if retry_of:
        tags.append(["e", retry_of, relay_hint, RETRY_MARKER])
    if check_of:
        tags.append(["e", check_of, relay_hint, CHECK_MARKER])
    if pow_bits > 0:  # NIP-13: nodes may require proof of work on requests (spam limit)
        return nip13.mine(keys, kinds.JOB_REQUEST, "", tags, pow_bits)
    return sign_event(keys, kinds.JOB_REQUEST, "", tags)


def is_chunk(ev: NostrEvent) -> bool:
    return ev.tag(CHUNK_TAG) is not None


def is_run_root(ev: NostrEvent) -> bool:
    return ev.tag(ROOT_TAG) is not None


def parse_request(ev: NostrEvent) -> JobRequest:
    if ev.kind != kinds.JOB_REQUEST:
        raise InvalidEvent("wrong_kind")
    params: dict[str, str] = {}
    retry_of: str | None = None
    check_of: str | None = None
    text: str | None = None
    chunk_ids: list[str] = []
    assigned = None
    run_id = None
    bid = 0
    submitted_ms = 0
    for t in ev.tags:
        if not t:
            continue
        name = t[0]
        if name == "i" and len(t) >= 3:
            if t[2] == "text":
                text = t[1]
            elif t[2] == "event":
                chunk_ids.append(t[1])
        elif name == "param" and len(t) >= 3:
            params[t[1]] = t[2]
        elif name == "p" and len(t) >= 2:
            assigned = t[1]
        elif name == "e" and len(t) >= 4 and t[3] == "root":
            run_id = t[1]
        elif name == "e" and len(t) >= 4 and t[3] == RETRY_MARKER:
            retry_of = t[1]
        elif name == "e" and len(t) >= 4 and t[3] == CHECK_MARKER:
            check_of = t[1]
        elif name == "bid" and len(t) >= 2:
            bid = _int(t[1], "bad_bid")
        elif name == "submitted_ms" and len(t) >= 2:
            submitted_ms = _int(t[1], "bad_timestamp")
    if "path" not in params:
        raise InvalidEvent("missing_param", "path")
    if text is None and not chunk_ids:
        raise InvalidEvent("missing_input")
    sha = params.get("sha256", "")
    if text is not None and not sha:
        sha = sha256_hex(text.encode())
    size = _int(params.get("size", "0"), "bad_size")
    if size < 0:
        raise InvalidEvent("bad_size", str(size))
    if chunk_ids:
        # Checked before the node fetches anything: a chunked input must say what it will be.
        if len(chunk_ids) > max_chunks(size):
            raise InvalidEvent("too_many_chunks", str(len(chunk_ids)))
        if len(sha) != 64 or not _SHA256_HEX.issuperset(sha):
            raise InvalidEvent("bad_sha256", sha[:70])
    return JobRequest(
        job_id=ev.id,
        buyer=ev.pubkey,
        path=params["path"],
        language=params.get("language", ""),
        tasks=[x for x in params.get("tasks", ",".join(DEFAULT_TASKS)).split(",") if x],
        bid_msats=bid,
        assigned=assigned,
        run_id=run_id,
        sha256=sha,
        size=size,
        text=text,
        chunk_ids=chunk_ids,
        created_at=ev.created_at,
        submitted_ms=submitted_ms,
        retry_of=retry_of,
        check_of=check_of,
    )


def reassemble(request: JobRequest, chunks: Sequence[NostrEvent]) -> str:
    """Rebuild a chunked input and check it against the request's declared size and sha256.

    Hostile by construction: ~1 KB of chunks can inflate to gigabytes, so the output is bounded
    while decompressing (never more than the declared size + 1 byte is produced), and the cheap
    checks (chunk count, declared size, chunk bookkeeping) run before any decompression.
    """
    if len(request.chunk_ids) > max_chunks(request.size):
        raise InvalidEvent("too_many_chunks", str(len(request.chunk_ids)))
    if request.size > MAX_INPUT_BYTES:
        raise InvalidEvent("too_large")
    by_id = {c.id: c for c in chunks}
    parts: list[str] = []
    for idx, cid in enumerate(request.chunk_ids):
        ev = by_id.get(cid)
        if ev is None:
            raise InvalidEvent("missing_chunk", cid)
        if ev.pubkey != request.buyer:
            raise InvalidEvent("chunk_mismatch", cid)
        chunk = decode_untrusted(_chunk_decoder, ev.content, "malformed_chunk", InvalidEvent)
        if (
            chunk.index != idx
            or chunk.total != len(request.chunk_ids)
            or chunk.sha256 != request.sha256
            or len(chunk.data) > CHUNK_DATA_BYTES
        ):
            raise InvalidEvent("chunk_mismatch", cid)
        parts.append(chunk.data)
    raw = _inflate_bounded("".join(parts), request.size)
    if len(raw) != request.size:
        raise InvalidEvent("size_mismatch", f"{len(raw)} != {request.size}")
    if sha256_hex(raw) != request.sha256:
        raise InvalidEvent("hash_mismatch")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise InvalidEvent("not_utf8") from exc


def _inflate_bounded(packed: str, declared: int) -> bytes:
    """zlib-inflate base64 `packed`, producing at most `declared` + 1 bytes (too_large beyond)."""
    limit = min(declared, MAX_INPUT_BYTES)
    try:
        data = base64.b64decode(packed, validate=True)
    except ValueError as exc:  # binascii.Error
        raise InvalidEvent("bad_chunk_data", str(exc)[:100]) from exc
    d = zlib.decompressobj()
    out = bytearray()
    while not d.eof:
        # max_length bounds each step's output; what is not consumed waits in unconsumed_tail.
        try:
            step = d.decompress(data, min(_INFLATE_STEP, limit + 1 - len(out)))
        except zlib.error as exc:
            raise InvalidEvent("bad_chunk_data", str(exc)[:100]) from exc
        out += step
        if len(out) > limit:
            raise InvalidEvent("too_large")
        data = d.unconsumed_tail
        if not step and not data:
            break  # the input ran out before the stream ended
    if not d.eof:
        raise InvalidEvent("bad_chunk_data", "truncated zlib stream")
    return bytes(out)


def build_run_root(keys: NostrKeys, root: RunRoot) -> NostrEvent:
    """The run's root event: a 5931 every subtask tags, marked so nodes never execute it."""
    return sign_event(
        keys,
        kinds.JOB_REQUEST,
        _json.encode(root).decode(),
        [["i", root.repo, "url"], ["param", "snapshot", root.snapshot_sha256], [ROOT_TAG, str(root.files)]],
    )


def parse_run_root(ev: NostrEvent) -> RunRoot:
    return decode_untrusted(_root_decoder, ev.content, "malformed_root", InvalidEvent)


# --- feedback -----------------------------------------------------------------------------


def build_feedback(
    keys: NostrKeys,
    *,
    job_id: str,
    buyer: str,
    status: FeedbackStatus,
    error: ErrorCode | None = None,
    message: str = "",
    amount_msats: int = 0,
    extra_tags: Sequence[list[str]] = (),
    at_ms: int | None = None,
) -> NostrEvent:
    """A 7000 feedback; `at_ms` (default now, by the node's clock) is when what it reports happened."""
    status_tag = ["status", status.value, message] if message else ["status", status.value]
    tags = [status_tag, ["e", job_id], ["p", buyer], ["at_ms", str(now_ms() if at_ms is None else at_ms)]]
    if error is not None:
        tags.append(["error", error.value])
    if amount_msats:
        tags.append(["amount", str(amount_msats)])
    tags.extend(list(t) for t in extra_tags)
    return sign_event(keys, kinds.JOB_FEEDBACK, "", tags)


def parse_feedback(ev: NostrEvent) -> Feedback:
    if ev.kind != kinds.JOB_FEEDBACK:
        raise InvalidEvent("wrong_kind")
    st = ev.tag("status")
    job = ev.tag_value("e")
    if st is None or len(st) < 2 or not job:
        raise InvalidEvent("malformed_feedback")
    try:
        status = FeedbackStatus(st[1])
    except ValueError as exc:
        raise InvalidEvent("bad_status", st[1]) from exc
    err_raw = ev.tag_value("error")
    error = None
    if err_raw:
        try:
            error = ErrorCode(err_raw)
        except ValueError:
            error = ErrorCode.EXEC_ERROR
    return Feedback(
        job_id=job,
        node=ev.pubkey,
        status=status,
        error=error,
        message=st[2] if len(st) > 2 else "",
        amount_msats=_int(ev.tag_value("amount", "0") or "0", "bad_amount"),
        at_ms=_int(ev.tag_value("at_ms", "0") or "0", "bad_timestamp"),
    )


# --- results ------------------------------------------------------------------------------


RESULT_CONTENT_LIMIT = 56 * 1024  # leaves room for tags under the relay's 64 KiB event cap
RESULT_DECOMPRESSED_LIMIT = 16 * 1024 * 1024
COMPRESSED = "zlib+base64"


class ResultTooLarge(Exception):
    pass


RESULT_TAG_BYTES = 2 * ENVELOPE_BYTES  # the result's own tags and envelope, without part tags
PART_TAG_BYTES = 80  # one ["part", id] tag


def encode_result_content(result: FileResult, limit: int = RESULT_CONTENT_LIMIT) -> tuple[str, str | None]:
    """(content, encoding): plain JSON when it fits in `limit` bytes once escaped into the
    event (every quote doubles), else compressed (any size)."""
    raw = _json.encode(result)
    if len(raw) <= limit and len(_json.encode(raw.decode())) - 2 <= limit:
        return raw.decode(), None
    return base64.b64encode(zlib.compress(raw, 9)).decode(), COMPRESSED


def decode_result_content(content: str, encoding: str | None) -> FileResult:
    if encoding is None:
        return decode_untrusted(_result_decoder, content, "bad_payload", InvalidEvent)
    if encoding != COMPRESSED:
        raise InvalidEvent("bad_encoding", encoding)
    try:
        d = zlib.decompressobj()
        raw = d.decompress(base64.b64decode(content, validate=True), RESULT_DECOMPRESSED_LIMIT)
    except (ValueError, zlib.error) as exc:
        raise InvalidEvent("bad_payload", str(exc)) from exc
    if d.unconsumed_tail:
        raise InvalidEvent("too_large")
    return decode_untrusted(_result_decoder, raw, "bad_payload", InvalidEvent)


PART_TAG = "part"
MAX_RESULT_PARTS = 64


def build_result(
    keys: NostrKeys,
    *,
    request: JobRequest,
    result: FileResult,
    timing: ResultTiming,
    amount_msats: int = 0,
) -> NostrEvent:
    """A result that fits in one event (ResultTooLarge otherwise: use build_result_with_parts)."""
    ev, parts = build_result_with_parts(
        keys, request=request, result=result, timing=timing, amount_msats=amount_msats
    )
    if parts:
        raise ResultTooLarge(f"the result for {result.path} needs {len(parts)} part events")
    return ev


def build_result_with_parts(
    keys: NostrKeys,
    *,
    request: JobRequest,
    result: FileResult,
    timing: ResultTiming,
    amount_msats: int = 0,
    budget: Budget = DEFAULT_BUDGET,
) -> tuple[NostrEvent, list[NostrEvent]]:
    """The 6931 result, plus `partial` 7000 feedback events carrying its content when it is too big
    for `budget` (the relays' smallest limits).

    `x` is always the sha256 of the whole content; with parts, the result's own content is
    empty and its `part` tags list the part events in order.
    """
    # Plain JSON is escaped once more inside the event: its limit leaves room for that.
    limit = min(RESULT_CONTENT_LIMIT, budget.content, budget.message - RESULT_TAG_BYTES)
    content, encoding = encode_result_content(result, limit)
    digest = sha256_hex(content.encode())
    parts: list[NostrEvent] = []
    if len(content) > limit:
        size = min(CHUNK_DATA_BYTES, budget.content, budget.message - ENVELOPE_BYTES) - CHUNK_OVERHEAD
        max_parts = min(
            MAX_RESULT_PARTS,
            budget.tags - REQUEST_TAGS,
            (budget.message - RESULT_TAG_BYTES) // PART_TAG_BYTES,
        )
        if size < 256:
            raise ResultTooLarge(f"the relays allow {budget.content} bytes of content: too small for parts")
        pieces = [content[i : i + size] for i in range(0, len(content), size)]
        if len(pieces) > max_parts:
            raise ResultTooLarge(f"the result for {result.path} is {len(content)} bytes even compressed")
        for idx, piece in enumerate(pieces):
            parts.append(
                sign_event(
                    keys,
                    kinds.JOB_FEEDBACK,
                    piece,
                    part_tags(request, digest, idx, len(pieces)),
                )
            )
        content = ""
    tags = result_tags(request, digest, timing, amount_msats, parts, encoding)
    return sign_event(keys, kinds.JOB_RESULT, content, tags), parts


def part_tags(request: JobRequest, digest: str, idx: int, count: int, *extra: list[str]) -> list[list[str]]:
    """Tags of result part `idx` of `count` (a partial feedback): public and sealed results share them."""
    return [
        ["status", FeedbackStatus.PARTIAL.value],
        ["e", request.job_id],
        ["p", request.buyer],
        [PART_TAG, digest, str(idx), str(count)],
        *extra,
    ]


def result_tags(
    request: JobRequest,
    digest: str,
    timing: ResultTiming,
    amount_msats: int,
    parts: list[NostrEvent],
    encoding: str | None,
    *extra: list[str],
) -> list[list[str]]:
    """A result's tags: the job, the buyer, the content's digest, the node's timing stamps, the
    price, its parts in order; public and sealed results share them."""
    tags = [
        ["e", request.job_id],
        ["p", request.buyer],
        ["x", digest],
        ["received", str(timing.received_ms)],
        ["started", str(timing.started_ms)],
        ["finished", str(timing.finished_ms)],
        ["published", str(now_ms())],
        ["amount", str(amount_msats)],
        *extra,
    ]
    tags.extend([PART_TAG, p.id] for p in parts)
    if encoding:
        tags.append(["encoding", encoding])
    if request.run_id:
        tags.append(["e", request.run_id, "", "root"])
    return tags


def result_part_ids(ev: NostrEvent) -> list[str]:
    return [t[1] for t in ev.tags if len(t) == 2 and t[0] == PART_TAG]


class ParsedResult(msgspec.Struct):
    job_id: str
    node: str
    result: FileResult
    timing: ResultTiming
    amount_msats: int
    content_sha256: str


def result_job_id(ev: NostrEvent) -> str | None:
    for t in ev.tags:
        if len(t) >= 2 and t[0] == "e" and (len(t) < 4 or not t[3]):
            return t[1]
    return None


def parse_result(ev: NostrEvent, parts: Sequence[NostrEvent] = ()) -> ParsedResult:
    """Check the hash tag against the content (reassembled from `parts` when it has them) and
    decode the payload to the schema."""
    if ev.kind != kinds.JOB_RESULT:
        raise InvalidEvent("wrong_kind")
    job = result_job_id(ev)
    x = ev.tag_value("x")
    if not job or not x:
        raise InvalidEvent("malformed_result")
    content = ev.content
    part_ids = result_part_ids(ev)
    if part_ids:
        by_id = {p.id: p for p in parts}
        pieces = []
        for idx, pid in enumerate(part_ids):
            p = by_id.get(pid)
            tag = p.tag(PART_TAG) if p is not None else None
            if p is None or tag is None or p.pubkey != ev.pubkey or len(tag) < 4 or tag[2] != str(idx):
                raise InvalidEvent("missing_part", pid)
            pieces.append(p.content)
        content = "".join(pieces)
    if sha256_hex(content.encode()) != x:
        raise InvalidEvent("hash_mismatch")
    try:
        payload = decode_result_content(content, ev.tag_value("encoding"))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidEvent("bad_payload", str(exc)) from exc
    timing = ResultTiming(
        received_ms=_int(ev.tag_value("received", "0") or "0", "bad_timestamp"),
        started_ms=_int(ev.tag_value("started", "0") or "0", "bad_timestamp"),
        finished_ms=_int(ev.tag_value("finished", "0") or "0", "bad_timestamp"),
        published_ms=_int(ev.tag_value("published", "0") or "0", "bad_timestamp"),
    )
    return ParsedResult(
        job_id=job,
        node=ev.pubkey,
        result=payload,
        timing=timing,
        amount_msats=_int(ev.tag_value("amount", "0") or "0", "bad_amount"),
        content_sha256=x,
    )


def _int(raw: str, reason: str) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(reason, repr(raw)[:40]) from exc


# --- cancels ------------------------------------------------------------------------------------

CANCEL_TAG = "pylon-cancel"
MAX_CANCEL_REASON = 200


def build_cancel(keys: NostrKeys, *, request_id: str, node: str, reason: str = "") -> NostrEvent:
    """The buyer asks `node` to drop the attempt `request_id` (another attempt won, or it was
    re-issued). A 5931 like the chunks and the run root, marked, `p`-tagged to the node so it
    arrives on the node's own subscription; no `e` tag, so nothing reads it as an attempt. (A
    NIP-09 deletion would make the relay delete the request, and the trail with it.)"""
    return sign_event(
        keys, kinds.JOB_REQUEST, reason[:MAX_CANCEL_REASON], [[CANCEL_TAG, request_id], ["p", node]]
    )


def is_cancel(ev: NostrEvent) -> bool:
    return ev.tag(CANCEL_TAG) is not None


def cancelled_request(ev: NostrEvent) -> str | None:
    """The request id a cancel names, or None for anything else."""
    t = ev.tag(CANCEL_TAG)
    if t is None or len(t) < 2 or len(t[1]) != 64:
        return None
    return t[1]
