"""Swaps that survive a lost mint answer: NUT-13 outputs, a journal, NUT-07 + NUT-09 recovery.

The danger: the wallet sends a swap, the mint signs the outputs and spends the inputs, and
the answer never arrives (a timeout, a cut connection, a crash). Before this module the
wallet then held inputs the mint had spent and had no way to rebuild the outputs (their
secrets and blinding factors were random), so the sats were gone.

Now every output's secret and blinding factor come from the wallet's seed and keyset
counter (NUT-13; a P2PK-locked output uses the derived secret as its lock's nonce and the
derived blinding factor), and before a swap goes to the mint its outputs (secrets, blinding
factors, amounts) and its inputs are written to a small journal file next to the wallet
database (0600, replaced atomically). After an uncertain answer (transport error, timeout, HTTP 5xx) and
on every later operation until it is settled, the wallet resolves the journal:

- NUT-07 `checkstate` of the inputs: all unspent → the swap has not happened (yet). The
  entry is kept as *stale* (a request delayed in the network could still land): it goes
  when a later swap of ours spends the same inputs (the mint then refuses the late one), or
  after STALE_TTL_S; if instead the mint later says those inputs are spent, it is restored.
- inputs spent → NUT-09 `restore` of the journaled outputs: the mint hands back the
  signatures it made, the proofs are rebuilt and stored (kept ones spendable, sent ones as
  outstanding, exactly as if the answer had arrived), the inputs are marked spent.
- the mint unreachable again → the entry stays and the next operation tries again.

So a swap's sats are always in exactly one of: the balance, the outstanding payments, or a
journal entry the next operation settles.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from pylon.logs import get_logger

if TYPE_CHECKING:
    from cashu.core.base import BlindedSignature, Proof
    from cashu.wallet.wallet import Wallet

log = get_logger("pylon.payments.journal")

STALE_TTL_S = 3600.0  # no delayed request outlives its TCP connection by this much


class JournalOutput(msgspec.Struct):
    amount: int
    secret: str
    r: str  # blinding factor, hex
    path: str  # NUT-13 derivation path (or "custom" for a lock's nonce-derived secret)


class JournalEntry(msgspec.Struct):
    op: str  # what the swap was for: send | redeem | refund
    keyset_id: str
    inputs: list[dict[str, Any]]  # {id, amount, secret, C}: enough for NUT-07 and to mark them spent
    outputs: list[JournalOutput]
    n_keep: int  # outputs[:n_keep] are ours to spend; the rest are sent (locked to others)
    created: float
    own_inputs: bool = True  # inputs were proofs of this wallet (send) or handed to us (redeem)
    stale: bool = False  # the mint said the inputs were unspent: not done, unless a late copy lands


class Journal:
    """The pending swaps of one wallet, in `<wallet>.pending.json` (atomic replace)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[JournalEntry] = []
        if path.exists():
            try:
                self.entries = msgspec.json.decode(path.read_bytes(), type=list[JournalEntry])
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
                # Never silently drop a journal: it may be someone's money. Keep it aside.
                aside = path.with_name(path.name + f".unreadable-{int(time.time())}")
                path.rename(aside)
                log.error("wallet_journal_unreadable", path=str(aside), error=str(exc)[:200])

    def add(self, entry: JournalEntry) -> None:
        self.entries.append(entry)
        self._save()

    def remove(self, entry: JournalEntry) -> None:
        self.entries = [e for e in self.entries if e is not entry]
        self._save()

    def unsettled(self) -> list[JournalEntry]:
        return [e for e in self.entries if not e.stale]

    def stale(self) -> list[JournalEntry]:
        return [e for e in self.entries if e.stale]

    def mark_stale(self, entry: JournalEntry) -> None:
        entry.stale = True
        self._save()

    def drop_stale(self, spent_secrets: set[str], now: float) -> None:
        """Stale entries that can no longer land: inputs since spent by a swap of ours, or old."""
        keep = [
            e
            for e in self.entries
            if not e.stale
            or (now - e.created < STALE_TTL_S and not spent_secrets & {p["secret"] for p in e.inputs})
        ]
        if len(keep) != len(self.entries):
            self.entries = keep
            self._save()

    def _save(self) -> None:
        if not self.entries:
            self.path.unlink(missing_ok=True)
            return
        # Atomic replace, no fsync: the journal must outlive the process (a kill, a crash of
        # the daemon), which the page cache gives; an fsync per swap (~8 ms on this disk, on
        # the event loop) cost a third of the paid-jobs rate for the power-loss case alone.
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, msgspec.json.encode(self.entries))
        finally:
            os.close(fd)
        os.replace(tmp, self.path)


def input_dicts(proofs: list[Proof]) -> list[dict[str, Any]]:
    return [{"id": p.id, "amount": p.amount, "secret": p.secret, "C": p.C} for p in proofs]


