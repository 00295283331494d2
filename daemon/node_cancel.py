"""A node honours its buyers' cancels (`nip90.build_cancel`: a marked 5931 `p`-tagged to it).

The buyer sends one when it no longer wants an attempt: a backup copy's twin won, or the attempt
was re-issued because the node looked gone (a frozen laptop that wakes up). Only the request's
own author can cancel it; the job leaves the queue or its execution is cancelled, as an
operator's abort would, and the node says so with `cancelled` error feedback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pylon.logs import get_logger
from pylon.nostr import nip90
from pylon.nostr.event import NostrEvent

if TYPE_CHECKING:
    from pylon.daemon.provider import ProviderNode

log = get_logger("pylon.node")


def honour_cancel(node: ProviderNode, ev: NostrEvent) -> None:
    job_id = nip90.cancelled_request(ev)
    if job_id is None:
        node.counters.dropped["malformed_cancel"] = node.counters.dropped.get("malformed_cancel", 0) + 1
        return
    job = node.running.get(job_id) or node.queued.get(job_id)
    if job is None or job.request.buyer != ev.pubkey:
        return  # finished already, never ours, or not that buyer's to cancel
    if node.abort(job_id, message="cancelled by the buyer"):
        node.counters.dropped["cancelled_by_buyer"] = node.counters.dropped.get("cancelled_by_buyer", 0) + 1
        log.info("job_cancelled_by_buyer", job_id=job_id, reason=ev.content[:60])
