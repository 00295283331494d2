"""The buyer's payer: pays verified results with NIP-61 nutzaps and keeps the books.

Wired into the buyer by `attach_payments` (a no-op without `--mint`): it listens to the
scheduler's events (`ResultAccepted`, `PaymentAsked`), keeps its books through the buyer's
store and answers the wallet's RPC routes. The rules:

- A job is paid at most once. `auto` pays each verified result in the background: results
  that queue up while one swap is at the mint are locked together in the next swap (one mint
  round trip for up to MAX_BATCH payments), then each gets its own nutzap; the result path
  never waits on the mint. `manual` waits for `pylon pay`.
- The amount is the node's price from the result's `amount` tag, rounded up to whole sats;
  it must be within the buyer's bid (a bid of 0 pays nothing).
- Every payment is P2PK-locked to the key from the node's kind 10019, with a locktime and
  the buyer's own refund key: unredeemed money comes back (`pylon refund`, or the periodic
  refund pass once the lock has expired).
- The proofs are written to SQLite before the nutzap is published, and the job is marked
  paid only once the relay accepted the nutzap; a failed publish is retried with the same
  proofs by the next `pylon pay`, so no ecash is ever minted twice for one job.
- The node's kind 7376 redemption is the receipt; it is checked against our payments.
- A node that answers `payment-required` is paid up front (same lock and refund path).
- A node may hand money back (`pylon node refund`): a nutzap locked to our refund key,
  p-tagged to us; it is redeemed here and the payment marked refunded.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup
from pylon.daemon.buyer.scheduler import PaymentAsked, ResultAccepted, SchedulerEvent
from pylon.daemon.rpc_server import CallContext, RpcFailure
from pylon.schemas import kinds, rpc
from pylon.schemas.errors import ErrorCode
from pylon.schemas.events import NutzapInfo
from pylon.schemas.telemetry import JobState, JobTelemetry

from pylon.batching import take_batch
from pylon.logs import get_logger
from pylon.nostr import nip90
from pylon.nostr.event import InvalidEvent, NostrEvent
from pylon.nostr.filters import Filter
from pylon.nostr.nip60 import parse_redemption
from pylon.nostr.nip61 import build_nutzap, mint_key, parse_nutzap, parse_nutzap_info
from pylon.nostr.relay_client import PublishError
from pylon.payments import PaymentError, PylonWallet, inspect_proofs, msats_for_sats, sats_for_msats

if TYPE_CHECKING:
    from pylon.daemon.buyer.daemon import BuyerDaemon
    from pylon.daemon.buyer.store import BuyerStore

log = get_logger("pylon.buyer.payments")

MAX_BATCH = 50  # payments locked in one swap with the mint
AUTO_TRIES = 4  # automatic attempts at one payment before it is left to `pylon pay`
AUTO_RETRY_S = 5.0  # × the attempt number
PUBLISH_WAIT_S = 10.0
REFUND_PASS_S = 60.0  # how often expired, unredeemed payments are taken back
MAX_FUND_SATS = 10_000_000
WALLET_OPEN_WAIT_S = 30.0
RECEIPT_RETRIES = 30  # × 0.1 s
NODE_REFUND = "refunded_by_node"
# payments.state: created (proofs made, nutzap not yet accepted by a relay) → sent → redeemed
# (the node's receipt came) | refunded (we took it back) | refunded_by_node
UNSETTLED = ("created", "sent")


@dataclass
class PayTarget:
    """What one payment is for: the buyer's job, the attempt (request) the node knows, the result."""

    job_id: str
    request_id: str
    result_id: str
    provider: str
    amount_msats: int
    prepay: bool = False
    tries: int = 0  # automatic attempts so far


@dataclass
class _Item:
    """A payment on its way: checked, then its proofs (new or kept from a failed publish)."""

    target: PayTarget
    sats: int
    key: str | None = None
    proofs: list[dict] | None = None


