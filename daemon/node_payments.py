"""The node's till: advertise where it takes ecash, redeem nutzaps, publish receipts.

Created by ProviderNode.run when the node has `--mint`. The rules:

- Kind 10019 names our mint and our wallet's P2PK key (not the nostr key).
- A kind 9321 nutzap p-tagged to us is redeemed only if: it decodes, it is for our mint, its
  job is one we completed (or hold for payment), its proofs are P2PK-locked to our key and
  add up to our price. Anything else is dropped and counted (`pylon node status` shows
  `dropped`), never redeemed, so an unknown or underpaid nutzap stays refundable by its sender.
- The mint decides: the payment is recorded (NodeStore.add_payment) and the kind 7376 receipt
  published only after the mint accepted the swap. Spent, forged or wrongly locked proofs and
  a mint that is down are counted as `nutzap_<code>`.
- Nutzaps that arrive together are redeemed in one swap (one mint round trip for many jobs);
  if that swap is refused they are retried one by one, so one bad nutzap spoils no other.
- `--payment-required`: a request is answered `payment-required` with our price and held
  until its nutzap is redeemed, then it runs. Held jobs expire after HOLD_S unpaid.
- Refund by hand (`pylon node refund NAME --job_id J`): the node sends what it redeemed for
  J back as a nutzap locked to the buyer's refund key (carried in the buyer's own lock),
  p-tagged to the buyer and tagged with the original payment; the buyer redeems it.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup
from pylon.daemon.rpc_server import RpcFailure
from pylon.schemas import kinds, rpc
from pylon.schemas.errors import ErrorCode
from pylon.schemas.events import FeedbackStatus, JobRequest, Nutzap, Redemption
from pylon.schemas.payments import ProofInfo

from pylon.batching import take_batch
from pylon.logs import get_logger
from pylon.nostr import nip90
from pylon.nostr.event import InvalidEvent, NostrEvent
from pylon.nostr.filters import Filter
from pylon.nostr.nip60 import build_redemption
from pylon.nostr.nip61 import build_nutzap, build_nutzap_info, mint_key, parse_nutzap
from pylon.nostr.relay_client import PublishError
from pylon.payments import PaymentError, PylonWallet, covers, inspect_proofs, msats_for_sats, p2pk_keys_match

if TYPE_CHECKING:
    from pylon.daemon.provider import ProviderNode

log = get_logger("pylon.node.payments")

HOLD_S = 600.0  # a payment-required job waits this long for its nutzap
MAX_BATCH = 50  # nutzaps redeemed in one swap
# A redeem the mint did not answer is tried again, backing off (~60 s in all): the wallet
# settles the lost swap first (pylon.payments.swap_journal), so the retry gets the sats and
# the receipt goes out. Over a real network it is often only a pooled connection the mint
# closed meanwhile ("disconnected without sending a response").
REDEEM_RETRIES = 6
SEEN_CAP = 50_000
NODE_REFUND_LOCKTIME_S = 7 * 86400  # an unclaimed refund comes back to the node after a week
MAX_FUND_SATS = 10_000_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS nutzaps (
    payment_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, buyer TEXT NOT NULL, amount_sats INTEGER NOT NULL,
    refund_key TEXT, receipt_id TEXT, redeemed REAL NOT NULL, state TEXT NOT NULL,
    refund_proofs TEXT, refund_event_id TEXT
);
CREATE INDEX IF NOT EXISTS nutzaps_job ON nutzaps(job_id);
"""


@dataclass
class _Held:
    request: JobRequest
    since: float


@dataclass
class _Redeem:
    nutzap: Nutzap
    info: ProofInfo
    held: _Held | None
    tries: int = 0


