"""Rebuild a job's provenance from the relay alone: request → feedback → result → payment → receipt.

Every event is checked on its own (NIP-01 id and signature, shape) and against the rest of
the job (who may sign it, what it must tag). Nothing that fails is dropped: it appears in the
trail with `valid: false` and the reasons, so a forged or mismatched link is visible.

The *path* is the chain that `verified` speaks for: the job's request and its attempts up to
the winning one, feedback on that attempt (none for a job answered before its acknowledgement
fell due: the result stands for it), the attempt's result (signed by the node it was
assigned to, hash and payload intact), a payment of that result (by the buyer, to that node,
at least the price, P2PK-locked to the node's kind-10019 key at a mint it accepts) and the
node's receipt for that payment. Events off the path (a late result of a re-issued attempt, a
stranger's result, a second payment) are listed too, with their own verdicts; they do not
change `verified`, but invalid ones are named in `problems`.

A private job (NIP-44 encrypted, see pylon.nostr.private_jobs) is checked the same way when
the trail is built with the buyer's key (`keys`): request and result are decrypted and the
result's `x` hash and payload checked on the plaintext. Without it, only ciphertext is
visible: signatures, links, payment and receipt are checked, the input's and result's
plaintext hashes cannot be, and the trail says `encrypted` (and not `decrypted`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pylon.executors.canonical import agreement
from pylon.keys import NostrKeys
from pylon.nostr import nip60, nip61, nip90, private_jobs
from pylon.nostr.event import InvalidEvent, NostrEvent, verify_event
from pylon.nostr.filters import Filter
from pylon.nostr.relay_client import RelayPool
from pylon.payments.amounts import MSATS_PER_SAT
from pylon.payments.errors import PaymentError
from pylon.payments.proofs import inspect_proofs, p2pk_keys_match
from pylon.provenance.fetch import RawReader
from pylon.schemas import kinds
from pylon.schemas.events import JobRequest, NutzapInfo
from pylon.schemas.provenance import ROLES, Trail, TrailCheck, TrailLink

ID_BATCH = 100
MAX_HOPS = 3  # result → attempt → job: how far an id given for a later link is followed


@dataclass
class _Item:
    ev: NostrEvent
    role: str
    problems: list[str] = field(default_factory=list)
    detail: str = ""
    on_path: bool = False
    order: int = 0  # attempt number for requests: keeps them in issue order within a second

    @property
    def valid(self) -> bool:
        return not self.problems

    def link(self) -> TrailLink:
        ev = self.ev
        return TrailLink(
            role=self.role,
            kind=ev.kind,
            id=ev.id,
            pubkey=ev.pubkey,
            created_at=ev.created_at,
            valid=self.valid,
            on_path=self.on_path,
            detail=self.detail,
            problems=list(self.problems),
        )


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def sats(msats: int) -> str:
    """One unit for every amount in a trail: sats (msat precision kept as decimals)."""
    return f"{msats // MSATS_PER_SAT} sat" if msats % MSATS_PER_SAT == 0 else f"{msats / MSATS_PER_SAT:g} sat"


def local_time(epoch: float) -> str:
    import time as _time

    return _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(epoch))


def _signature_problem(ev: NostrEvent) -> str | None:
    try:
        verify_event(ev)
    except InvalidEvent as exc:
        return f"signature check failed ({exc.reason})"
    return None


def _batches(ids: Sequence[str], n: int = ID_BATCH) -> list[list[str]]:
    return [list(ids[i : i + n]) for i in range(0, len(ids), n)]


async def build_trail(
    pool: RelayPool, job_id: str, *, timeout: float = 10.0, keys: NostrKeys | None = None
) -> Trail:
    """The trail of `job_id` from the relays `pool` talks to (its own read-only connections:
    the pool's query would drop the very events a trail must show)."""
    return await build_trail_from_relays(pool.urls, job_id, timeout=timeout, keys=keys)


async def build_trail_from_relays(
    relays: Sequence[str], job_id: str, *, timeout: float = 10.0, keys: NostrKeys | None = None
) -> Trail:
    """Open read-only connections to `relays` and build the trail. Raises RelayUnavailable.
    `keys`: the buyer's, to read a private job's encrypted input and result."""
    sealer = private_jobs.Sealer(keys) if keys is not None else None
    async with RawReader(relays, timeout=timeout) as reader:
        trail = await _build(reader, job_id.strip().lower(), sealer=sealer)
        unreachable = [c.url for c in reader.conns if c.ws is None]
    trail.relays = list(relays)
    if reader.incomplete or reader.truncated:
        trail.problems.append(
            f"{reader.incomplete + reader.truncated} relay queries did not finish: links may be missing"
        )
    if unreachable:
        trail.problems.append(f"not read: {', '.join(unreachable)} (unreachable)")
    return trail


def _points_to_job(ev: NostrEvent) -> str | None:
    """The job (or attempt) a result, feedback, payment or receipt names: a trail may start there."""
    if ev.kind in (kinds.JOB_RESULT, kinds.JOB_FEEDBACK):
        return nip90.result_job_id(ev)
    if ev.kind in (kinds.NUTZAP, kinds.REDEMPTION):
        return next((t[1] for t in ev.tags_named("e") if len(t) >= 4 and t[3] == "job"), None)
    return None


async def _build(
    reader: RawReader, job_id: str, hops: int = 0, *, sealer: private_jobs.Sealer | None
) -> Trail:
    items: list[_Item] = []
    problems: list[str] = []

    # --- the request -----------------------------------------------------------------------
    first = [e for e in await reader.query([Filter(ids=[job_id])]) if e.id == job_id]
    if not first:
        return Trail(
            job_id=job_id, verified=False, chain=[], found=False, problems=[f"no event {job_id} on the relay"]
        )
    root_ev = first[0]
    target = _points_to_job(root_ev)
    if target and hops < MAX_HOPS:
        # The id of a later link was given: start from the job it belongs to.
        trail = await _build(reader, target, hops + 1, sealer=sealer)
        trail.problems.insert(0, f"{job_id} is a kind-{root_ev.kind} event of job {trail.job_id}")
        return trail
    root = _Item(root_ev, "request", detail="attempt 1")
    items.append(root)
    request: JobRequest | None = None
    if (p := _signature_problem(root_ev)) is not None:
        root.problems.append(p)
    if root_ev.kind != kinds.JOB_REQUEST or nip90.is_chunk(root_ev) or nip90.is_run_root(root_ev):
        root.problems.append(f"not a job request (kind {root_ev.kind})")
    else:
        try:
            request = private_jobs.parse_request(root_ev, sealer)
        except InvalidEvent as exc:
            root.problems.append(f"malformed request ({exc})")
    encrypted = private_jobs.is_encrypted(root_ev)
    decrypted = encrypted and request is not None and request.path != ""
    if encrypted:
        root.detail += "; encrypted" + (f", decrypted: {request.path}" if decrypted and request else "")
    if request is not None and request.retry_of and hops < MAX_HOPS:
        # An attempt's id was given: follow it to the job it re-issues.
        trail = await _build(reader, request.retry_of, hops + 1, sealer=sealer)
        trail.problems.insert(0, f"{job_id} is a re-issued attempt of job {request.retry_of}")
        return trail
    buyer = root_ev.pubkey

    # --- re-issued attempts: new requests tagging the job with the retry marker -------------
    attempts: list[tuple[_Item, JobRequest | None]] = [(root, request)]
    check_requests: list[NostrEvent] = []
    for ev in await reader.query([Filter(kinds=[kinds.JOB_REQUEST], e=[job_id])]):
        if ev.id == job_id or nip90.is_chunk(ev) or nip90.is_run_root(ev):
            continue
        it = _Item(ev, "request")
        req: JobRequest | None = None
        if (p := _signature_problem(ev)) is not None:
            it.problems.append(p)
        try:
            req = private_jobs.parse_request(ev, sealer)
        except InvalidEvent as exc:
            it.problems.append(f"malformed request ({exc})")
        if req is not None and req.check_of == job_id and ev.pubkey == buyer and not it.problems:
            if not req.retry_of:  # a re-issue of a check is that check's own attempt
                check_requests.append(ev)  # a spot check of this job: its own job, listed apart
            continue
        if req is not None and req.retry_of != job_id:
            continue  # tags the job for another reason; not an attempt of it
        if ev.pubkey != buyer:
            it.problems.append("re-issued by a key other than the job's buyer")
        if req is not None and request is not None and req.sha256 != request.sha256:
            it.problems.append("re-issued attempt asks for a different input")
        it.detail = f"attempt {_attempt_no(ev)} (retry)"
        items.append(it)
        attempts.append((it, req))
    attempts.sort(key=lambda a: (_attempt_no(a[0].ev), a[1].submitted_ms if a[1] else 0, a[0].ev.created_at))
    by_attempt = {it.ev.id: (it, req) for it, req in attempts}

    # --- feedback and results on any attempt --------------------------------------------------
    fb_items: list[tuple[_Item, str]] = []  # (item, attempt id)
    res_items: list[tuple[_Item, str, nip90.ParsedResult | None]] = []
    events: list[NostrEvent] = []
    for batch in _batches(list(by_attempt)):
        events += await reader.query([Filter(kinds=[kinds.JOB_FEEDBACK, kinds.JOB_RESULT], e=batch)])
    # Feedback first: a result too big for one event is carried by `partial` feedback parts.
    fb_events = {ev.id: ev for ev in events if ev.kind == kinds.JOB_FEEDBACK}
    for ev in events:
        if ev.kind == kinds.JOB_FEEDBACK:
            fb_items.append(_check_feedback(ev, by_attempt, buyer))
    for ev in events:
        if ev.kind == kinds.JOB_RESULT:
            res_items.append(_check_result(ev, by_attempt, buyer, request, fb_events, sealer))
    items += [it for it, _ in fb_items] + [it for it, _, _ in res_items]

    # --- payments and receipts ----------------------------------------------------------------
    # A nutzap's `job` tag names the request the node answered (an attempt id: the job id for a
    # first attempt); a prepayment (payment-required) names that attempt as its `result` too.
    pay_events: list[NostrEvent] = []
    for batch in _batches(list(by_attempt)):
        pay_events += await reader.query([Filter(kinds=[kinds.NUTZAP, kinds.REDEMPTION], e=batch)])
    payment_ids = [e.id for e in pay_events if e.kind == kinds.NUTZAP]
    for batch in _batches(payment_ids):
        pay_events += await reader.query([Filter(kinds=[kinds.REDEMPTION], e=batch)])
    seen: set[str] = set()
    pay_events = [e for e in pay_events if not (e.id in seen or seen.add(e.id))]
    nodes = sorted(
        {it.ev.pubkey for it, _, _ in res_items} | {r.assigned for _, r in attempts if r and r.assigned}
    )
    zap_info = await _nutzap_infos(reader, nodes)
    pay_items: list[tuple[_Item, str | None]] = []  # (item, result id it pays)
    for ev in pay_events:
        if ev.kind == kinds.NUTZAP:
            pay_items.append(_check_payment(ev, buyer, res_items, by_attempt, zap_info))
    pays_by_id = {it.ev.id: it for it, _ in pay_items}
    rec_items: list[tuple[_Item, str | None]] = []
    for ev in pay_events:
        if ev.kind == kinds.REDEMPTION:
            rec_items.append(_check_receipt(ev, by_attempt, pays_by_id))
    items += [it for it, _ in pay_items] + [it for it, _ in rec_items]

    # --- the path -------------------------------------------------------------------------------
    good_results = [(it, att) for it, att, _ in res_items if it.valid]
    paid = {rid: it for it, rid in pay_items if it.valid and rid}
    receipted = {pid for it, pid in rec_items if it.valid and pid}

    def rank(entry: tuple[_Item, str]) -> tuple[int, int]:
        """Prefer the result that was paid and receipted, then paid, then the first one."""
        it, _ = entry
        pay = paid.get(it.ev.id)
        return (0 if pay and pay.ev.id in receipted else 1 if pay else 2, it.ev.created_at)

    winner = min(good_results, key=rank) if good_results else None
    through: str | None = None
    result_id = payment_id = receipt_id = provider = None
    paid_msats: int | None = None
    win_attempt = winner[1] if winner else (attempts[-1][0].ev.id if attempts else None)

    # request: the job's request and every attempt up to the winning one
    path_ok = True
    for it, _ in attempts:
        it.on_path = True
        path_ok = path_ok and it.valid
        if it.ev.id == win_attempt:
            break
    if not path_ok:
        problems.append("the request or one of its attempts does not verify")
    stages: list[tuple[str, bool]] = [("request", path_ok)]

    fbs = [it for it, att in fb_items if att == win_attempt and it.valid]
    for it in fbs:
        it.on_path = True
    # A node acknowledges (`processing`) only a job it has not answered within ACK_DEFER_S
    # (pylon.daemon.node_acks): the winning attempt's valid result is its own acknowledgement.
    if not fbs and winner is None:
        problems.append("no valid feedback on the last attempt")
    stages.append(("feedback", bool(fbs) or winner is not None))

    if winner is not None:
        winner[0].on_path = True
        result_id, provider = winner[0].ev.id, winner[0].ev.pubkey
    else:
        problems.append("no valid result" if not res_items else "no result passes its checks")
    stages.append(("result", winner is not None))

    pay = paid.get(result_id or "")
    if pay is not None:
        pay.on_path = True
        payment_id = pay.ev.id
        paid_msats = _proof_msats(pay.ev)
    elif winner is not None:
        problems.append("no valid payment of the result" if pay_items else "no payment on the relay")
    stages.append(("payment", pay is not None))

    rec = next((it for it, pid in rec_items if it.valid and pid == payment_id), None) if payment_id else None
    if rec is not None:
        rec.on_path = True
        receipt_id = rec.ev.id
    elif pay is not None:
        problems.append("no valid receipt for the payment" if rec_items else "no receipt on the relay")
    stages.append(("receipt", rec is not None))

    for role, ok in stages:
        if not ok:
            break
        through = role
    for it in items:
        if not it.valid:
            problems.append(f"invalid {it.role} {it.ev.id[:12]}: {'; '.join(it.problems)}")

    win_parsed = next((p for it, _, p in res_items if winner and it is winner[0]), None)
    checks = await _checks(reader, check_requests, buyer, win_parsed, sealer)

    rank_of = {r: i for i, r in enumerate(ROLES)}
    for n, (it, _) in enumerate(attempts):
        it.order = n
    items.sort(key=lambda it: (rank_of[it.role], not it.on_path, it.order, it.ev.created_at, it.ev.id))
    return Trail(
        job_id=job_id,
        verified=through == ROLES[-1],
        chain=[it.link() for it in items],
        found=True,
        verified_through=through,
        problems=problems,
        buyer=buyer,
        provider=provider,
        attempts=len(attempts),
        result_id=result_id,
        payment_id=payment_id,
        receipt_id=receipt_id,
        paid_msats=paid_msats,
        encrypted=encrypted,
        decrypted=decrypted,
        checks=checks,
    )


async def _checks(
    reader: RawReader,
    check_requests: list[NostrEvent],
    buyer: str,
    win: nip90.ParsedResult | None,
    sealer: private_jobs.Sealer | None = None,
) -> list[TrailCheck]:
    """Each spot check's answer (from the node its last attempt went to) against the job's result."""
    if not check_requests:
        return []
    ids = [ev.id for ev in check_requests]
    # A check re-issued to another node is a retry of the check job.
    attempts: dict[str, str] = {cid: cid for cid in ids}  # attempt id → check job id
    assigned: dict[str, str | None] = {ev.id: ev.tag_value("p") for ev in check_requests}
    for ev in await reader.query([Filter(kinds=[kinds.JOB_REQUEST], e=ids)]):
        try:
            req = private_jobs.parse_request(ev, sealer)
        except InvalidEvent:
            continue
        if req.retry_of in attempts and ev.pubkey == buyer and _signature_problem(ev) is None:
            attempts[ev.id] = req.retry_of
            assigned[ev.id] = req.assigned
    results: dict[str, tuple[NostrEvent, nip90.ParsedResult | None]] = {}
    events: list[NostrEvent] = []
    for batch in _batches(list(attempts)):
        events += await reader.query([Filter(kinds=[kinds.JOB_FEEDBACK, kinds.JOB_RESULT], e=batch)])
    parts = {ev.id: ev for ev in events if ev.kind == kinds.JOB_FEEDBACK}
    for ev in sorted((e for e in events if e.kind == kinds.JOB_RESULT), key=lambda e: e.created_at):
        att = nip90.result_job_id(ev) or ""
        if att not in attempts or ev.pubkey != assigned.get(att) or _signature_problem(ev) is not None:
            continue
        parsed: nip90.ParsedResult | None
        try:
            parsed = private_jobs.parse_result(
                ev, [parts[p] for p in nip90.result_part_ids(ev) if p in parts], sealer
            )
        except InvalidEvent as exc:
            if exc.reason not in ("encrypted", "nip44_not_ours"):
                continue
            parsed = None  # a private check without the buyer's key: not comparable here
        results.setdefault(attempts[att], (ev, parsed))
    out = []
    for cid in ids:
        found = results.get(cid)
        if found is None:
            out.append(TrailCheck(job_id=cid, pubkey=None, result_id=None, agreed=None, detail="no result"))
            continue
        ev, parsed = found
        agreed = agreement(win.result, parsed.result) if win is not None and parsed is not None else None
        detail = {True: "agreed", False: "disagreed", None: "not comparable"}[agreed]
        if parsed is None:
            detail = "encrypted (needs the buyer's key to compare)"
        out.append(TrailCheck(job_id=cid, pubkey=ev.pubkey, result_id=ev.id, agreed=agreed, detail=detail))
    return out


def _attempt_no(ev: NostrEvent) -> int:
    for t in ev.tags_named("param"):
        if len(t) >= 3 and t[1] == "attempt":
            try:
                return int(t[2])
            except ValueError:
                return 0
    return 1


def _check_feedback(
    ev: NostrEvent, by_attempt: dict[str, tuple[_Item, JobRequest | None]], buyer: str
) -> tuple[_Item, str]:
    it = _Item(ev, "feedback")
    if (p := _signature_problem(ev)) is not None:
        it.problems.append(p)
    att_id = ev.tag_value("e") or ""
    try:
        fb = nip90.parse_feedback(ev)
        att_id = fb.job_id
        it.detail = (
            fb.status.value
            + (f" ({fb.error.value})" if fb.error else "")
            + (f": {fb.message}" if fb.message else "")
        )
    except InvalidEvent as exc:
        it.problems.append(f"malformed feedback ({exc})")
    att = by_attempt.get(att_id)
    if att is None:
        it.problems.append("does not answer an attempt of this job")
    else:
        assigned = att[1].assigned if att[1] else att[0].ev.tag_value("p")
        if assigned and ev.pubkey != assigned:
            it.problems.append("not signed by the node the attempt was assigned to")
    if ev.tag_value("p") != buyer:
        it.problems.append("does not tag the buyer")
    return it, att_id


def _check_result(
    ev: NostrEvent,
    by_attempt: dict[str, tuple[_Item, JobRequest | None]],
    buyer: str,
    request: JobRequest | None,
    parts_pool: dict[str, NostrEvent],
    sealer: private_jobs.Sealer | None = None,
) -> tuple[_Item, str, nip90.ParsedResult | None]:
    it = _Item(ev, "result")
    if (p := _signature_problem(ev)) is not None:
        it.problems.append(p)
    att_id = nip90.result_job_id(ev) or ""
    parsed: nip90.ParsedResult | None = None
    part_ids = nip90.result_part_ids(ev)
    parts = [parts_pool[pid] for pid in part_ids if pid in parts_pool]
    # The parts need no signature of their own to count: `x` (signed here) pins the content.
    for pid in part_ids:
        if pid not in parts_pool:
            it.problems.append(f"content part {pid[:12]} is not on the relay")
    sealed = private_jobs.is_encrypted(ev)
    try:
        parsed = private_jobs.parse_result(ev, parts, sealer)
    except InvalidEvent as exc:
        if sealed and exc.reason in ("encrypted", "nip44_not_ours"):
            # Not ours to read: the signed `x` pins the plaintext; only the shape is checked.
            for e in [ev, *parts]:
                if (shape := private_jobs.check_sealed_shape(e)) is not None:
                    it.problems.append(shape)
            it.detail = "encrypted (needs the buyer's key to check x against the plaintext)"
        elif exc.reason.startswith("nip44_"):
            it.problems.append(f"encrypted content does not decrypt ({exc.reason})")
        elif exc.reason == "hash_mismatch":
            it.problems.append("content does not match its x hash")
        elif exc.reason != "missing_part" or not it.problems:
            it.problems.append(f"malformed result ({exc})")
    att = by_attempt.get(att_id)
    if att is None:
        it.problems.append("does not answer an attempt of this job")
    else:
        assigned = att[1].assigned if att[1] else att[0].ev.tag_value("p")
        if assigned and ev.pubkey != assigned:
            it.problems.append("not signed by the node the attempt was assigned to")
        it.detail = att[0].detail + (f"; {it.detail}" if it.detail else "")
    if ev.tag_value("p") != buyer:
        it.problems.append("does not tag the buyer")
    if parsed is not None:
        r = parsed.result
        if request is not None and r.input_sha256 and request.sha256 and r.input_sha256 != request.sha256:
            it.problems.append("result is for a different input (input_sha256)")
        it.detail = (
            f"{it.detail}; " if it.detail else ""
        ) + f"{r.path}: {plural(len(r.symbols), 'symbol')}, asks {sats(parsed.amount_msats)}"
    return it, att_id, parsed


async def _nutzap_infos(reader: RawReader, nodes: list[str]) -> dict[str, NutzapInfo | str]:
    """Each node's newest valid kind-10019, or why there is none."""
    out: dict[str, NutzapInfo | str] = {n: "the node publishes no kind-10019 (nutzap info)" for n in nodes}
    if not nodes:
        return out
    newest: dict[str, NostrEvent] = {}
    for ev in await reader.query([Filter(kinds=[kinds.NUTZAP_INFO], authors=nodes)]):
        if ev.pubkey in out and _signature_problem(ev) is None:
            if ev.pubkey not in newest or ev.created_at > newest[ev.pubkey].created_at:
                newest[ev.pubkey] = ev
    for pk, ev in newest.items():
        try:
            out[pk] = nip61.parse_nutzap_info(ev)
        except InvalidEvent as exc:
            out[pk] = f"the node's kind-10019 is malformed ({exc})"
    return out


def _proof_msats(ev: NostrEvent) -> int | None:
    try:
        return inspect_proofs(nip61.parse_nutzap(ev).proofs).amount_sats * MSATS_PER_SAT
    except (InvalidEvent, PaymentError):
        return None


def _check_payment(
    ev: NostrEvent,
    buyer: str,
    res_items: list[tuple[_Item, str, nip90.ParsedResult | None]],
    by_attempt: dict[str, tuple[_Item, JobRequest | None]],
    zap_info: dict[str, NutzapInfo | str],
) -> tuple[_Item, str | None]:
    """Check one nutzap; returns it with the id of the result it pays (None if it names none)."""
    it = _Item(ev, "payment")
    if (p := _signature_problem(ev)) is not None:
        it.problems.append(p)
    try:
        zap = nip61.parse_nutzap(ev)
    except InvalidEvent as exc:
        it.problems.append(f"malformed nutzap ({exc})")
        return it, None
    if ev.pubkey != buyer:
        it.problems.append("not paid by the job's buyer")
    if zap.job_id not in by_attempt:
        it.problems.append("does not tag the job or one of its attempts")
    by_result = {r.ev.id: (r, att, parsed) for r, att, parsed in res_items}
    prepay = zap.result_id in by_attempt
    if prepay:
        # Paid up front for an attempt: it pays that attempt's result (the first valid one).
        answers = sorted(
            (x for x in res_items if x[1] == zap.result_id),
            key=lambda x: (not x[0].valid, x[0].ev.created_at),
        )
        found = answers[0] if answers else None
        att = by_attempt[zap.result_id]
        payee = att[1].assigned if att[1] else None
    else:
        found = by_result.get(zap.result_id)
        att = by_attempt.get(found[1]) if found else None
        payee = found[0].ev.pubkey if found else None
    if found is None and not prepay:
        it.problems.append("does not tag a result of this job")
        return it, zap.result_id
    res_item, parsed = (found[0], found[2]) if found else (None, None)
    if res_item is not None and not res_item.valid:
        it.problems.append("pays a result that does not verify")
    if payee and zap.node != payee:
        it.problems.append("p tag is not the node that made the result")
    # The price: the node's amount tag, or failing that the buyer's bid.
    bid = att[1].bid_msats if att and att[1] else 0
    price = parsed.amount_msats if parsed is not None and parsed.amount_msats else bid
    try:
        info = inspect_proofs(zap.proofs)
    except PaymentError as exc:
        it.problems.append(f"proofs are malformed ({exc})")
        return it, res_item.ev.id if res_item else None
    held = info.amount_sats * MSATS_PER_SAT
    it.detail = (
        "prepayment; " if prepay else ""
    ) + f"{sats(held)} in {plural(info.count, 'proof')} at {zap.mint}"
    if info.locktime:
        it.detail += f", refundable after {local_time(info.locktime)}"
    if zap.amount_msats > held:
        it.problems.append(f"states {zap.amount_msats} msat but its proofs hold {held}")
    if held < price:
        it.problems.append(f"too small: proofs hold {held} msat, the price is {price}")
    node_info = zap_info.get(payee or zap.node, "the node publishes no kind-10019 (nutzap info)")
    if isinstance(node_info, str):
        it.problems.append(node_info)
    else:
        if info.lock_pubkey is None:
            it.problems.append("proofs are not all P2PK-locked to one key")
        elif not p2pk_keys_match(info.lock_pubkey, node_info.p2pk_pubkey):
            it.problems.append("locked to a key other than the node's kind-10019 P2PK key")
        if nip61.mint_key(zap.mint) not in {nip61.mint_key(m) for m in node_info.mints}:
            it.problems.append(f"mint {zap.mint} is not one the node accepts")
    return it, res_item.ev.id if res_item else None


def _check_receipt(
    ev: NostrEvent, by_attempt: dict[str, tuple[_Item, JobRequest | None]], payments: dict[str, _Item]
) -> tuple[_Item, str | None]:
    it = _Item(ev, "receipt")
    if (p := _signature_problem(ev)) is not None:
        it.problems.append(p)
    try:
        red = nip60.parse_redemption(ev)
    except InvalidEvent as exc:
        it.problems.append(f"malformed receipt ({exc})")
        return it, None
    it.detail = f"{sats(red.amount_sats * MSATS_PER_SAT)} redeemed"
    if red.job_id not in by_attempt:
        it.problems.append("does not tag the job or one of its attempts")
    pay = payments.get(red.payment_id)
    if pay is None:
        it.problems.append("does not tag a payment of this job")
        return it, red.payment_id
    if ev.pubkey != pay.ev.tag_value("p"):
        it.problems.append("not signed by the node that was paid")
    return it, red.payment_id
