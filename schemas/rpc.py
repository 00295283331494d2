"""Messages on the daemons' Unix sockets (DESIGN §2, §6).

Framing (pylon.rpc.framing): a 4-byte big-endian length, then one msgpack-encoded `Frame`.
The client's first frame is a `Hello`; the server answers `Welcome` (or `Reply` with an
error and closes). Then each `Call` gets exactly one `Reply` with the same id, possibly
preceded by `Progress` frames for that id; a `Subscribe` call is answered `Reply` and then a
stream of `Push` frames until the connection closes.
"""

from __future__ import annotations

from typing import Any

import msgspec
from pylon.schemas.ask import AskList, AskSummary
from pylon.schemas.events import FileResult, NodeState
from pylon.schemas.provenance import Trail
from pylon.schemas.telemetry import GlobalStats, JobTelemetry, ProviderStats

RPC_VERSION = 1
MAX_FRAME_BYTES = 8 * 1024 * 1024


class RpcErrorCode(msgspec.Struct):
    """Why a call failed; `code` is one of the ErrorCode values or an RPC-level one."""

    code: str  # bad_frame, bad_version, unknown_method, not_found, refused, internal, or an ErrorCode
    message: str


# --- requests (the `op` tag names the method) ----------------------------------------------


class Req(msgspec.Struct, tag_field="op", kw_only=True):
    pass


class StatusReq(Req, tag="status"):
    pass


class StatsReq(Req, tag="stats"):
    provider: str | None = None


class SubscribeReq(Req, tag="subscribe"):
    topics: list[str] = []  # empty = everything this daemon publishes


class PauseReq(Req, tag="pause"):
    pass


class ResumeReq(Req, tag="resume"):
    pass


class DrainReq(Req, tag="drain"):
    pass


class AbortJobReq(Req, tag="abort_job"):
    job_id: str


class NodeJobsReq(Req, tag="node_jobs"):
    limit: int = 50


class SubmitReq(Req, tag="submit"):
    path: str
    text: str
    language: str | None = None
    run_id: str | None = None


class SubmitItem(msgspec.Struct):
    path: str
    text: str
    language: str | None = None


class SubmitManyReq(Req, tag="submit_many"):
    """Many files in one call (scripts, benchmarks): one round trip instead of one per file."""

    items: list[SubmitItem]
    run_id: str | None = None


class JobStatusReq(Req, tag="job_status"):
    job_id: str


class JobResultsReq(Req, tag="job_results"):
    job_id: str


class JobListReq(Req, tag="job_list"):
    run_id: str | None = None
    limit: int = 10_000


class NodesReq(Req, tag="nodes"):
    pass


class RunsReq(Req, tag="runs"):
    pass


class MapReq(Req, tag="map"):
    repo: str
    out_dir: str | None = None
    tokens: int = 2048  # repo_map.md's budget, in cl100k_base tokens
    fresh: bool = False  # map every file again, cached results or not
    include: list[str] = []  # globs over repo-relative paths; empty: every file
    exclude: list[str] = []
    privacy: str = "auto"  # auto | private | public (pylon.repomap.privacy): NIP-44 encrypted jobs


class AskReq(Req, tag="ask"):
    # Defaults only so every request builds from its name; an empty one is refused (bad_input).
    run_or_dir: str = ""  # a map's output directory (or its repo_map.json), or a map run's id
    question: str = ""
    fanout: int = 8
    depth: int = 2
    budget_sats: int | None = None
    out_dir: str | None = None
    privacy: str = "auto"  # auto | private | public: auto follows the map (private_runs, local path)


class AsksReq(Req, tag="asks"):
    pass


class PayReq(Req, tag="pay"):
    job_id: str


class RefundReq(Req, tag="refund"):
    job_id: str


class CancelReq(Req, tag="cancel"):
    job_id: str | None = None
    run_id: str | None = None


class StopAllReq(Req, tag="stop_all"):
    pass


class BanReq(Req, tag="ban"):
    pubkey: str
    banned: bool = True


class TrailReq(Req, tag="trail"):
    job_id: str


class ReceiptsReq(Req, tag="receipts"):
    job_id: str | None = None
    provider: str | None = None


class WalletBalanceReq(Req, tag="wallet_balance"):
    pass


class WalletFundReq(Req, tag="wallet_fund"):
    amount_sats: int


Request = (
    StatusReq
    | StatsReq
    | SubscribeReq
    | PauseReq
    | ResumeReq
    | DrainReq
    | AbortJobReq
    | NodeJobsReq
    | SubmitReq
    | SubmitManyReq
    | JobStatusReq
    | JobResultsReq
    | JobListReq
    | NodesReq
    | RunsReq
    | MapReq
    | AskReq
    | AsksReq
    | PayReq
    | RefundReq
    | CancelReq
    | StopAllReq
    | BanReq
    | TrailReq
    | ReceiptsReq
    | WalletBalanceReq
    | WalletFundReq
)