async def derive_outputs(
    w: Wallet, keep_amounts: list[int], send: list[tuple[int, Any]]
) -> list[JournalOutput]:
    """NUT-13 outputs: `keep_amounts` to us, then `send` = [(amount, lock Secret), ...].

    Each output takes the next counter of the active keyset (bumped in the wallet database
    before the swap, so a counter is never reused); a locked output uses its derived secret as
    the lock's nonce, so it too is fixed by the seed, the counter and the lock."""
    from cashu.core.secret import Secret

    n = len(keep_amounts) + len(send)
    secrets, rs, paths = await w.generate_n_secrets(n)
    out = [
        JournalOutput(amount=a, secret=secrets[i], r=rs[i].to_hex(), path=paths[i])
        for i, a in enumerate(keep_amounts)
    ]
    for j, (amount, lock) in enumerate(send):
        i = len(keep_amounts) + j
        locked = Secret(kind=lock.kind, data=lock.data, tags=lock.tags, nonce=secrets[i][:32])
        out.append(JournalOutput(amount=amount, secret=locked.serialize(), r=rs[i].to_hex(), path=paths[i]))
    return out


def blinded(w: Wallet, entry: JournalEntry) -> tuple[list[Any], list[Any]]:
    """The entry's BlindedMessages (re-derived from secret and r) and blinding factors."""
    from cashu.core.crypto.secp import PrivateKey

    rs = [PrivateKey(bytes.fromhex(o.r)) for o in entry.outputs]
    outputs, rs = w._construct_outputs(
        [o.amount for o in entry.outputs], [o.secret for o in entry.outputs], rs, entry.keyset_id
    )
    return outputs, rs


async def swap(
    w: Wallet, journal: Journal, entry: JournalEntry, inputs: list[Proof]
) -> tuple[list[Proof], list[Proof]]:
    """Journal `entry`, run the swap, store its proofs; (kept, sent). An uncertain answer is
    resolved at once (`resolve`); if that cannot reach the mint either, the entry stays and
    the error goes up."""
    from cashu.wallet.v1_api import LedgerAPI

    outputs, rs = blinded(w, entry)
    inputs = w.sign_proofs_inplace_swap(inputs, outputs)
    order = sorted(range(len(outputs)), key=lambda j: outputs[j].amount)  # as nutshell's split does
    journal.add(entry)
    try:
        signed = await LedgerAPI.split(w, inputs, [outputs[j] for j in order])
    except Exception as exc:
        if not uncertain(exc):
            journal.remove(entry)  # the mint answered no: nothing happened
            raise
        log.warning("wallet_swap_answer_lost", op=entry.op, error=f"{type(exc).__name__}: {exc}"[:200])
        got = await resolve(w, journal, entry)
        if got is None:
            raise  # the swap did not happen: the original error stands
        return got
    promises: list[Any] = [None] * len(outputs)
    for j, promise in zip(order, signed, strict=True):
        promises[j] = promise
    got = await _store(w, entry, promises, rs, inputs)
    journal.remove(entry)
    journal.drop_stale({p.secret for p in inputs}, time.time())
    return got


def uncertain(exc: BaseException) -> bool:
    """Did the mint maybe do the swap? A transport failure or a 5xx: maybe. A mint error: no."""
    import httpx

    if isinstance(exc, httpx.TransportError | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return False


async def resolve(w: Wallet, journal: Journal, entry: JournalEntry) -> tuple[list[Proof], list[Proof]] | None:
    """Settle a journaled swap with the mint (NUT-07, then NUT-09). Returns (kept, sent) when
    it happened, None when it did not (both remove the entry); raises when the mint cannot be
    asked (the entry stays for next time)."""
    from cashu.core.base import Proof
    from cashu.wallet.v1_api import LedgerAPI

    inputs = [Proof.from_dict(dict(p)) for p in entry.inputs]
    states = (await LedgerAPI.check_proof_state(w, inputs)).states
    if all(s.unspent for s in states):
        if not entry.stale:
            journal.mark_stale(entry)
            log.info("wallet_swap_not_done", op=entry.op, inputs=len(inputs))
        return None
    outputs, rs = blinded(w, entry)
    restored_outputs, signatures = await LedgerAPI.restore_promises(w, outputs)
    by_b = {o.B_: s for o, s in zip(restored_outputs, signatures, strict=True)}
    promises = [by_b.get(o.B_) for o in outputs]
    if any(p is None for p in promises):
        # Inputs spent but not by this swap (another copy of the wallet, or the receiver of a
        # locked payment): nothing of ours to restore. Mark them spent and say so loudly.
        lost = sum(p.amount for p in inputs)
        log.error("wallet_swap_inputs_spent_elsewhere", op=entry.op, sats=lost)
        if entry.own_inputs:
            await w.invalidate(inputs)
        journal.remove(entry)
        return None
    got = await _store(w, entry, promises, rs, inputs)
    journal.remove(entry)
    log.warning(
        "wallet_swap_recovered",
        op=entry.op,
        kept_sats=sum(p.amount for p in got[0]),
        sent_sats=sum(p.amount for p in got[1]),
    )
    return got


async def _store(
    w: Wallet,
    entry: JournalEntry,
    promises: list[BlindedSignature | None],
    rs: list[Any],
    inputs: list[Proof],
) -> tuple[list[Proof], list[Proof]]:
    new = await w._construct_proofs(
        promises, [o.secret for o in entry.outputs], rs, [o.path for o in entry.outputs]
    )
    await w.invalidate(inputs)
    kept, sent = new[: entry.n_keep], new[entry.n_keep :]
    if sent:
        await w.set_reserved_for_send(sent, reserved=True)
    return kept, sent
