"""`pylon trail`: a job's provenance rebuilt from a real relay, with real ecash from a real mint.

Each test publishes one job's signed events (request, feedback, result, kind-10019, a 9321
nutzap holding proofs P2PK-locked by a real nutshell mint, the node's 7376 receipt after it
really redeemed them) to a relay process, then rebuilds the trail from the relay alone. The
tampered variants must come back `verified: false` with the failing link marked.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import msgspec
import pytest
import websockets
from click.testing import CliRunner
from mint_support import mint_in
from pylon.schemas import kinds
from pylon.schemas.errors import ErrorCode
from pylon.schemas.events import FeedbackStatus, FileResult, Redemption, ResultTiming, Symbol
from pylon.schemas.provenance import Trail

from pylon.cli.main import cli
from pylon.keys import NostrKeys
from pylon.localmarket.launcher import LocalMarket
from pylon.nostr import nip60, nip61, nip90
from pylon.nostr.event import NostrEvent, encode_event, now_ms, sign_event
from pylon.nostr.relay_client import RelayPool
from pylon.payments import PylonWallet
from pylon.provenance.trail import build_trail, build_trail_from_relays

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TEXT = "def hello():\n    return 'world'\n"
SHA = nip90.sha256_hex(TEXT.encode())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def relay_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    m = LocalMarket(home=tmp_path_factory.mktemp("relay") / "home", nodes=0, memory_relay=True)
    try:
        m.start_relay()
        yield m.relay_url
    finally:
        m.stop()


@pytest.fixture(scope="module")
def mint_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("mint")
    with mint_in(base) as cfg:
        yield cfg.url


@contextlib.asynccontextmanager
async def open_pool(url: str) -> AsyncIterator[RelayPool]:
    pool = RelayPool([url])
    async with anyio.create_task_group() as tg:
        await pool.start(tg)
        try:
            yield pool
        finally:
            tg.cancel_scope.cancel()


@dataclass
class Market:
    """One buyer, one node, one stranger; the buyer and the node hold real wallets."""

    pool: RelayPool
    mint: str
    buyer: NostrKeys
    node: NostrKeys
    stranger: NostrKeys
    buyer_wallet: PylonWallet
    node_wallet: PylonWallet

    async def put(self, *events: NostrEvent) -> None:
        for ev in events:
            assert await self.pool.publish(ev, wait_ok=10), ev.kind

    async def job(
        self,
        *,
        price_msats: int = 2000,
        bid_msats: int = 5000,
        result_by: NostrKeys | None = None,
        bad_hash: bool = False,
        acknowledged: bool = True,
    ) -> tuple[NostrEvent, NostrEvent]:
        """Request, processing feedback (unless the node answered first) and result."""
        req = nip90.build_request(
            self.buyer,
            path="hello.py",
            language="python",
            text=TEXT,
            sha256=SHA,
            size=len(TEXT),
            node=self.node.pubkey,
            run_id=None,
            bid_msats=bid_msats,
        )
        parsed = nip90.parse_request(req)
        fb = nip90.build_feedback(
            self.node, job_id=req.id, buyer=self.buyer.pubkey, status=FeedbackStatus.PROCESSING
        )
        t = now_ms()
        payload = FileResult(
            path="hello.py",
            language="python",
            lines=2,
            imports=[],
            summary="says hello",
            symbols=[Symbol(name="hello", kind="function", line=1)],
            input_sha256=SHA,
        )
        res = nip90.build_result(
            result_by or self.node,
            request=parsed,
            result=payload,
            timing=ResultTiming(received_ms=t, started_ms=t, finished_ms=t + 3),
            amount_msats=price_msats,
        )
        if bad_hash:  # signed by the right node, but `x` is not the hash of the content
            tags = [["x", "0" * 64] if tg[0] == "x" else tg for tg in res.tags]
            res = sign_event(self.node, kinds.JOB_RESULT, res.content, tags)
        await self.put(req, *([fb] if acknowledged else []), res)
        return req, res

    async def pay(
        self, req: NostrEvent, res: NostrEvent, *, sats: int = 2, lock_to: str | None = None
    ) -> tuple[NostrEvent, list[dict]]:
        proofs = await self.buyer_wallet.send_locked(sats, lock_to or self.node_wallet.p2pk_pubkey())
        zap = nip61.build_nutzap(
            self.buyer,
            job_id=req.id,
            result_id=res.id,
            node=res.pubkey,
            mint=self.mint,
            amount_msats=sats * 1000,
            proofs=json.loads(json.dumps(proofs)),
        )
        await self.put(zap)
        return zap, proofs

    async def receipt(self, req: NostrEvent, zap: NostrEvent, proofs: list[dict]) -> NostrEvent:
        got = await self.node_wallet.redeem(proofs)
        rec = nip60.build_redemption(
            self.node,
            buyer=self.buyer.pubkey,
            redemption=Redemption(
                direction="in", amount_sats=got, job_id=req.id, payment_id=zap.id, mint=self.mint
            ),
        )
        await self.put(rec)
        return rec


@pytest.fixture
async def market(
    tmp_path: Path, relay_url: str, mint_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Market]:
    monkeypatch.setenv("PYLON_HOME", str(tmp_path))
    buyer_w = await PylonWallet.open(tmp_path / "buyer" / "wallet", mint_url, "buyer")
    node_w = await PylonWallet.open(tmp_path / "node" / "wallet", mint_url, "node")
    try:
        await buyer_w.fund(50)
        async with open_pool(relay_url) as pool:
            m = Market(
                pool=pool,
                mint=mint_url,
                buyer=NostrKeys.generate(),
                node=NostrKeys.generate(),
                stranger=NostrKeys.generate(),
                buyer_wallet=buyer_w,
                node_wallet=node_w,
            )
            await m.put(
                nip61.build_nutzap_info(
                    m.node, mints=[mint_url], relays=[relay_url], p2pk_pubkey=node_w.p2pk_pubkey()
                )
            )
            yield m
    finally:
        await buyer_w.aclose()
        await node_w.aclose()


def links(trail: Trail, role: str) -> list:
    return [link for link in trail.chain if link.role == role]


async def test_paid_job_verifies_end_to_end_and_through_the_cli(market: Market, relay_url: str) -> None:
    req, res = await market.job(price_msats=2000)
    zap, proofs = await market.pay(req, res, sats=2)
    rec = await market.receipt(req, zap, proofs)

    trail = await build_trail(market.pool, req.id)
    assert trail.found and trail.verified and trail.verified_through == "receipt", trail.problems
    assert [link.role for link in trail.chain] == ["request", "feedback", "result", "payment", "receipt"]
    assert [link.id for link in trail.chain] == [req.id, trail.chain[1].id, res.id, zap.id, rec.id]
    assert all(link.valid and link.on_path for link in trail.chain)
    assert (trail.result_id, trail.payment_id, trail.receipt_id) == (res.id, zap.id, rec.id)
    assert trail.provider == market.node.pubkey and trail.buyer == market.buyer.pubkey
    assert trail.paid_msats == 2000 and trail.problems == []
    for later in (res.id, zap.id):  # the id of a later link leads to the same job
        again = await build_trail(market.pool, later)
        assert again.job_id == req.id and again.verified

    # DESIGN §5: the JSON document, from the command line, with no daemon running.
    out = await anyio.run_process(
        [sys.executable, "-m", "pylon.cli.main", "trail", req.id, "--relay", relay_url, "--json"], check=False
    )
    assert out.returncode == 0, out.stderr.decode()
    doc = json.loads(out.stdout)
    assert (
        {"job_id", "verified", "chain"} <= doc.keys() and doc["job_id"] == req.id and doc["verified"] is True
    )
    for link in doc["chain"]:
        assert {"role", "kind", "id", "pubkey", "created_at", "valid"} <= link.keys()
    assert [(x["role"], x["kind"]) for x in doc["chain"]] == [
        ("request", 5931),
        ("feedback", 7000),
        ("result", 6931),
        ("payment", 9321),
        ("receipt", 7376),
    ]

    # The tree and the unknown-job error, in-process (the CLI runs its own event loop: a thread).
    tree = await anyio.to_thread.run_sync(
        lambda: CliRunner().invoke(cli, ["trail", req.id, "--relay", relay_url])
    )
    assert tree.exit_code == 0 and tree.output.count("✓") == 5 and "verified" in tree.output
    unknown = await anyio.to_thread.run_sync(
        lambda: CliRunner().invoke(cli, ["trail", "ab" * 32, "--relay", relay_url, "--json"])
    )
    assert unknown.exit_code == 1 and unknown.stdout == ""
    assert "not_found" in unknown.stderr


async def test_a_job_answered_before_its_acknowledgement_verifies_without_one(market: Market) -> None:
    """A node acknowledges only a job it has not answered within half a second (node_acks)."""
    req, res = await market.job(acknowledged=False)
    zap, proofs = await market.pay(req, res, sats=2)
    rec = await market.receipt(req, zap, proofs)
    trail = await build_trail(market.pool, req.id)
    assert trail.verified and trail.verified_through == "receipt" and trail.problems == [], trail.problems
    assert [link.role for link in trail.chain] == ["request", "result", "payment", "receipt"]
    assert [link.id for link in trail.chain] == [req.id, res.id, zap.id, rec.id]


async def test_no_feedback_and_no_result_stops_the_chain_at_the_request(market: Market) -> None:
    req, res = await market.job(acknowledged=False, result_by=market.stranger)
    trail = await build_trail(market.pool, req.id)
    assert not trail.verified and trail.verified_through == "request"
    assert "no valid feedback on the last attempt" in trail.problems
    (bad,) = links(trail, "result")
    assert bad.id == res.id and not bad.valid


async def test_result_signed_by_another_key_breaks_the_chain(market: Market) -> None:
    req, res = await market.job(result_by=market.stranger)
    trail = await build_trail(market.pool, req.id)
    assert not trail.verified and trail.verified_through == "feedback"
    (bad,) = links(trail, "result")
    assert bad.id == res.id and bad.pubkey == market.stranger.pubkey and not bad.valid and not bad.on_path
    assert bad.problems == ["not signed by the node the attempt was assigned to"]
    assert any(p.startswith(f"invalid result {res.id[:12]}") for p in trail.problems)


async def test_result_with_a_wrong_hash_is_marked(market: Market) -> None:
    req, res = await market.job(bad_hash=True)
    zap, _ = await market.pay(req, res)  # paying it does not make it right
    trail = await build_trail(market.pool, req.id)
    assert not trail.verified and trail.verified_through == "feedback"
    (bad,) = links(trail, "result")
    assert not bad.valid and "content does not match its x hash" in bad.problems
    (pay,) = links(trail, "payment")
    assert pay.id == zap.id and not pay.valid and "pays a result that does not verify" in pay.problems


async def test_payment_locked_to_the_wrong_key_is_marked(market: Market, tmp_path: Path) -> None:
    req, res = await market.job()
    async with await PylonWallet.open(tmp_path / "other", market.mint, "other") as other:
        zap, _ = await market.pay(req, res, lock_to=other.p2pk_pubkey())
    trail = await build_trail(market.pool, req.id)
    assert not trail.verified and trail.verified_through == "result"
    (pay,) = links(trail, "payment")
    assert pay.id == zap.id and not pay.valid
    assert pay.problems == ["locked to a key other than the node's kind-10019 P2PK key"]
    assert trail.payment_id is None and links(trail, "result")[0].valid


async def test_payment_smaller_than_the_price_is_marked(market: Market) -> None:
    req, res = await market.job(price_msats=5000)
    zap, proofs = await market.pay(req, res, sats=2)
    await market.receipt(req, zap, proofs)  # redeemed, but it was not enough
    trail = await build_trail(market.pool, req.id)
    assert not trail.verified and trail.verified_through == "result"
    (pay,) = links(trail, "payment")
    assert pay.problems == ["too small: proofs hold 2000 msat, the price is 5000"]
    (rec,) = links(trail, "receipt")
    assert rec.valid and not rec.on_path  # a fine receipt, for a payment that is not on the path


async def test_retried_job_follows_attempts_and_stops_at_the_result_when_unpaid(market: Market) -> None:
    """Attempt 1 errors on node A; attempt 2 (a new request tagging the job) is answered by B."""
    node_a, node_b, buyer = market.stranger, market.node, market.buyer
    first = nip90.build_request(
        buyer,
        path="x.py",
        language="python",
        text=TEXT,
        sha256=SHA,
        size=len(TEXT),
        node=node_a.pubkey,
        run_id=None,
    )
    err = nip90.build_feedback(
        node_a,
        job_id=first.id,
        buyer=buyer.pubkey,
        status=FeedbackStatus.ERROR,
        error=ErrorCode.EXEC_ERROR,
        message="boom",
    )
    retry = nip90.build_request(
        buyer,
        path="x.py",
        language="python",
        text=TEXT,
        sha256=SHA,
        size=len(TEXT),
        node=node_b.pubkey,
        run_id=None,
        attempt=2,
        retry_of=first.id,
    )
    fb = nip90.build_feedback(node_b, job_id=retry.id, buyer=buyer.pubkey, status=FeedbackStatus.PROCESSING)
    t = now_ms()
    res = nip90.build_result(
        node_b,
        request=nip90.parse_request(retry),
        result=FileResult(
            path="x.py", language="python", lines=2, symbols=[], imports=[], summary="", input_sha256=SHA
        ),
        timing=ResultTiming(received_ms=t, started_ms=t, finished_ms=t),
    )
    await market.put(first, err, retry, fb, res)

    for asked in (first.id, retry.id):  # an attempt's id leads to its job
        trail = await build_trail(market.pool, asked)
        assert trail.job_id == first.id and trail.attempts == 2
        assert not trail.verified and trail.verified_through == "result"
        assert trail.result_id == res.id and trail.provider == node_b.pubkey
        assert [link.id for link in links(trail, "request")] == [first.id, retry.id]
        assert all(link.valid for link in trail.chain)
        fbs = {link.id: link for link in links(trail, "feedback")}
        assert fbs[fb.id].on_path and not fbs[err.id].on_path and "exec_error" in fbs[err.id].detail
        assert "no payment on the relay" in trail.problems


# --- a relay that serves a forged event -----------------------------------------------------------


async def test_forged_signature_is_shown_invalid_not_dropped() -> None:
    """Real relays refuse forged events, so a lying relay is stood up here: the trail must show the
    forgery (RelayPool.query would silently drop it)."""
    buyer, node = NostrKeys.generate(), NostrKeys.generate()
    req = nip90.build_request(
        buyer,
        path="f.py",
        language="python",
        text=TEXT,
        sha256=SHA,
        size=len(TEXT),
        node=node.pubkey,
        run_id=None,
    )
    fb = nip90.build_feedback(node, job_id=req.id, buyer=buyer.pubkey, status=FeedbackStatus.PROCESSING)
    t = now_ms()
    res = nip90.build_result(
        node,
        request=nip90.parse_request(req),
        result=FileResult(path="f.py", language="python", lines=2, symbols=[], imports=[], summary=""),
        timing=ResultTiming(received_ms=t, started_ms=t, finished_ms=t),
    )
    forged = msgspec.structs.replace(res, sig=res.sig[:-2] + ("00" if res.sig[-2:] != "00" else "11"))
    stored = [req, fb, forged]

    async def serve(ws: websockets.WebSocketServerProtocol) -> None:
        async for raw in ws:
            msg = json.loads(raw)
            if msg[0] != "REQ":
                continue
            sub, flt = msg[1], msg[2]
            for ev in stored:
                if "ids" in flt and ev.id not in flt["ids"]:
                    continue
                if "kinds" in flt and ev.kind not in flt["kinds"]:
                    continue
                if "#e" in flt and not any(tg[0] == "e" and tg[1] in flt["#e"] for tg in ev.tags):
                    continue
                if "authors" in flt and ev.pubkey not in flt["authors"]:
                    continue
                await ws.send('["EVENT",' + json.dumps(sub) + "," + encode_event(ev).decode() + "]")
            await ws.send(json.dumps(["EOSE", sub]))

    async with websockets.serve(serve, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        trail = await build_trail_from_relays([f"ws://127.0.0.1:{port}"], req.id, timeout=5)
    assert not trail.verified and trail.verified_through == "feedback"
    (bad,) = links(trail, "result")
    assert bad.id == res.id and not bad.valid
    assert bad.problems == ["signature check failed (bad_signature)"]


async def test_strangers_nested_nutzap_is_marked_not_fatal(market: Market, relay_url: str) -> None:
    """Issue 10 item 4: a proof tag nested 5000 deep raised RecursionError and broke the trail."""
    req, res = await market.job(price_msats=2000)
    nested = '{"amount": 1, "witness": ' + "[" * 5000 + "]" * 5000 + "}"
    tags = [
        ["proof", nested],
        ["u", market.mint],
        ["e", res.id, "", "result"],
        ["e", req.id, "", "job"],
        ["p", market.node.pubkey],
        ["amount", "2000", "msat"],
        ["unit", "sat"],
    ]
    await market.put(sign_event(market.stranger, kinds.NUTZAP, "", tags))
    trail = await build_trail(market.pool, req.id)
    assert trail.found and trail.verified_through == "result"
    assert [link.role for link in trail.chain][:3] == ["request", "feedback", "result"]
    bad = links(trail, "payment")
    assert len(bad) == 1 and not bad[0].valid and bad[0].pubkey == market.stranger.pubkey
    out = await anyio.to_thread.run_sync(
        lambda: CliRunner().invoke(cli, ["trail", req.id, "--relay", relay_url])
    )
    assert out.exit_code == 0, out.output
    assert out.output.count("✓") == 3 and "✗" in out.output