# --- frames ---------------------------------------------------------------------------------


class Frame(msgspec.Struct, tag_field="t", kw_only=True):
    pass


class Hello(Frame, tag="hello"):
    version: int
    client: str = ""


class Welcome(Frame, tag="welcome"):
    version: int
    daemon: str  # "node" | "buyer"
    name: str
    pubkey: str


class Call(Frame, tag="call"):
    id: int
    req: Request


class Reply(Frame, tag="reply"):
    id: int
    ok: bool
    result: Any = None  # one of the result Structs below, as plain data
    error: RpcErrorCode | None = None


class Progress(Frame, tag="progress"):
    id: int
    data: Any


class Push(Frame, tag="push"):
    topic: str  # "job", "node", "run", "stats", "log", "node_state"
    data: Any


AnyFrame = Hello | Welcome | Call | Reply | Progress | Push


# --- results --------------------------------------------------------------------------------


class NodeStatus(msgspec.Struct, kw_only=True):
    name: str
    pubkey: str
    state: NodeState
    running: int
    queued: int
    completed: int
    failed: int
    executor: str = "deterministic"
    models: list[str] = []
    max_concurrency: int = 1
    uptime_s: float = 0.0
    earned_msats: int = 0
    failures: dict[str, int] = {}
    dropped: dict[str, int] = {}
    loop_stalls: int = 0  # times the event loop woke >100 ms late (pylon.loopwatch)
    loop_max_ms: float = 0.0  # the worst of them
    warming: bool = False  # still starting its parse workers (it takes jobs meanwhile)
    acks_sent: int = 0  # `processing` feedback published (jobs not answered within ACK_DEFER_S)
    acks_spared: int = 0  # jobs whose result or error went out first, their own acknowledgement


class NodeJob(msgspec.Struct, kw_only=True):
    job_id: str
    buyer: str
    path: str
    state: str  # queued, running, completed, failed, aborted
    received: float
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    paid_msats: int = 0


class InFlight(msgspec.Struct, kw_only=True):
    """The buyer's in-flight window as it stands."""

    out: int  # jobs out now
    limit: int | None  # jobs it lets out at once; None: no cap (slow jobs, or nothing queues)
    held: int = 0  # submissions that waited for it
    cuts: int = 0  # rounds of results that showed a queue and cut it
    probes: int = 0  # rounds measured with few jobs out, to find the bare round trip again


class BuyerStatus(msgspec.Struct, kw_only=True):
    name: str
    pubkey: str
    relays: list[str]
    online_nodes: int
    outstanding: int
    completed: int
    failed: int
    stopped: bool = False
    banned: list[str] = []
    dropped: dict[str, int] = {}
    loop_stalls: int = 0  # times the event loop woke >100 ms late (pylon.loopwatch)
    loop_max_ms: float = 0.0  # the worst of them
    # sent, won, lost: straggler copies; moved: queued jobs moved to a node that finishes sooner
    backups: dict[str, int] = {}
    slots_declined: int = 0  # free slots left for a node the forecast has finishing sooner
    reissued: dict[str, int] = {}  # attempts re-issued, by why the last one was lost
    window: InFlight | None = None  # the market-wide cap on jobs out (pylon.daemon.buyer.window)


class NodeInfo(msgspec.Struct, kw_only=True):
    pubkey: str
    name: str
    state: str
    online: bool
    queue_depth: int
    running: int
    completed: int
    failed: int
    last_heartbeat: float | None
    executors: list[str] = []
    models: list[str] = []
    price_msats: int = 0
    assigned_now: int = 0
    slots: int = 0  # what this buyer fills on it: declared, capped, earned by delivering
    banned: bool = False
    checks_passed: int = 0
    checks_failed: int = 0
    clock_offset_s: float | None = None  # node clock minus buyer clock, from its heartbeats
    service_s: float | None = None  # how long our jobs take there, on our clock (smoothed)


class SubmitResult(msgspec.Struct):
    job_id: str


class SubmitError(msgspec.Struct):
    index: int
    code: str
    message: str


class SubmitManyResult(msgspec.Struct):
    job_ids: list[str | None]  # None where that item was refused (see errors)
    errors: list[SubmitError] = []


class JobListItem(msgspec.Struct, kw_only=True):
    job_id: str
    run_id: str | None
    state: str
    provider_pubkey: str | None
    paid: bool
    path: str = ""
    error: str | None = None
    end_to_end: float | None = None


