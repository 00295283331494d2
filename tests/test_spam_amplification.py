"""Issue 10 item 10: spam from fresh keys costs a node bounded memory and bounded signatures,
and a stranger's receipt costs the buyer one lookup.

Against the old code: the bucket dict grows by one entry per key, every reject (allow-list,
rate limit, untargeted) is answered by a signed feedback event, and a 7376 from any key made
the buyer poll SQLite 30 times while a payment was in flight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from pylon.daemon.buyer.payments import RECEIPT_RETRIES, BuyerPayments
from pylon.daemon.config import NodeConfig
from pylon.daemon.intake_limits import MAX_TRACKED_BUYERS, REJECT_FEEDBACK_BURST, BuyerBuckets
from pylon.daemon.provider import ProviderNode
from pylon.schemas import kinds
from pylon.schemas.events import Redemption

from pylon.keys import NostrKeys
from pylon.nostr import nip60, nip90
from pylon.nostr.event import InvalidEvent, NostrEvent

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    def __init__(self) -> None:
        self.published: list[NostrEvent] = []

    def publish_nowait(self, ev: NostrEvent) -> None:
        self.published.append(ev)


def make_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **cfg: Any) -> tuple[ProviderNode, Recorder]:
    monkeypatch.setenv("PYLON_HOME", str(tmp_path / "home"))
    node = ProviderNode(NodeConfig(name="n0", relays=["ws://127.0.0.1:1"], **cfg))
    rec = Recorder()
    node.pool.publish_nowait = rec.publish_nowait  # type: ignore[method-assign]
    node._send.send_nowait = lambda job: None  # type: ignore[method-assign]  # no workers here
    return node, rec


def request(keys: NostrKeys, node: str | None, i: int = 0) -> NostrEvent:
    text = f"x = {i}\n"
    return nip90.build_request(
        keys,
        path=f"f{i}.py",
        language="python",
        text=text,
        sha256=nip90.sha256_hex(text.encode()),
        size=len(text),
        node=node,
        run_id=None,
    )


def test_rate_buckets_are_bounded_lru() -> None:
    b = BuyerBuckets(rate=1.0, burst=1, max_keys=100)
    for i in range(1000):
        assert b.take(f"k{i}")
    assert len(b) == 100 and b.evicted == 900
    assert not b.take("k999")  # a recent key keeps its (empty) bucket


def test_fresh_key_flood_keeps_node_state_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node, _ = make_node(tmp_path, monkeypatch, rate_per_s=1.0, rate_burst=1)
    for i in range(MAX_TRACKED_BUYERS + 500):
        node._on_request(request(NostrKeys.generate(), node.pubkey, i))
    assert len(node._buckets) <= MAX_TRACKED_BUYERS


def test_unauthenticated_and_unsolicited_rejects_are_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = NostrKeys.generate()
    node, rec = make_node(tmp_path, monkeypatch, allow_buyers=[allowed.pubkey])
    for i in range(50):  # strangers, addressed to us or not: counted, never answered
        node._on_request(request(NostrKeys.generate(), node.pubkey if i % 2 else None, i))
    assert rec.published == []
    assert node.counters.dropped["buyer_not_allowed"] == 50

    node2, rec2 = make_node(tmp_path / "2", monkeypatch, queue_size=0)
    for i in range(20):  # untargeted requests we cannot take: not asked of us, no answer
        node2._on_request(request(NostrKeys.generate(), None, i))
    assert rec2.published == []
    assert node2.counters.dropped["reject_unsolicited_silent"] == 20


def test_signed_rejects_are_capped_node_wide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node, rec = make_node(tmp_path, monkeypatch, queue_size=0)
    for i in range(1000):  # addressed to us, from fresh keys: each would have cost a signature
        node._on_request(request(NostrKeys.generate(), node.pubkey, i))
    assert REJECT_FEEDBACK_BURST <= len(rec.published) <= REJECT_FEEDBACK_BURST + 20
    assert all(ev.kind == kinds.JOB_FEEDBACK for ev in rec.published)
    assert node.counters.dropped["rejected_rate_limited"] == 1000
    assert node.counters.dropped["reject_feedback_suppressed"] >= 1000 - REJECT_FEEDBACK_BURST - 20


class CountingDB:
    def __init__(self) -> None:
        self.fetches = 0

    async def payment_by_id(self, payment_id: str) -> None:
        self.fetches += 1
        return None


async def test_a_strangers_receipt_costs_one_lookup() -> None:
    db = CountingDB()
    pay = BuyerPayments.__new__(BuyerPayments)
    pay.inflight = {"job-in-flight"}
    pay._paying_to = {"job-in-flight": "our-node"}
    pay._db = lambda: db  # type: ignore[method-assign]
    buyer = NostrKeys.generate().pubkey
    stranger = NostrKeys.generate()
    for job in ("job-in-flight", "some-other-job"):
        ev = nip60.build_redemption(
            stranger,
            buyer=buyer,
            redemption=Redemption(direction="in", amount_sats=1, job_id=job, payment_id="p" * 64),
        )
        with anyio.fail_after(RECEIPT_RETRIES * 0.1), pytest.raises(InvalidEvent):
            await pay._on_receipt(ev)
    assert db.fetches <= 1, f"{db.fetches} SQLite lookups for two strangers' receipts"