class BuyerPayments:
    def __init__(self, buyer: BuyerDaemon) -> None:
        assert buyer.config.mint_url
        self.buyer = buyer
        self.config = buyer.config
        self.mint_url = buyer.config.mint_url
        self.wallet: PylonWallet | None = None
        self.node_info: dict[str, tuple[int, NutzapInfo]] = {}
        self.stopped = False
        self.inflight: set[str] = set()
        # job id → the node an in-flight payment goes to: only that node's receipt may make
        # us wait for our own record of the payment (anyone else's costs one lookup at most)
        self._paying_to: dict[str, str] = {}
        # payment-required answers waiting for `pylon pay` (manual policy): job_id → target
        self.awaiting: dict[str, PayTarget] = {}
        self.failures: dict[str, int] = {}
        self.paid_count = 0
        self._tg: TaskGroup | None = None
        self._send, self._recv = anyio.create_memory_object_stream[PayTarget](max_buffer_size=math.inf)
        self._wallet_ready = anyio.Event()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, tg: TaskGroup) -> None:
        self._tg = tg
        self.wallet = await PylonWallet.open(self.buyer.dir / "wallet", self.mint_url, "buyer")
        self._wallet_ready.set()
        await self._db().reconcile_paid()
        since = int(time.time()) - 7 * 86400
        await self.buyer.pool.subscribe(
            [Filter(kinds=[kinds.REDEMPTION, kinds.NUTZAP], p=[self.buyer.pubkey], since=since)],
            self._on_payment_event,
            sub_id="payments",
        )
        tg.start_soon(self._batcher)
        tg.start_soon(self._refund_loop)
        log.info(
            "payer_started",
            mint=self.mint_url,
            policy=self.config.pay_policy,
            balance_sats=self.wallet.balance(),
            bid_msats=self.config.bid_msats,
        )

    def stop(self) -> None:
        """StopAll: no more payments, automatic or by hand, until the buyer restarts."""
        self.stopped = True
        self.awaiting.clear()

    def _db(self) -> BuyerStore:
        assert self.buyer.store is not None
        return self.buyer.store

    def _count(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1
        self.buyer.scheduler.dropped[reason] += 1

    def on_scheduler_event(self, ev: SchedulerEvent) -> None:
        if isinstance(ev, ResultAccepted):
            self.on_verified_result(ev.tele, ev.event)
        elif isinstance(ev, PaymentAsked):
            self.on_payment_required(ev)

    # --- what nodes told us -----------------------------------------------------------------

    def on_nutzap_info(self, ev: NostrEvent) -> None:
        info = parse_nutzap_info(ev)  # InvalidEvent is counted by the caller
        have = self.node_info.get(ev.pubkey)
        if have is None or ev.created_at >= have[0]:
            self.node_info[ev.pubkey] = (ev.created_at, info)

    def _lock_key(self, provider: str) -> str:
        """The node's P2PK key at our mint, or a clear refusal."""
        entry = self.node_info.get(provider)
        if entry is None:
            raise RpcFailure(
                ErrorCode.PAYMENT_FAILED.value,
                f"node {provider[:12]}… has published no nutzap info (kind 10019): it takes no payments",
            )
        info = entry[1]
        if mint_key(self.mint_url) not in {mint_key(m) for m in info.mints}:
            raise RpcFailure(
                ErrorCode.PAYMENT_FAILED.value,
                f"node {provider[:12]}… accepts ecash from {', '.join(info.mints)}, not {self.mint_url}",
            )
        return info.p2pk_pubkey

    # --- hooks from the buyer ---------------------------------------------------------------

    def on_verified_result(self, tele: JobTelemetry, ev: NostrEvent) -> None:
        """A result verified and its job completed (sync: the payment runs in the batcher)."""
        # paid up front (or that payment is on its way): the prepayment covers this result
        if self.stopped or tele.amount_msats <= 0 or tele.is_paid or tele.job_id in self.inflight:
            return
        checks = self.buyer.spot_checks
        if checks is not None and not checks.may_pay(ev.pubkey):
            self._count("unpaid_distrusted")  # failed too many spot checks
            return
        if self.config.pay_policy == "auto":
            request_id = nip90.result_job_id(ev) or tele.job_id
            self._send.send_nowait(
                PayTarget(
                    job_id=tele.job_id,
                    request_id=request_id,
                    result_id=ev.id,
                    provider=ev.pubkey,
                    amount_msats=tele.amount_msats,
                )
            )

    def on_payment_required(self, asked: PaymentAsked) -> None:
        """The node will run the job once paid: pay up front (auto) or wait for `pylon pay`."""
        if self.stopped:
            return
        job, att, fb = asked.job, asked.attempt, asked.feedback
        # the node answered, so it is alive: give the payment time before a re-issue
        self.buyer.scheduler.hold(job, self.config.result_timeout_s)
        target = PayTarget(
            job_id=job.tele.job_id,
            request_id=att.request_id,
            result_id=att.request_id,
            provider=fb.node,
            amount_msats=fb.amount_msats,
            prepay=True,
        )
        if self.config.pay_policy == "auto":
            self._send.send_nowait(target)
        else:
            self.awaiting[job.tele.job_id] = target
            log.info(
                "payment_required",
                job_id=job.tele.job_id,
                amount_msats=fb.amount_msats,
                hint=f"pylon pay --job_id {job.tele.job_id}",
            )

    # --- paying -----------------------------------------------------------------------------

    async def pay_job(self, job_id: str) -> rpc.PayResult:
        """`pylon pay --job_id`: the one path by hand; every refusal is an RpcFailure."""
        waiting = self.awaiting.get(job_id)
        if waiting is not None:
            job = self.buyer.scheduler.job(job_id)
            current = job.current if job is not None else None
            if current is not None and current.request_id == waiting.request_id and not current.closed:
                return await self.pay(waiting)
            del self.awaiting[job_id]  # cancelled, failed or re-issued since the node asked
        tele = await self.buyer.scheduler.telemetry(job_id)  # not_found for an unknown job
        if tele.state != JobState.COMPLETED or not tele.result_id or not tele.provider_pubkey:
            why = f"state {tele.state.value}" + (f", {tele.error.value}" if tele.error else "")
            raise RpcFailure(
                "refused", f"job {job_id} has no verified result ({why}); only a verified job is paid"
            )
        request_id = await self._db().completed_request_id(job_id, tele.provider_pubkey) or job_id
        return await self.pay(
            PayTarget(
                job_id=job_id,
                request_id=request_id,
                result_id=tele.result_id,
                provider=tele.provider_pubkey,
                amount_msats=tele.amount_msats,
            )
        )

    async def pay(self, t: PayTarget) -> rpc.PayResult:
        """Pay one job now (the path of `pylon pay`); every refusal is an RpcFailure."""
        self._claim(t)
        try:
            item = await self._prepare(t)
            await self._make_proofs([item])
            res = await self._deliver(item)
            await self._db().flush()
            return res
        finally:
            self.inflight.discard(t.job_id)

    def _claim(self, t: PayTarget) -> None:
        if self.stopped:
            raise RpcFailure("refused", "the buyer is stopped (stop-all): it pays nothing until it restarts")
        if t.job_id in self.inflight:
            raise RpcFailure("refused", f"job {t.job_id} is being paid right now")
        self.inflight.add(t.job_id)
        self._paying_to[t.job_id] = t.provider
        if len(self._paying_to) > 10_000:  # settled jobs linger here; keep the newest
            for stale in [j for j in self._paying_to if j not in self.inflight]:
                del self._paying_to[stale]

    async def _batcher(self) -> None:
        """Auto policy: whatever is queued goes out in one swap with the mint, then is published."""
        assert self._tg is not None
        async for first in self._recv:
            batch = take_batch(first, self._recv, MAX_BATCH)
            items: list[_Item] = []
            for t in batch:
                try:
                    self._claim(t)
                except RpcFailure:
                    continue  # stopped, or already on its way
                try:
                    items.append(await self._prepare(t))
                except RpcFailure as exc:
                    self.inflight.discard(t.job_id)
                    self._auto_failed(t, exc)
            if not items:
                continue
            assert self.wallet is not None
            # an empty-ish wallet pays what it can; the rest waits for a retry (or a top-up)
            room, short = self.wallet.balance(), []
            for it in [it for it in items if it.proofs is None]:
                if it.sats > room:
                    short.append(it)
                else:
                    room -= it.sats
            if short:
                items = [it for it in items if it not in short]
                why = RpcFailure(
                    ErrorCode.PAYMENT_FAILED.value,
                    f"insufficient_funds: balance "
                    f"{self.wallet.balance()} sats; fund it with: pylon wallet fund SATS",
                )
                for it in short:
                    self.inflight.discard(it.target.job_id)
                    self._auto_failed(it.target, why)
            try:
                await self._make_proofs(items)
            except RpcFailure as exc:
                for it in items:
                    self.inflight.discard(it.target.job_id)
                    self._auto_failed(it.target, exc)
                continue
            if not items:
                continue
            # publishing waits on the relay: let the next swap start meanwhile
            self._tg.start_soon(self._deliver_all, items)

    async def _deliver_all(self, items: list[_Item]) -> None:
        async def one(it: _Item) -> None:
            try:
                await self._deliver(it)
            except RpcFailure as exc:
                self._auto_failed(it.target, exc)
            finally:
                self.inflight.discard(it.target.job_id)

        async with anyio.create_task_group() as tg:
            for it in items:
                tg.start_soon(one, it)
        await self._db().flush()

    def _auto_failed(self, t: PayTarget, exc: RpcFailure) -> None:
        self._count(f"payment_{exc.code}")
        t.tries += 1
        # a mint or relay that is down, an empty wallet, a node not heard from yet: worth
        # another go later; a refusal (already paid, over the bid) is final
        retry = exc.code == ErrorCode.PAYMENT_FAILED.value and t.tries < AUTO_TRIES and not self.stopped
        log.warning(
            "auto_payment_failed",
            job_id=t.job_id,
            code=exc.code,
            error=exc.message,
            retry_in_s=AUTO_RETRY_S * t.tries if retry else None,
        )
        if retry and self._tg is not None:
            self._tg.start_soon(self._retry_later, t)

    async def _retry_later(self, t: PayTarget) -> None:
        await anyio.sleep(AUTO_RETRY_S * t.tries)
        if not self.stopped:
            self._send.send_nowait(t)

    async def _prepare(self, t: PayTarget) -> _Item:
        """Every check before money moves; a payment made earlier but never published is picked up."""
        row = await self._db().payment_of(t.job_id)
        if row is not None:
            payment_id, state, proofs_json, amount, provider = row
            if state != "created" or proofs_json is None:
                raise RpcFailure("refused", f"job {t.job_id} is already paid ({state}, nutzap {payment_id})")
            # proofs were made but the nutzap never reached a relay: send the same proofs again
            t.provider, t.amount_msats = provider, amount
            return _Item(target=t, sats=amount // 1000, proofs=json.loads(proofs_json))
        if t.amount_msats <= 0:
            raise RpcFailure("refused", f"job {t.job_id} is free: its node asked for no payment")
        if t.prepay:
            job = self.buyer.scheduler.job(t.job_id)
            att = job.current if job is not None else None
            if att is None or att.closed or att.request_id != t.request_id:
                raise RpcFailure("refused", f"job {t.job_id} no longer waits for that node's payment")
        if self.config.bid_msats < t.amount_msats:
            raise RpcFailure(
                "refused",
                f"node asks {t.amount_msats} msats for job {t.job_id}, over the bid of "
                f"{self.config.bid_msats} msats (buyer up --bid)",
            )
        return _Item(target=t, sats=sats_for_msats(t.amount_msats), key=self._lock_key(t.provider))

    async def _make_proofs(self, items: list[_Item]) -> None:
        """Lock the sats for every new item (one swap for all), and write them down before they leave."""
        fresh = [it for it in items if it.proofs is None]
        if not fresh:
            return
        assert self.wallet is not None
        locktime = self.config.refund_locktime_s
        try:
            if len(fresh) == 1:
                it = fresh[0]
                assert it.key is not None
                made = [await self.wallet.send_locked(it.sats, it.key, locktime_s=locktime)]
            else:
                made = await self.wallet.send_locked_many(
                    [(it.sats, it.key or "") for it in fresh], locktime_s=locktime
                )
        except PaymentError as exc:
            hint = "; fund it with: pylon wallet fund SATS" if exc.code == "insufficient_funds" else ""
            raise RpcFailure(ErrorCode.PAYMENT_FAILED.value, f"{exc}{hint}") from exc
        db = self._db()
        now = time.time()
        for it, proofs in zip(fresh, made, strict=True):
            it.proofs = proofs
            db.insert_payment(
                job_id=it.target.job_id,
                provider=it.target.provider,
                amount_msats=msats_for_sats(it.sats),
                paid=now,
                proofs=json.dumps(proofs),
            )
        # durable before the proofs leave this process: a crash now loses no ecash
        await db.flush()

    async def _deliver(self, it: _Item) -> rpc.PayResult:
        """Publish the nutzap; the job counts as paid once a relay accepted it."""
        t = it.target
        assert it.proofs is not None
        paid_msats = msats_for_sats(it.sats)
        ev = build_nutzap(
            self.buyer.keys,
            job_id=t.request_id,
            result_id=t.result_id,
            node=t.provider,
            mint=self.mint_url,
            amount_msats=paid_msats,
            proofs=it.proofs,
            comment="pylon prepayment" if t.prepay else "pylon payment",
        )
        try:
            accepted = await self.buyer.pool.publish(ev, wait_ok=PUBLISH_WAIT_S)
        except PublishError as exc:
            accepted, why = False, str(exc)
        else:
            why = f"no relay acknowledged it within {PUBLISH_WAIT_S:g}s"
        if not accepted:
            raise RpcFailure(
                ErrorCode.PAYMENT_FAILED.value,
                f"the nutzap for job {t.job_id} was not published ({why}); the proofs are kept: "
                f"pylon pay --job_id {t.job_id} sends them again",
            )
        now = time.time()
        self._db().payment_sent(t.job_id, ev.id, now)
        self.awaiting.pop(t.job_id, None)
        await self._mark_paid(t.job_id, ev.id, paid_msats, now)
        self.paid_count += 1
        log.info(
            "job_paid",
            job_id=t.job_id,
            node=t.provider[:12],
            amount_msats=paid_msats,
            payment_id=ev.id,
            prepay=t.prepay,
        )
        return rpc.PayResult(job_id=t.job_id, payment_event_id=ev.id, amount_msats=paid_msats)

    async def _mark_paid(
        self, job_id: str, payment_id: str, amount_msats: int, at: float | None = None
    ) -> None:
        db = self._db()
        job = self.buyer.scheduler.job(job_id)
        tele = job.tele if job is not None else await db.job(job_id)
        if tele is not None:
            tele.is_paid = True
            tele.paid = at or time.time()
            tele.payment_event_id = payment_id
            tele.amount_msats = amount_msats
            db.put(tele)
            self.buyer.scheduler.job_changed(tele)

    # --- refunds ----------------------------------------------------------------------------

    async def refund_job(self, job_id: str) -> rpc.RefundResult:
        """`pylon refund --job_id`: take back a payment no valid result came for, once its lock expired."""
        row = await self._db().payment_of(job_id)
        if row is None:
            await self.buyer.scheduler.telemetry(job_id)  # not_found for an unknown job
            raise RpcFailure("refused", f"job {job_id} was never paid: nothing to refund")
        payment_id, state, proofs_json, amount_msats, _ = row
        assert self.wallet is not None
        if state == "refunded":
            return rpc.RefundResult(
                job_id=job_id,
                payment_event_id=payment_id,
                refunded_sats=amount_msats // 1000,
                balance_sats=self.wallet.balance(),
                already_refunded=True,
            )
        if state == NODE_REFUND:
            raise RpcFailure("refused", f"the node already gave job {job_id}'s payment back")
        if state == "redeemed":
            raise RpcFailure("refused", f"the node redeemed job {job_id}'s payment (receipt on record)")
        tele = await self.buyer.scheduler.telemetry(job_id)
        if tele.state == JobState.COMPLETED and tele.result_id:
            raise RpcFailure("refused", f"job {job_id} has a verified result: its payment stands")
        try:
            sats = await self.wallet.refund(json.loads(proofs_json or "[]"))
        except PaymentError as exc:
            if exc.code == "spent":
                raise RpcFailure(
                    "refused",
                    f"job {job_id}'s payment is spent at the mint: the node redeemed it "
                    "(see pylon receipts) or a sweep already took it back",
                ) from exc
            raise RpcFailure(ErrorCode.PAYMENT_FAILED.value, str(exc)) from exc
        await self._settle_refund(job_id, "refunded")
        log.info("payment_refunded", job_id=job_id, sats=sats)
        return rpc.RefundResult(
            job_id=job_id,
            payment_event_id=payment_id,
            refunded_sats=sats,
            balance_sats=self.wallet.balance(),
            already_refunded=False,
        )

    async def _settle_refund(self, job_id: str, state: str) -> None:
        db = self._db()
        db.set_payment_state(job_id, state)
        job = self.buyer.scheduler.job(job_id)
        tele = job.tele if job is not None else await db.job(job_id)
        if tele is not None and tele.is_paid:
            tele.is_paid = False
            db.put(tele)
            self.buyer.scheduler.job_changed(tele)
        await db.flush()

    async def _refund_loop(self) -> None:
        """Take back expired payments nobody redeemed, then let the wallet settle the rest."""
        while True:
            await anyio.sleep(REFUND_PASS_S)
            try:
                await self.refund_expired()
            except Exception:
                log.exception("refund_pass_failed")

    async def refund_expired(self) -> int:
        assert self.wallet is not None
        rows = await self._db().unsettled_proofs()
        now = time.time()
        refunded = 0
        soon = False
        for job_id, proofs_json in rows:
            proofs = json.loads(proofs_json)
            try:
                locktime = inspect_proofs(proofs).locktime
            except PaymentError:
                continue
            if locktime is None:
                continue
            if locktime >= now:
                soon = soon or locktime < now + 2 * REFUND_PASS_S
                continue
            try:
                refunded += await self.wallet.refund(proofs)
            except PaymentError as exc:
                if exc.code == "spent":  # the node redeemed it and its receipt is not here (yet)
                    self._db().set_payment_state(job_id, "redeemed")
                continue
            await self._settle_refund(job_id, "refunded")
        # the wallet's own sweep drops redeemed proofs from its books; it would also refund
        # what is about to expire without our bookkeeping, so it waits while anything is close
        if not soon:
            try:
                await self.wallet.sweep_outstanding()
            except PaymentError as exc:
                log.warning("sweep_failed", error=str(exc))
        if refunded:
            log.info("expired_payments_refunded", sats=refunded)
        return refunded

    # --- receipts and refunds from nodes ----------------------------------------------------

    async def _on_payment_event(self, ev: NostrEvent) -> None:
        try:
            if ev.kind == kinds.REDEMPTION:
                await self._on_receipt(ev)
            elif ev.kind == kinds.NUTZAP:
                await self._on_node_refund(ev)
        except InvalidEvent as exc:
            self._count(f"payment_event_{exc.reason}")

    async def _on_receipt(self, ev: NostrEvent) -> None:
        red = parse_redemption(ev)
        db = self._db()
        row = None
        # a fast node's receipt can overtake our own record of the nutzap it answers: while a
        # payment to that very node is still being delivered, give that record a moment. A
        # receipt from any other key gets one lookup: a stranger cannot make us poll SQLite.
        paying = self._paying_to.get(red.job_id) if red.job_id in self.inflight else None
        if paying is not None and paying != ev.pubkey:
            raise InvalidEvent("receipt_from_other_node")
        for _ in range(RECEIPT_RETRIES if paying == ev.pubkey else 1):
            row = await db.payment_by_id(red.payment_id)
            if row is not None or not self.inflight:
                break
            await anyio.sleep(0.1)
        if row is None:
            raise InvalidEvent("receipt_unknown_payment")
        job_id, provider, state = row
        if provider != ev.pubkey:
            raise InvalidEvent("receipt_from_other_node")
        db.put_receipt(
            receipt_id=ev.id,
            job_id=job_id,
            payment_id=red.payment_id,
            provider=ev.pubkey,
            amount_msats=msats_for_sats(red.amount_sats),
            created_at=ev.created_at,
        )
        if state in UNSETTLED:
            db.set_payment_state(job_id, "redeemed")

    async def _on_node_refund(self, ev: NostrEvent) -> None:
        nz = parse_nutzap(ev)
        if nz.node != self.buyer.pubkey:
            return
        row = await self._db().payment_by_id(nz.result_id)
        if row is None or row[1] != ev.pubkey:
            raise InvalidEvent("refund_unknown_payment")
        job_id, _, state = row
        if state == NODE_REFUND:
            return
        if mint_key(nz.mint) != mint_key(self.mint_url):
            raise InvalidEvent("refund_wrong_mint")
        await self._wallet_ready.wait()
        assert self.wallet is not None
        try:
            sats = await self.wallet.redeem(nz.proofs)
        except PaymentError as exc:
            self._count(f"node_refund_{exc.code.value}")
            log.warning("node_refund_refused", job_id=job_id, error=str(exc))
            return
        await self._settle_refund(job_id, NODE_REFUND)
        log.info("node_refunded", job_id=job_id, sats=sats, node=ev.pubkey[:12])

    # --- RPC --------------------------------------------------------------------------------

    async def receipts(self, job_id: str | None, provider: str | None) -> rpc.ReceiptList:
        rows = await self._db().receipts(job_id, provider)
        fields = ("receipt_id", "job_id", "payment_id", "provider", "amount_msats", "created_at")
        return rpc.ReceiptList(receipts=[rpc.Receipt(**dict(zip(fields, r, strict=True))) for r in rows])

    def balance(self) -> rpc.WalletBalance:
        assert self.wallet is not None
        return rpc.WalletBalance(balance_sats=self.wallet.balance(), mint=self.mint_url)

    async def fund(self, amount_sats: int) -> rpc.WalletBalance:
        if not 0 < amount_sats <= MAX_FUND_SATS:
            raise RpcFailure("bad_input", f"fund between 1 and {MAX_FUND_SATS} sats, not {amount_sats}")
        assert self.wallet is not None
        try:
            await self.wallet.fund(amount_sats)
        except PaymentError as exc:
            raise RpcFailure(ErrorCode.PAYMENT_FAILED.value, str(exc)) from exc
        return self.balance()

    async def _wallet_open(self) -> None:
        """The socket answers before the wallet has opened (nutshell loads slowly)."""
        with anyio.move_on_after(WALLET_OPEN_WAIT_S):
            await self._wallet_ready.wait()
        if self.wallet is None:
            raise RpcFailure(ErrorCode.PAYMENT_FAILED.value, "the buyer's wallet is not open yet; try again")

    async def route_pay(self, req: rpc.PayReq, ctx: CallContext) -> rpc.PayResult:
        await self._wallet_open()
        return await self.pay_job(req.job_id)

    async def route_refund(self, req: rpc.RefundReq, ctx: CallContext) -> rpc.RefundResult:
        await self._wallet_open()
        return await self.refund_job(req.job_id)

    async def route_receipts(self, req: rpc.ReceiptsReq, ctx: CallContext) -> rpc.ReceiptList:
        return await self.receipts(req.job_id, req.provider)

    async def route_balance(self, req: rpc.WalletBalanceReq, ctx: CallContext) -> rpc.WalletBalance:
        await self._wallet_open()
        return self.balance()

    async def route_fund(self, req: rpc.WalletFundReq, ctx: CallContext) -> rpc.WalletBalance:
        await self._wallet_open()
        return await self.fund(req.amount_sats)


def attach_payments(buyer: BuyerDaemon) -> None:
    """`pylon buyer up` calls this; without a mint the buyer pays nothing and answers no wallet calls."""
    if not buyer.config.mint_url:
        return
    payer = buyer.payments = BuyerPayments(buyer)
    buyer.listen(payer.on_scheduler_event)
    buyer.on_swarm_event(kinds.NUTZAP_INFO, payer.on_nutzap_info)
    buyer.on_start(payer.start)
    buyer.routes.add(rpc.PayReq, payer.route_pay)
    buyer.routes.add(rpc.RefundReq, payer.route_refund)
    buyer.routes.add(rpc.ReceiptsReq, payer.route_receipts)
    buyer.routes.add(rpc.WalletBalanceReq, payer.route_balance)
    buyer.routes.add(rpc.WalletFundReq, payer.route_fund)


__all__ = ["BuyerPayments", "PayTarget", "attach_payments"]
