"""A job's provenance trail (DESIGN §5 `pylon trail --json`), rebuilt from relay events alone."""

from __future__ import annotations

import msgspec

# The order links appear in a trail, and the roles `verified` needs.
ROLES = ("request", "feedback", "result", "payment", "receipt")


class TrailLink(msgspec.Struct, kw_only=True):
    """One event of the job, with what its checks found.

    `valid` is the event's own verdict (signature, shape, links to the rest of the job);
    `on_path` marks the events that make up the verified chain (the winning attempt, its
    result, the payment of that result and its receipt). An event can be valid and off the
    path, e.g. a late result of an attempt that was re-issued.
    """

    role: str  # request | feedback | result | payment | receipt
    kind: int
    id: str
    pubkey: str
    created_at: int
    valid: bool
    on_path: bool = False
    detail: str = ""
    problems: list[str] = []


class TrailCheck(msgspec.Struct, kw_only=True):
    """A spot check of the job: the same input sent to another node, and whether it agreed.

    `agreed` compares the check's valid result with the job's result on the path in canonical
    form; None when either is missing or they come from different extractor versions."""

    job_id: str  # the check's own request id
    pubkey: str | None  # the node that answered the check
    result_id: str | None
    agreed: bool | None
    detail: str = ""


class Trail(msgspec.Struct, kw_only=True):
    """`verified` is true only when request, feedback, result, payment and receipt are all on
    the path and valid; `verified_through` names the last role up to which the chain holds
    (e.g. "result" for a free job that was never paid)."""

    job_id: str
    verified: bool
    chain: list[TrailLink]
    found: bool = True  # false: the relay has no request with this id
    verified_through: str | None = None
    problems: list[str] = []
    buyer: str | None = None
    provider: str | None = None
    attempts: int = 0
    result_id: str | None = None
    payment_id: str | None = None
    receipt_id: str | None = None
    paid_msats: int | None = None  # what the payment's proofs hold (read offline)
    relays: list[str] = []
    checks: list[TrailCheck] = []  # spot checks of this job by other nodes (off the path)
