"""A lost mint answer loses no money (issue 10, item 8).

A real nutshell mint behind the fault proxy (tests/fault_proxy.py): "cut the reply" lets a
swap request reach the mint, the mint does the swap, and the connection closes before one
byte of the answer comes back. Before the fix the wallet reported `mint_unreachable` and
kept nothing: the change and the payment's proofs were gone. Now every sat is accounted
for afterwards: the buyer's and the node's balances and outstanding payments, checked
against what the mint says about every proof they hold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fault_proxy import FaultProxy, Faults
from mint_support import mint_in
from pylon.schemas.payments import PaymentErrorCode

from pylon.payments import PaymentError, PylonWallet

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FUNDED = 1000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def mint_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    base = tmp_path_factory.mktemp("mint")
    with mint_in(base) as cfg:
        yield cfg.port


@pytest.fixture
def proxy(mint_port: int) -> Iterator[FaultProxy]:
    with FaultProxy.start("127.0.0.1", mint_port, Faults(), max_runtime_s=600) as p:
        yield p


class Pair:
    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp, self.url = tmp, url
        self.buyer: PylonWallet
        self.node: PylonWallet

    async def open(self, who: str) -> PylonWallet:
        w = await PylonWallet.open(self.tmp / who / "wallet", self.url, who, timeout_s=20)
        setattr(self, who, w)
        return w


@pytest.fixture
async def pair(tmp_path: Path, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Pair]:
    monkeypatch.setenv("PYLON_HOME", str(tmp_path))
    p = Pair(tmp_path, f"http://127.0.0.1:{proxy.port}")
    await p.open("buyer")
    await p.open("node")
    try:
        yield p
    finally:
        await p.buyer.aclose()
        await p.node.aclose()


async def mint_says_unspent(w: PylonWallet) -> int:
    """Sats among the proofs `w` holds (spendable and outstanding) that the mint says are unspent."""
    proofs = list(w._w.proofs)
    if not proofs:
        return 0
    states = (await w._w.check_proof_state(proofs)).states
    return sum(p.amount for p, s in zip(proofs, states, strict=True) if s.unspent)


def cut_next(proxy: FaultProxy, what: bytes = b"POST /v1/swap") -> None:
    """Cut the reply of the next request matching `what` (cuts_armed counts up across calls)."""
    proxy.set_faults(Faults(cut_replies_matching=what, cut_max=proxy.cuts_armed + 1))


async def test_cut_swap_answers_are_recovered_and_every_sat_accounted(pair: Pair, proxy: FaultProxy) -> None:
    buyer, node = pair.buyer, pair.node
    assert await buyer.fund(FUNDED) == FUNDED

    cut_next(proxy)
    proofs = await buyer.send_locked(100, node.p2pk_pubkey())  # its answer was cut
    assert proxy.stats()["cuts"] + proxy.stats()["dropped_reply_bytes"] > 0
    assert sum(p["amount"] for p in proofs) == 100
    assert (buyer.balance(), buyer.outstanding_sats(), buyer.pending_swaps()) == (FUNDED - 100, 100, 0)

    cut_next(proxy)
    assert await node.redeem(proofs) == 100  # the node's swap answer was cut too
    assert (node.balance(), node.pending_swaps()) == (100, 0)

    swept = await buyer.sweep_outstanding()
    assert swept.settled_sats == 100 and buyer.outstanding_sats() == 0
    assert buyer.balance() + node.balance() == FUNDED
    assert await mint_says_unspent(buyer) + await mint_says_unspent(node) == FUNDED
    assert proxy.cuts_armed == 2


async def test_unreachable_after_the_swap_settles_later_even_across_a_restart(
    pair: Pair, proxy: FaultProxy
) -> None:
    buyer, node = pair.buyer, pair.node
    await buyer.fund(FUNDED)
    # Every reply cut: the swap happens at the mint, and so does nothing we ask afterwards.
    proxy.set_faults(Faults(cut_replies_matching=b"POST /v1/", cut_max=None))
    with pytest.raises(PaymentError) as err:
        await buyer.send_locked_many([(30, node.p2pk_pubkey()), (20, node.p2pk_pubkey())], locktime_s=3600)
    assert err.value.code == PaymentErrorCode.MINT_UNREACHABLE
    assert buyer.pending_swaps() == 1

    await buyer.aclose()  # a restart: the journal is on disk
    buyer = await pair.open("buyer")
    assert buyer.pending_swaps() == 1
    proxy.set_faults(Faults())
    await buyer.reconcile()  # any operation settles it first
    assert buyer.pending_swaps() == 0
    # The payment never reached the node, so it is outstanding (refundable after its locktime).
    assert (buyer.balance(), buyer.outstanding_sats()) == (FUNDED - 50, 50)
    assert await mint_says_unspent(buyer) == FUNDED


async def test_a_nodes_batch_redeem_whose_answer_is_lost_keeps_the_batch(
    pair: Pair, proxy: FaultProxy
) -> None:
    buyer, node = pair.buyer, pair.node
    await buyer.fund(FUNDED)
    batch = await buyer.send_locked_many(
        [(10, node.p2pk_pubkey()), (25, node.p2pk_pubkey()), (7, node.p2pk_pubkey())]
    )
    proxy.set_faults(Faults(cut_replies_matching=b"POST /v1/", cut_max=None))
    proofs = [p for payment in batch for p in payment]
    with pytest.raises(PaymentError) as err:
        await node.redeem(proofs)
    assert err.value.code == PaymentErrorCode.MINT_UNREACHABLE and node.pending_swaps() == 1
    proxy.set_faults(Faults())
    # The node retries the batch, as its redeemer does: the lost swap is settled first and
    # the retry gets the batch's sats (the proofs are spent, by this very wallet), once.
    assert await node.redeem(proofs) == 42
    assert (node.balance(), node.pending_swaps()) == (42, 0)
    assert await node.redeem(proofs) == 42  # idempotent, not counted twice
    assert node.balance() == 42
    await buyer.sweep_outstanding()
    assert buyer.balance() + node.balance() == FUNDED and buyer.outstanding_sats() == 0
    assert await mint_says_unspent(buyer) + await mint_says_unspent(node) == FUNDED