class NodePayments:
    def __init__(self, node: ProviderNode) -> None:
        assert node.config.mint_url
        self.node = node
        self.mint_url = node.config.mint_url
        self.price_msats = node.config.price_msats
        self.wallet: PylonWallet | None = None
        self.held: dict[str, _Held] = {}
        self.redeemed_count = 0
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._send, self._recv = anyio.create_memory_object_stream[_Redeem](max_buffer_size=math.inf)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, tg: TaskGroup) -> None:
        """Open the wallet, make our table, follow nutzaps to us. Before the first announce."""
        self.wallet = await PylonWallet.open(self.node.dir / "wallet", self.mint_url, "node")
        assert self.node.store is not None
        await self.node.store.db.executescript(SCHEMA)
        await self.node.store.db.commit()
        tg.start_soon(self._redeemer)
        tg.start_soon(self._expire_loop)
        # a day back: nutzaps that came while we were down are still ours to redeem
        await self.node.pool.subscribe(
            [Filter(kinds=[kinds.NUTZAP], p=[self.node.pubkey], since=int(time.time()) - 86400)],
            self._on_nutzap,
            sub_id="nutzaps",
        )
        log.info(
            "till_open",
            mint=self.mint_url,
            p2pk=self.wallet.p2pk_pubkey()[:18],
            price_msats=self.price_msats,
            payment_required=self.node.config.payment_required,
            balance_sats=self.wallet.balance(),
        )

    async def publish_nutzap_info(self) -> None:
        assert self.wallet is not None
        ev = build_nutzap_info(
            self.node.keys,
            mints=[self.mint_url],
            relays=self.node.pool.urls,
            p2pk_pubkey=self.wallet.p2pk_pubkey(),
        )
        await self.node.pool.publish(ev, wait_ok=5)

    def _drop(self, reason: str) -> None:
        self.node._drop(reason)

    # --- payment up front -------------------------------------------------------------------

    def hold_for_payment(self, req: JobRequest) -> bool:
        """Called for a request that passed every check: True when it now waits for its nutzap."""
        if not self.node.config.payment_required or self.price_msats <= 0:
            return False
        if req.job_id in self.held:
            return True
        if len(self.held) >= self.node.config.queue_size:
            self.node._reject(req, ErrorCode.RATE_LIMITED, "too many jobs waiting for payment")
            return True
        now = time.time()
        self.held[req.job_id] = _Held(request=req, since=now)
        if self.node.store is not None:
            self.node.store.record(
                rpc.NodeJob(
                    job_id=req.job_id, buyer=req.buyer, path=req.path, state="payment_required", received=now
                )
            )
        self.node._spawn(self._ask_payment(req))
        return True

    async def _ask_payment(self, req: JobRequest) -> None:
        ev = nip90.build_feedback(
            self.node.keys,
            job_id=req.job_id,
            buyer=req.buyer,
            status=FeedbackStatus.PAYMENT_REQUIRED,
            amount_msats=self.price_msats,
            message=f"pay {self.price_msats} msats by nutzap (kind 10019 says where)",
        )
        await self.node.pool.publish(ev)

    async def _expire_loop(self) -> None:
        while True:
            await anyio.sleep(min(30.0, HOLD_S / 4))
            cutoff = time.time() - HOLD_S
            for job_id, h in list(self.held.items()):
                if h.since < cutoff:
                    del self.held[job_id]
                    self._drop("hold_expired_unpaid")
                    if self.node.store is not None:
                        r = h.request
                        self.node.store.record(
                            rpc.NodeJob(
                                job_id=r.job_id,
                                buyer=r.buyer,
                                path=r.path,
                                state="unpaid",
                                received=h.since,
                                error="payment_failed",
                            )
                        )

    # --- nutzaps in -------------------------------------------------------------------------

    async def _on_nutzap(self, ev: NostrEvent) -> None:
        if ev.id in self._seen:
            return
        self._seen[ev.id] = None
        if len(self._seen) > SEEN_CAP:
            self._seen.popitem(last=False)
        try:
            nz = parse_nutzap(ev)
        except InvalidEvent as exc:
            self._drop(f"nutzap_{exc.reason}")
            return
        if nz.node != self.node.pubkey:
            return
        if nz.unit != "sat" or mint_key(nz.mint) != mint_key(self.mint_url):
            self._drop("nutzap_wrong_mint")
            return
        if await self._known_payment(nz.payment_id):
            return  # redeemed before (a relay replays it after a restart)
        held = self.held.get(nz.job_id)
        if held is None and not await self._completed(nz.job_id):
            self._drop("nutzap_unknown_job")
            log.info("nutzap_ignored", reason="unknown_job", job_id=nz.job_id, payment_id=nz.payment_id)
            return
        try:
            info = inspect_proofs(nz.proofs)
        except PaymentError:
            self._drop("nutzap_invalid")
            return
        assert self.wallet is not None
        if info.lock_pubkey is None or not p2pk_keys_match(info.lock_pubkey, self.wallet.p2pk_pubkey()):
            self._drop("nutzap_wrong_lock")
            return
        if not covers(info.amount_sats, self.price_msats):
            self._drop("nutzap_underpaid")
            log.info(
                "nutzap_ignored",
                reason="underpaid",
                job_id=nz.job_id,
                sats=info.amount_sats,
                price_msats=self.price_msats,
            )
            return
        self._send.send_nowait(_Redeem(nutzap=nz, info=info, held=held))

    async def _completed(self, job_id: str) -> bool:
        """A job we finished; one still running gets the time it needs to finish first."""
        deadline = time.monotonic() + self.node.config.exec_timeout_s + 5
        while (job_id in self.node.running or job_id in self.node.queued) and time.monotonic() < deadline:
            await anyio.sleep(0.05)
        store = self.node.store
        assert store is not None
        await store.flush()
        async with store.db.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return row is not None and row[0] == "completed"

    async def _known_payment(self, payment_id: str) -> bool:
        assert self.node.store is not None
        async with self.node.store.db.execute(
            "SELECT 1 FROM nutzaps WHERE payment_id = ?", (payment_id,)
        ) as cur:
            return await cur.fetchone() is not None

    async def _redeemer(self) -> None:
        """One swap for whatever nutzaps are waiting; one by one when that swap is refused."""
        async for first in self._recv:
            batch = take_batch(first, self._recv, MAX_BATCH)
            try:
                await self._redeem_batch(batch)
            except Exception:
                log.exception("redeem_batch_crashed", size=len(batch))

    async def _redeem_batch(self, batch: list[_Redeem]) -> None:
        assert self.wallet is not None
        if len(batch) > 1:
            try:
                await self.wallet.redeem([p for item in batch for p in item.nutzap.proofs])
            except PaymentError as exc:
                if exc.code == "mint_unreachable":
                    self._retry_later(batch, exc)
                    return
            else:
                for item in batch:
                    await self._accepted(item)
                return
        for item in batch:
            try:
                await self.wallet.redeem(item.nutzap.proofs)
            except PaymentError as exc:
                if exc.code == "mint_unreachable":
                    self._retry_later([item], exc)
                else:
                    self._refused(item, exc)
            else:
                await self._accepted(item)

    def _retry_later(self, items: list[_Redeem], exc: PaymentError) -> None:
        again = [it for it in items if it.tries < REDEEM_RETRIES]
        for it in items:
            if it.tries >= REDEEM_RETRIES:
                self._refused(it, exc)
        if not again:
            return
        for it in again:
            it.tries += 1
        delay = min(30.0, 0.5 * 2 ** again[0].tries)
        log.info(
            "nutzap_redeem_retry", nutzaps=len(again), tries=again[0].tries, delay_s=delay, error=str(exc)
        )

        async def later() -> None:
            await anyio.sleep(delay)
            for it in again:
                self._send.send_nowait(it)

        self.node._spawn(later())

    def _refused(self, item: _Redeem, exc: PaymentError) -> None:
        self._drop(f"nutzap_{exc.code.value}")
        log.warning(
            "nutzap_refused", job_id=item.nutzap.job_id, payment_id=item.nutzap.payment_id, error=str(exc)
        )

    async def _accepted(self, item: _Redeem) -> None:
        """The mint took the proofs: write it down, then publish the receipt, then run a held job."""
        nz, info = item.nutzap, item.info
        store = self.node.store
        assert store is not None
        await store.db.execute(
            "INSERT OR IGNORE INTO nutzaps "
            "(payment_id, job_id, buyer, amount_sats, refund_key, redeemed, state) VALUES (?,?,?,?,?,?,?)",
            (
                nz.payment_id,
                nz.job_id,
                nz.buyer,
                info.amount_sats,
                info.refund_pubkeys[0] if info.refund_pubkeys else None,
                time.time(),
                "redeemed",
            ),
        )
        await store.add_payment(nz.job_id, msats_for_sats(info.amount_sats))  # commits both
        self.redeemed_count += 1
        receipt = build_redemption(
            self.node.keys,
            redemption=Redemption(
                direction="in",
                amount_sats=info.amount_sats,
                job_id=nz.job_id,
                payment_id=nz.payment_id,
                mint=self.mint_url,
            ),
            buyer=nz.buyer,
        )
        await self.node.pool.publish(receipt)
        await store.db.execute(
            "UPDATE nutzaps SET receipt_id = ? WHERE payment_id = ?", (receipt.id, nz.payment_id)
        )
        await store.db.commit()
        log.info(
            "nutzap_redeemed",
            job_id=nz.job_id,
            sats=info.amount_sats,
            payment_id=nz.payment_id,
            receipt_id=receipt.id,
            prepaid=item.held is not None,
        )
        if item.held is not None and self.held.pop(nz.job_id, None) is not None:
            self.node._enqueue(item.held.request)

    # --- refund by hand ---------------------------------------------------------------------

    async def refund(self, job_id: str) -> dict[str, Any]:
        store = self.node.store
        assert store is not None and self.wallet is not None
        async with store.db.execute(
            "SELECT payment_id, buyer, amount_sats, refund_key, state, refund_proofs FROM nutzaps "
            "WHERE job_id = ? AND state IN ('redeemed', 'refunding')",
            (job_id,),
        ) as cur:
            rows = list(await cur.fetchall())
        if not rows:
            raise RpcFailure("not_found", f"no redeemed payment for job {job_id} on this node")
        payment_id, buyer, sats, refund_key, state, proofs_json = rows[0]
        if not refund_key:
            raise RpcFailure(
                "refused", "the buyer's payment carried no refund key: there is nowhere to send it"
            )
        if state == "refunding" and proofs_json:
            proofs = json.loads(proofs_json)
        else:
            try:
                proofs = await self.wallet.send_locked(sats, refund_key, locktime_s=NODE_REFUND_LOCKTIME_S)
            except PaymentError as exc:
                raise RpcFailure(ErrorCode.PAYMENT_FAILED.value, str(exc)) from exc
            await store.db.execute(
                "UPDATE nutzaps SET state = 'refunding', refund_proofs = ? WHERE payment_id = ?",
                (json.dumps(proofs), payment_id),
            )
            await store.db.commit()
        ev = build_nutzap(
            self.node.keys,
            job_id=job_id,
            result_id=payment_id,
            node=buyer,
            mint=self.mint_url,
            amount_msats=msats_for_sats(sats),
            proofs=proofs,
            comment="pylon refund",
        )
        try:
            ok = await self.node.pool.publish(ev, wait_ok=10)
        except PublishError:
            ok = False
        if not ok:
            raise RpcFailure(
                ErrorCode.PAYMENT_FAILED.value,
                "the refund nutzap was not published; run the same command again to resend it",
            )
        await store.db.execute(
            "UPDATE nutzaps SET state = 'refunded', refund_event_id = ? WHERE payment_id = ?",
            (ev.id, payment_id),
        )
        await store.add_payment(job_id, -msats_for_sats(sats))
        log.info("job_refunded", job_id=job_id, sats=sats, buyer=buyer[:12], refund_event_id=ev.id)
        return {"job_id": job_id, "refund_event_id": ev.id, "amount_msats": msats_for_sats(sats)}

    # --- RPC --------------------------------------------------------------------------------

    async def balance(self) -> rpc.WalletBalance:
        assert self.wallet is not None
        return rpc.WalletBalance(balance_sats=self.wallet.balance(), mint=self.mint_url)

    async def receipts(self, job_id: str | None) -> dict[str, Any]:
        store = self.node.store
        assert store is not None
        sql = (
            "SELECT payment_id, job_id, buyer, amount_sats, receipt_id, redeemed, state, refund_event_id "
            "FROM nutzaps"
        )
        params: tuple[Any, ...] = ()
        if job_id:
            sql += " WHERE job_id = ?"
            params = (job_id,)
        async with store.db.execute(sql + " ORDER BY redeemed", params) as cur:
            rows = await cur.fetchall()
        return {
            "receipts": [
                {
                    "payment_id": r[0],
                    "job_id": r[1],
                    "buyer": r[2],
                    "amount_msats": msats_for_sats(r[3]),
                    "receipt_id": r[4],
                    "redeemed": r[5],
                    "state": r[6],
                    "refund_event_id": r[7],
                }
                for r in rows
            ]
        }

    async def handle_rpc(self, req: rpc.Request) -> Any:
        match req:
            case rpc.WalletFundReq(amount_sats=amount):
                if not 0 < amount <= MAX_FUND_SATS:
                    raise RpcFailure("bad_input", f"fund between 1 and {MAX_FUND_SATS} sats, not {amount}")
                assert self.wallet is not None
                try:
                    await self.wallet.fund(amount)
                except PaymentError as exc:
                    raise RpcFailure(ErrorCode.PAYMENT_FAILED.value, str(exc)) from exc
                return await self.balance()
            case rpc.RefundReq(job_id=job_id):
                return await self.refund(job_id)
            case rpc.ReceiptsReq(job_id=job_id):
                return await self.receipts(job_id)
        return None


__all__ = ["NodePayments"]
