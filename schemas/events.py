"""Payloads of the Nostr events Pylon publishes (DESIGN §3).

Tags carry what relays must be able to filter on; the JSON content carries the rest. Each
Struct here is what one event's content decodes to, or (for requests and feedback, whose
NIP-90 shape is mostly tags) the parsed view of the whole event.
"""

from __future__ import annotations

import enum

import msgspec
from pylon.schemas.ask import AskAnswer
from pylon.schemas.errors import ErrorCode

PROTOCOL_VERSION = 1
DEFAULT_TASKS = ("symbols", "imports", "summary")
# The LLM reduce step of a map: the input is the map's facts (markdown), the result's summary the narrative.
REDUCE_TASK = "reduce"


class NodeState(enum.StrEnum):
    ONLINE = "online"
    PAUSED = "paused"
    DRAINING = "draining"


class FeedbackStatus(enum.StrEnum):
    PROCESSING = "processing"
    ERROR = "error"
    PAYMENT_REQUIRED = "payment-required"
    SUCCESS = "success"
    PARTIAL = "partial"  # also carries one part of a result too big for one event


class Announce(msgspec.Struct, forbid_unknown_fields=False):
    """Content of a kind-31990 announce."""

    name: str
    version: str
    executors: list[str]
    models: list[str] = []
    max_concurrency: int = 1
    price_msats: int = 0
    protocol: int = PROTOCOL_VERSION


class Heartbeat(msgspec.Struct):
    """Content of a kind-11998 heartbeat."""

    state: NodeState
    queue_depth: int
    running: int
    completed: int
    failed: int
    uptime_s: float
    interval_s: float
    name: str = ""
    sent_ms: int = 0  # the node's clock when it sent this: lets the buyer measure the offset
    slots: int = 0  # jobs it runs at once now (0: see its announce's max_concurrency)


class Symbol(msgspec.Struct):
    name: str
    kind: str  # class, function, method, struct, interface, enum, type, const, variable, module, ...
    line: int  # 1-based
    signature: str = ""
    parent: str = ""


class FileResult(msgspec.Struct):
    """Content of a kind-6931 result: what a node learned about one file."""

    path: str
    language: str
    lines: int
    symbols: list[Symbol]
    imports: list[str]
    summary: str
    executor: str = "deterministic"
    model: str = ""
    input_sha256: str = ""
    bytes_in: int = 0
    # What produced it, precisely enough to compare two results (pylon.executors.version).
    executor_version: str = ""
    ask: AskAnswer | None = None  # the answer to an `ask` / `ask_reduce` sub-query (issue 13)


class InputChunk(msgspec.Struct):
    """Content of one chunk event of an input that does not fit inline (zlib, then base64)."""

    sha256: str  # of the whole, uncompressed file
    index: int
    total: int
    data: str


class JobRequest(msgspec.Struct):
    """Parsed view of a kind-5931 request event."""

    job_id: str
    buyer: str
    path: str
    language: str
    tasks: list[str]
    bid_msats: int
    assigned: str | None  # node pubkey from the p tag; None = untargeted
    run_id: str | None  # the run's root event id (e tag, marker root)
    sha256: str
    size: int
    text: str | None = None  # inline input
    chunk_ids: list[str] = []  # input type "event": ids of InputChunk events, in order
    created_at: int = 0
    submitted_ms: int = 0
    retry_of: str | None = None  # the job this attempt re-issues (its first request's id)
    encrypted: bool = False  # NIP-44 private job: input sealed to the node, result to the buyer
    check_of: str | None = None  # the job whose result this one re-computes (a spot check)


class Feedback(msgspec.Struct):
    """Parsed view of a kind-7000 feedback event."""

    job_id: str
    node: str
    status: FeedbackStatus
    error: ErrorCode | None = None
    message: str = ""
    amount_msats: int = 0
    at_ms: int = 0


class ResultTiming(msgspec.Struct):
    """Timing tags of a result: wall clock in milliseconds at the node."""

    received_ms: int
    started_ms: int
    finished_ms: int
    published_ms: int = 0


class RunRoot(msgspec.Struct):
    """Content of a run's root 5931 event: the repo and its snapshot."""

    repo: str
    snapshot_sha256: str
    files: int
    skipped: dict[str, int] = {}
    commit: str = ""


class NutzapInfo(msgspec.Struct):
    """Parsed kind-10019: where a node accepts nutzaps."""

    mints: list[str]
    relays: list[str]
    p2pk_pubkey: str


class Nutzap(msgspec.Struct):
    """Parsed kind-9321 payment."""

    payment_id: str
    job_id: str
    result_id: str
    node: str
    buyer: str
    mint: str
    amount_msats: int
    proofs: list[dict]
    unit: str = "sat"


class Redemption(msgspec.Struct):
    """Content of a kind-7376 receipt (NIP-60 spending history, direction in)."""

    direction: str  # "in"
    amount_sats: int
    job_id: str
    payment_id: str
    mint: str = ""