class JobList(msgspec.Struct):
    jobs: list[JobListItem]


class RunInfo(msgspec.Struct, kw_only=True):
    run_id: str
    repo: str
    files: int
    completed: int
    failed: int
    started: float
    finished: float | None = None
    out_dir: str | None = None


class CheckSummary(msgspec.Struct, kw_only=True):
    """What spot-checking a run did and cost (checks are jobs of their own, paid like any)."""

    checked: int = 0  # files whose result was computed again elsewhere
    agreed: int = 0  # of those, files no check disagreed on
    disagreed: int = 0  # files where some node disagreed (a third node was asked to settle it)
    check_jobs: int = 0  # second and third opinions sent out
    cost_msats: int = 0  # what the answered check jobs cost at the bid
    overturned: int = 0  # files whose first result lost the vote: the majority's result is in the map
    # Files whose result a check disagreed with and no majority settled (no third node was free,
    # or all three differed): the map keeps the first result, marked "disputed" in repo_map.json.
    disputed: list[str] = msgspec.field(default_factory=list)


class MapSummary(msgspec.Struct, kw_only=True):
    run_id: str
    files: int
    completed: int
    failed: int
    providers: int
    wall_s: float
    artifacts: dict[str, str]
    skipped: dict[str, int] = {}
    private: bool = False  # the run's jobs were NIP-44 encrypted to their nodes
    checks: CheckSummary | None = None
    sent: int = 0  # jobs sent to the swarm in this run
    cached: int = 0  # files whose result an earlier run had (same bytes, same executor)


class MapProgress(msgspec.Struct, kw_only=True):
    run_id: str
    files: int
    completed: int
    failed: int


class PayResult(msgspec.Struct):
    job_id: str
    payment_event_id: str
    amount_msats: int


class WalletBalance(msgspec.Struct):
    balance_sats: int
    mint: str


class NodeList(msgspec.Struct):
    nodes: list[NodeInfo]


class RunList(msgspec.Struct):
    runs: list[RunInfo]


class CancelResult(msgspec.Struct):
    cancelled: int


class StopAllResult(msgspec.Struct):
    cancelled: int
    stopped: bool


class BanResult(msgspec.Struct):
    pubkey: str
    banned: bool


class Receipt(msgspec.Struct, kw_only=True):
    receipt_id: str
    job_id: str
    payment_id: str | None
    provider: str
    amount_msats: int
    created_at: int


class ReceiptList(msgspec.Struct):
    receipts: list[Receipt]


class RefundResult(msgspec.Struct, kw_only=True):
    job_id: str
    payment_event_id: str
    refunded_sats: int
    balance_sats: int
    already_refunded: bool


# The buyer's reply to each request it answers: the route table (pylon.daemon.buyer.routes)
# returns these and the client (pylon.rpc.buyer_client) decodes into them. `stats` answers
# ProviderStats when a provider is named, else GlobalStats.
BUYER_REPLIES: dict[type, Any] = {
    StatusReq: BuyerStatus,
    SubmitReq: SubmitResult,
    SubmitManyReq: SubmitManyResult,
    JobStatusReq: JobTelemetry,
    JobResultsReq: FileResult,
    JobListReq: JobList,
    NodesReq: NodeList,
    StatsReq: GlobalStats | ProviderStats,
    CancelReq: CancelResult,
    StopAllReq: StopAllResult,
    BanReq: BanResult,
    RunsReq: RunList,
    MapReq: MapSummary,
    AskReq: AskSummary,
    AsksReq: AskList,
    TrailReq: Trail,
    PayReq: PayResult,
    RefundReq: RefundResult,
    ReceiptsReq: ReceiptList,
    WalletBalanceReq: WalletBalance,
    WalletFundReq: WalletBalance,
}


__all__ = [
    "BUYER_REPLIES",
    "MAX_FRAME_BYTES",
    "RPC_VERSION",
    "AnyFrame",
    "BanResult",
    "BuyerStatus",
    "Call",
    "CancelResult",
    "FileResult",
    "GlobalStats",
    "Hello",
    "InFlight",
    "JobList",
    "JobListItem",
    "JobTelemetry",
    "MapProgress",
    "MapSummary",
    "NodeInfo",
    "NodeJob",
    "NodeList",
    "NodeStatus",
    "PayResult",
    "Progress",
    "ProviderStats",
    "Push",
    "Receipt",
    "ReceiptList",
    "RefundResult",
    "Reply",
    "Request",
    "RpcErrorCode",
    "RunInfo",
    "RunList",
    "StopAllResult",
    "SubmitResult",
    "WalletBalance",
    "Welcome",
]
