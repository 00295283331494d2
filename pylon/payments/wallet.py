"""One owner's Cashu wallet (a buyer's or a node's) over nutshell, for NIP-61 nutzaps.

- Amounts are whole sats (see pylon.payments.amounts for the msats rule).
- Every refused operation raises PaymentError with a code and changes nothing; the balance
  only moves when the mint accepted a swap.
- Operations on one wallet run one at a time (an anyio Lock): a node may be handed many
  nutzaps at once, and nutshell's wallet keeps in-memory state that is not safe to interleave.
- One PylonWallet per wallet file per process: two instances on one file would each trust
  their own view of the proofs.
- The swap with the mint and the storing of its result run shielded from cancellation, so a
  daemon shutting down never leaves the mint's answer unrecorded.
- An answer that never arrives loses nothing: every output is derived from the wallet's seed
  (NUT-13) and journaled before the swap, and an uncertain answer is settled with the mint
  (NUT-07 checkstate, NUT-09 restore) at once or by the next operation (pylon.payments.swap_journal).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx

from pylon.home import private_dir
from pylon.logs import get_logger
from pylon.payments import swap_journal
from pylon.payments._nutshell import nutshell, use_client
from pylon.payments.errors import PaymentError
from pylon.payments.proofs import (
    Lock,
    inspect_proofs,
    normalize_p2pk_pubkey,
    p2pk_keys_match,
    parse_lock,
    validate_proofs,
)
from pylon.schemas.payments import PaymentErrorCode, ProofInfo, SweepResult

if TYPE_CHECKING:
    from cashu.core.base import Proof
    from cashu.wallet.wallet import Wallet

log = get_logger("pylon.payments.wallet")

T = TypeVar("T")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MINT_CODE_RE = re.compile(r"\(Code: (\d+)\)")
# NUT error codes (nutshell cashu/core/errors.py)
_CODE_SPENT = 11001
_CODE_PENDING = 11002
_STATE_BATCH = 200  # proofs per /v1/checkstate call (the mint caps a request at 1000)

__all__ = ["PaymentError", "PylonWallet", "inspect_proofs"]


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def _ensure_private_file(path: Path) -> None:
    """Create `path` empty and 0600 if missing, tighten it if it exists.

    SQLite gives its -wal/-shm files the database file's mode, so creating the database 0600
    before nutshell opens it keeps all three private without touching the process umask.
    """
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    mode = path.stat().st_mode & 0o777
    if mode != 0o600:
        log.warning("wallet_file_mode_tightened", path=str(path), mode=f"{mode:o}")
        os.chmod(path, 0o600)


def _mint_error(exc: Exception, *, refund: bool) -> PaymentError | None:
    """Map what nutshell raised during a call to the mint onto a PaymentError (None: not a mint error)."""
    if isinstance(exc, PaymentError):
        return exc
    if isinstance(exc, httpx.TransportError | TimeoutError):
        return PaymentError(PaymentErrorCode.MINT_UNREACHABLE, f"{type(exc).__name__}: {exc}"[:200])
    if isinstance(exc, httpx.HTTPStatusError):
        return PaymentError(PaymentErrorCode.MINT_UNREACHABLE, f"mint HTTP {exc.response.status_code}")
    text = str(exc)
    if not text.startswith("Mint Error"):
        return None
    m = _MINT_CODE_RE.search(text)
    code = int(m.group(1)) if m else 0
    if code in (_CODE_SPENT, _CODE_PENDING):
        return PaymentError(PaymentErrorCode.SPENT, text[:200])
    if refund and ("signature" in text.lower() or "witness" in text.lower()):
        # the mint's clock says the refund path is not open yet
        return PaymentError(PaymentErrorCode.LOCKED, text[:200])
    return PaymentError(PaymentErrorCode.INVALID, text[:200])


class PylonWallet:
    """A Cashu wallet for one owner, bound to one mint. Build it with `await PylonWallet.open(...)`."""

    def __init__(self, wallet: Wallet, client: httpx.AsyncClient, db_path: Path, mint_url: str) -> None:
        self._w = wallet
        self._client = client
        self._lock = anyio.Lock()
        self._mint_loaded = False
        self.db_path = db_path
        self.mint_url = mint_url
        self._journal = swap_journal.Journal(db_path.with_name(db_path.stem + ".pending.json"))
        # Redeems settled from the journal after their caller was told "mint_unreachable": a
        # retry of the same proofs then finds them spent (by us) and gets its sats, not an error.
        self._recovered_redeems: dict[frozenset[str], int] = {}
        pub = wallet.private_key.public_key
        assert pub is not None
        # NIP-61: the advertised key is the x coordinate with a "02" prefix
        self._p2pk = "02" + pub.format()[1:].hex()

    # ---------- life cycle ----------

    @classmethod
    async def open(cls, data_dir: Path, mint_url: str, name: str, *, timeout_s: float = 30.0) -> PylonWallet:
        """Open (or create) the wallet `name` under `data_dir` for the mint at `mint_url`.

        The database is `data_dir/<name>.sqlite3` (0600, dir 0700); it holds the wallet's seed,
        which is also where its P2PK key comes from. The mint need not be up yet: keysets are
        loaded on the first operation that needs them.
        """
        nutshell()
        from cashu.core.settings import VERSION
        from cashu.wallet.utils import sanitize_url
        from cashu.wallet.wallet import Wallet

        if not _NAME_RE.match(name):
            raise ValueError(f"wallet name must be [A-Za-z0-9_.-], not {name!r}")
        url = sanitize_url(mint_url.strip())
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise ValueError(f"mint URL must be http(s)://host[:port], not {mint_url!r}")
        data_dir = private_dir(Path(data_dir))
        db_path = data_dir / f"{name}.sqlite3"
        _ensure_private_file(db_path)

        client = httpx.AsyncClient(
            base_url=url,
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            headers={"Client-version": VERSION},
            # a loopback mint must never be routed through an HTTP(S)_PROXY from the environment
            trust_env=not _is_loopback(url),
        )
        try:
            with use_client(client):
                w = await Wallet.with_db(url=url, db=str(data_dir), name=name)
                await w.load_proofs(reload=True)
        except BaseException:
            await client.aclose()
            raise
        for suffix in ("-wal", "-shm"):
            side = db_path.with_name(db_path.name + suffix)
            if side.exists() and side.stat().st_mode & 0o077:
                os.chmod(side, 0o600)
        self = cls(w, client, db_path, url)
        log.info("wallet_opened", name=name, mint=url, balance_sats=self.balance())
        return self

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._w.db.engine.dispose()

    async def __aenter__(self) -> PylonWallet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---------- reading ----------

    def balance(self) -> int:
        """Spendable sats: proofs held, minus those locked away in outstanding payments."""
        return sum(p.amount for p in self._w.proofs if not p.reserved)

    def outstanding_sats(self) -> int:
        """Sats sent as locked payments whose fate (redeemed or refunded) is not settled yet."""
        return sum(p.amount for p in self._w.proofs if p.reserved)

    def pending_swaps(self) -> int:
        """Swaps whose mint answer was lost and is not settled yet (the next operation settles
        them; until then their inputs still count in the balance)."""
        return len(self._journal.unsettled())

    def p2pk_pubkey(self) -> str:
        """The P2PK key to advertise in kind 10019 ("02" + x, 66 hex chars). Not a nostr key."""
        return self._p2pk

    @staticmethod
    def inspect_proofs(proofs: list[dict]) -> ProofInfo:
        return inspect_proofs(proofs)

    # ---------- operations ----------

    async def fund(self, amount_sats: int) -> int:
        """Testnet top-up: ask the mint for a quote (a FakeWallet mint pays it by itself) and mint
        the proofs. Returns the new balance."""
        amount = self._check_amount(amount_sats)

        async def op() -> int:
            await self._ensure_mint()
            quote = await self._w.request_mint(amount)
            try:
                await self._w.mint(amount, quote_id=quote.quote)
            except Exception as exc:
                if "quote not paid" in str(exc).lower():
                    raise PaymentError(
                        PaymentErrorCode.INVALID, "mint quote unpaid (not a FakeWallet testnet mint?)"
                    ) from None
                raise
            return self.balance()

        new_balance = await self._locked(op, refund=False)
        log.info("wallet_funded", amount_sats=amount, balance_sats=new_balance)
        return new_balance

    async def _funded_swap(self, total: int, swap: Callable[[], Awaitable[list[Proof]]]) -> list[Proof]:
        """Run `swap` (which must spend `total` sats of ours) and reserve what it returns.

        If the mint says we held proofs it has seen spent (a swap whose answer was lost, or the
        file changed under us), re-read, drop them and try once more.
        """
        await self._ensure_mint()
        for attempt in (1, 2):
            if self.balance() < total:
                raise PaymentError(
                    PaymentErrorCode.INSUFFICIENT_FUNDS, f"balance {self.balance()} sats < {total} sats"
                )
            try:
                send = await swap()
                break
            except Exception as exc:
                err = _mint_error(exc, refund=False)
                if attempt == 2 or err is None or err.code != PaymentErrorCode.SPENT:
                    raise
                held = {p.secret for p in self._w.proofs if not p.reserved}
                await self._reconcile()
                if held == {p.secret for p in self._w.proofs if not p.reserved}:
                    raise
        return send  # reserved (outstanding) by swap_journal as it stores them

    async def send_locked(
        self,
        amount_sats: int,
        to_p2pk_pubkey: str,
        *,
        locktime_s: int | None = None,
        refund_pubkey: str | None = None,
    ) -> list[dict]:
        """Swap `amount_sats` out of the balance into proofs P2PK-locked to `to_p2pk_pubkey`.

        Returns the proofs as NUT-00 dicts (id, amount, secret, C, dleq) for a kind-9321 nutzap.
        The balance drops by exactly `amount_sats`; the proofs stay in this wallet as
        *outstanding* until `sweep_outstanding()` sees them redeemed or refunds them.

        With `locktime_s`, after that many seconds the refund key (`refund_pubkey`, by default
        this wallet's own P2PK key) may take the proofs back with `refund()`; without it only
        the receiver can ever spend them. Bad arguments raise ValueError.
        """
        amount = self._check_amount(amount_sats)
        to_key = normalize_p2pk_pubkey(to_p2pk_pubkey)
        tags: list[list[str]] = []
        if locktime_s is not None:
            if isinstance(locktime_s, bool) or not isinstance(locktime_s, int) or locktime_s <= 0:
                raise ValueError(f"locktime_s must be a positive int, got {locktime_s!r}")
            refund_key = normalize_p2pk_pubkey(refund_pubkey) if refund_pubkey else self._p2pk
            tags += [["locktime", str(int(time.time()) + locktime_s)], ["refund", refund_key]]
        elif refund_pubkey is not None:
            raise ValueError("refund_pubkey needs a locktime_s (without one there is no refund path)")
        tags.append(["sigflag", "SIG_INPUTS"])

        async def op() -> list[dict]:
            send = await self._funded_swap(amount, lambda: self._swap_out([(amount, to_key)], tags))
            return [p.to_dict(include_dleq=True) for p in send]

        proofs = await self._locked(op, refund=False)
        log.info("wallet_sent_locked", amount_sats=amount, to=to_key[:16], locktime_s=locktime_s)
        return proofs

    async def send_locked_many(
        self,
        payments: list[tuple[int, str]],
        *,
        locktime_s: int | None = None,
        refund_pubkey: str | None = None,
    ) -> list[list[dict]]:
        """`send_locked` for many payments in ONE swap with the mint: [(sats, to_p2pk_pubkey), ...]
        → one list of proofs per payment, in order, each locked to its own key.

        Same rules as send_locked (exact amounts, outstanding until swept, the same locktime and
        refund key for all); it exists because a swap costs the mint far more than an output,
        so a buyer paying many results at once pays them in one round trip.
        """
        if not payments:
            return []
        amounts = [self._check_amount(a) for a, _ in payments]
        keys = [normalize_p2pk_pubkey(k) for _, k in payments]
        tags: list[list[str]] = []
        if locktime_s is not None:
            if isinstance(locktime_s, bool) or not isinstance(locktime_s, int) or locktime_s <= 0:
                raise ValueError(f"locktime_s must be a positive int, got {locktime_s!r}")
            refund_key = normalize_p2pk_pubkey(refund_pubkey) if refund_pubkey else self._p2pk
            tags += [["locktime", str(int(time.time()) + locktime_s)], ["refund", refund_key]]
        elif refund_pubkey is not None:
            raise ValueError("refund_pubkey needs a locktime_s (without one there is no refund path)")
        tags.append(["sigflag", "SIG_INPUTS"])
        total = sum(amounts)

        from cashu.core.split import amount_split

        owner = [i for i, amount in enumerate(amounts) for _ in amount_split(amount)]

        async def op() -> list[list[dict]]:
            send = await self._funded_swap(
                total, lambda: self._swap_out(list(zip(amounts, keys, strict=True)), tags)
            )
            out: list[list[dict]] = [[] for _ in amounts]
            for i, p in zip(owner, send, strict=True):
                out[i].append(p.to_dict(include_dleq=True))
            return out

        result = await self._locked(op, refund=False)
        log.info("wallet_sent_locked_many", payments=len(amounts), amount_sats=total, locktime_s=locktime_s)
        return result

    async def redeem(self, proofs: list[dict]) -> int:
        """Swap proofs P2PK-locked to our key into this wallet. Returns the sats received.

        Refuses (PaymentError) proofs locked to another key or not locked at all
        ("wrong_lock"), already spent ("spent"), malformed/forged/rejected ("invalid"), from
        another mint ("wrong_mint"), or when the mint does not answer ("mint_unreachable").
        """
        clean = validate_proofs(proofs)
        for p in clean:
            self._check_lock(parse_lock(p["secret"]), refund=False)
        try:
            received = await self._locked(lambda: self._swap_in(clean), refund=False)
        except PaymentError as exc:
            if exc.code != PaymentErrorCode.SPENT:
                raise
            # Spent: maybe by our own redeem whose answer was lost (settled since, or a late
            # copy that landed after the mint said it had not happened). Then it is ours.
            if self._journal.stale():
                await self._locked(lambda: self._settle_journal(stale=True), refund=False)
            done = self._already_redeemed(clean)
            if done is None:
                raise
            received = done
        log.info("wallet_redeemed", amount_sats=received, proofs=len(clean))
        return received

    async def refund(self, proofs: list[dict]) -> int:
        """Take back our own locked payment after its locktime (we hold a refund key).

        Before the locktime: PaymentError("locked"); already redeemed by the receiver: "spent".
        Returns the sats restored to the balance.
        """
        clean = validate_proofs(proofs)
        now = time.time()
        for p in clean:
            lock = self._check_lock(parse_lock(p["secret"]), refund=True)
            assert lock.locktime is not None
            if not lock.locktime < now:  # the mint's own test: the refund path opens strictly after
                raise PaymentError(
                    PaymentErrorCode.LOCKED, f"locked for {lock.locktime - int(now) + 1} more seconds"
                )
        received = await self._locked(lambda: self._swap_in(clean), refund=True)
        log.info("wallet_refunded", amount_sats=received, proofs=len(clean))
        return received

    async def sweep_outstanding(self) -> SweepResult:
        """Settle outstanding locked payments: drop those the receiver redeemed, refund those whose
        locktime passed unredeemed. A buyer runs this now and then (it costs one mint call)."""

        async def op() -> SweepResult:
            await self._ensure_mint()
            reserved = [p for p in self._w.proofs if p.reserved]
            if not reserved:
                return SweepResult(settled_sats=0, refunded_sats=0, outstanding_sats=0)
            states = []
            for i in range(0, len(reserved), _STATE_BATCH):
                states += (await self._w.check_proof_state(reserved[i : i + _STATE_BATCH])).states
            spent = [p for p, s in zip(reserved, states, strict=True) if s.spent]
            if spent:
                await self._w.invalidate(spent)
            now = time.time()
            refundable: list[Proof] = []
            for p, s in zip(reserved, states, strict=True):
                lock = parse_lock(p.secret)
                if (
                    s.unspent
                    and lock is not None
                    and lock.locktime is not None
                    and lock.locktime < now
                    and any(p2pk_keys_match(k, self._p2pk) for k in lock.refund)
                ):
                    refundable.append(p)
            refunded = 0
            if refundable:
                refunded = await self._swap_in([p.to_dict(include_dleq=False) for p in refundable])
            return SweepResult(
                settled_sats=sum(p.amount for p in spent),
                refunded_sats=refunded,
                outstanding_sats=self.outstanding_sats(),
            )

        result = await self._locked(op, refund=True)
        if result.settled_sats or result.refunded_sats:
            log.info("wallet_swept", **{f: getattr(result, f) for f in result.__struct_fields__})
        return result

    async def reconcile(self) -> int:
        """Re-read the wallet file and drop spendable-looking proofs the mint has seen spent.

        Returns how many sats the balance dropped by. `send_locked` does this by itself when
        the mint says an input was spent; it matters after a swap whose answer never arrived.
        """
        return await self._locked(self._reconcile, refund=False)

    # ---------- internals ----------

    async def _swap_out(self, payments: list[tuple[int, str]], tags: list[list[str]]) -> list[Proof]:
        """One journaled swap paying [(sats, p2pk key), ...]: one output per power-of-two part of
        each payment, locked to its key (NUT-13 nonce and blinding factor), change kept. Returns
        the sent proofs in payment order."""
        from cashu.core.p2pk import P2PKSecret
        from cashu.core.secret import SecretKind, Tags
        from cashu.core.split import amount_split

        w = self._w
        total = sum(a for a, _ in payments)
        send = [
            (part, P2PKSecret(kind=SecretKind.P2PK.value, data=key, tags=Tags(tags)))
            for amount, key in payments
            for part in amount_split(amount)
        ]
        inputs = w.coinselect(w.active_proofs(w.proofs), total, include_fees=True)
        change = sum(p.amount for p in inputs) - total - w.get_fees_for_proofs(inputs)
        keep_amounts = w.split_wallet_state(change)
        entry = swap_journal.JournalEntry(
            op="send",
            keyset_id=w.keyset_id,
            inputs=swap_journal.input_dicts(inputs),
            outputs=await swap_journal.derive_outputs(w, keep_amounts, send),
            n_keep=len(keep_amounts),
            created=time.time(),
        )
        await w._check_used_secrets([o.secret for o in entry.outputs])
        _, sent = await swap_journal.swap(w, self._journal, entry, inputs)
        return sent

    async def _settle_journal(self, *, stale: bool = False) -> int:
        """Settle swaps whose answer was lost (raises if the mint still cannot be asked); with
        `stale`, also re-check those the mint said had not happened (a late copy may have
        landed since). Returns the sats kept by recovered swaps."""
        self._journal.drop_stale(set(), time.time())
        kept = 0
        for entry in self._journal.unsettled() + (self._journal.stale() if stale else []):
            await self._ensure_mint()
            got = await swap_journal.resolve(self._w, self._journal, entry)
            if got is not None:
                kept += sum(p.amount for p in got[0])
                if entry.op == "redeem":
                    if len(self._recovered_redeems) >= 1024:
                        self._recovered_redeems.pop(next(iter(self._recovered_redeems)))
                    self._recovered_redeems[frozenset(p["secret"] for p in entry.inputs)] = sum(
                        p.amount for p in got[0]
                    )
        return kept

    def _already_redeemed(self, clean: list[dict[str, Any]]) -> int | None:
        secrets = frozenset(p["secret"] for p in clean)
        for done, sats in self._recovered_redeems.items():
            if secrets <= done:
                return sats if secrets == done else sum(p["amount"] for p in clean)
        return None

    async def _reconcile(self) -> int:
        await self._ensure_mint()
        before = self.balance()
        await self._settle_journal(stale=True)  # a swap that landed late is ours: restore it first
        await self._w.load_proofs(reload=True)
        held = [p for p in self._w.proofs if not p.reserved]
        spent: list[Proof] = []
        for i in range(0, len(held), _STATE_BATCH):
            batch = held[i : i + _STATE_BATCH]
            states = (await self._w.check_proof_state(batch)).states
            spent += [p for p, st in zip(batch, states, strict=True) if not st.unspent]
        if spent:
            await self._w.invalidate(spent)
            log.warning("wallet_dropped_spent_proofs", sats=sum(p.amount for p in spent), proofs=len(spent))
        return before - self.balance()

    @staticmethod
    def _check_amount(amount_sats: int) -> int:
        if isinstance(amount_sats, bool) or not isinstance(amount_sats, int) or amount_sats <= 0:
            raise ValueError(f"amount_sats must be a positive int, got {amount_sats!r}")
        return amount_sats

    def _check_lock(self, lock: Lock | None, *, refund: bool) -> Lock:
        """The proof's lock, if this wallet can sign for it on the wanted path; else "wrong_lock"."""
        if lock is None or lock.kind != "P2PK":
            raise PaymentError(PaymentErrorCode.WRONG_LOCK, "proof is not P2PK-locked")
        if lock.sigflag != "SIG_INPUTS" or lock.n_sigs != 1:
            raise PaymentError(PaymentErrorCode.WRONG_LOCK, "unsupported lock (multisig or SIG_ALL)")
        if refund:
            if lock.locktime is None or not any(p2pk_keys_match(k, self._p2pk) for k in lock.refund):
                raise PaymentError(PaymentErrorCode.WRONG_LOCK, "we hold no refund key for this proof")
        elif not p2pk_keys_match(lock.data, self._p2pk):
            raise PaymentError(PaymentErrorCode.WRONG_LOCK, f"locked to {lock.data[:16]}…, not to us")
        return lock

    async def _locked(self, op: Callable[[], Awaitable[T]], *, refund: bool) -> T:
        """Run `op` alone on this wallet, with our HTTP client, mapping mint failures to PaymentError."""
        async with self._lock:
            try:
                # shielded: once a swap reached the mint, its answer must be stored
                with anyio.CancelScope(shield=True), use_client(self._client):
                    if self._journal.unsettled():
                        await self._settle_journal()
                    return await op()
            except Exception as exc:
                mapped = _mint_error(exc, refund=refund)
                if mapped is None:
                    raise
                if mapped is not exc:
                    raise mapped from None
                raise

    async def _ensure_mint(self) -> None:
        """Load the mint's keysets once (lazily, so a wallet opens while its mint is down)."""
        if self._mint_loaded:
            return
        await self._w.load_mint_keysets()
        await self._w.activate_keyset()
        await self._w.load_mint_info(reload=True)
        self._mint_loaded = True

    async def _swap_in(self, clean: list[dict[str, Any]]) -> int:
        """Swap checked proofs (locked to a key we hold) for fresh ones of our own."""
        from cashu.core.base import P2PKWitness, Proof
        from cashu.core.crypto import b_dhke
        from cashu.core.crypto.secp import PrivateKey, PublicKey
        from cashu.core.p2pk import schnorr_sign

        await self._ensure_mint()
        w = self._w
        if any(p["id"] not in w.keysets for p in clean):
            await w.load_mint_keysets()
        unknown = sorted({p["id"] for p in clean if p["id"] not in w.keysets})
        if unknown:
            raise PaymentError(PaymentErrorCode.WRONG_MINT, f"unknown keyset {unknown[0][:16]}…")

        proofs: list[Proof] = []
        for p in clean:
            keyset = w.keysets[p["id"]]
            key = keyset.public_keys.get(p["amount"])
            if key is None:
                raise PaymentError(PaymentErrorCode.INVALID, f"the mint has no key for amount {p['amount']}")
            proof = Proof.from_dict(dict(p))
            # NUT-12: a DLEQ proof shows the mint really signed this proof, before we ask it
            if proof.dleq is not None:
                try:
                    ok = b_dhke.carol_verify_dleq(
                        secret_msg=proof.secret,
                        C=PublicKey(bytes.fromhex(proof.C)),
                        r=PrivateKey(bytes.fromhex(proof.dleq.r)),
                        e=PrivateKey(bytes.fromhex(proof.dleq.e)),
                        s=PrivateKey(bytes.fromhex(proof.dleq.s)),
                        A=key,
                    )
                except Exception:
                    ok = False
                if not ok:
                    raise PaymentError(PaymentErrorCode.INVALID, "DLEQ proof does not match the mint's key")
            # sign ourselves: nutshell only signs locks that spell our key exactly as it
            # derives it, and a NIP-61 lock may carry the "02" form of an odd-y key
            sig = schnorr_sign(proof.secret.encode("utf-8"), w.private_key).hex()
            proof.witness = P2PKWitness(signatures=[sig]).model_dump_json()
            proofs.append(proof)

        before = self.balance()
        keep_amounts, _ = w.determine_output_amounts(proofs, 0, keyset_id_outputs=w.keyset_id)
        entry = swap_journal.JournalEntry(
            op="redeem",
            keyset_id=w.keyset_id,
            inputs=swap_journal.input_dicts(proofs),
            outputs=await swap_journal.derive_outputs(w, keep_amounts, []),
            n_keep=len(keep_amounts),
            created=time.time(),
            own_inputs=False,
        )
        keep, _ = await swap_journal.swap(w, self._journal, entry, proofs)
        received = sum(p.amount for p in keep)
        if self.balance() != before + received:  # would be a bug in the bookkeeping, not bad input
            log.error("wallet_balance_mismatch", before=before, received=received, after=self.balance())
        return received
