"""Issue 10's hostile corpus run against a live, paid market (relay, mint, buyer, two nodes).

One stranger throws everything at once-honest nodes, on top of tests/test_adversarial_corpus.py's
older corpus: a chunked decompression bomb, a parse bomb (256 KiB of `(`, ~300 bytes once
compressed), nutzaps with nested proofs, receipts from a key that is no provider, 300 idle RPC
connections and a half-sent frame on a node's socket, a flood of rejected requests from fresh
keys, and a repository whose git config runs a command. Afterwards: no daemon died, the node's
RPC kept answering during the parse attack (its event loop did not stall), every honest job
completed and was paid, the balances are exact, and every SQLite file passes integrity_check.
"""

from __future__ import annotations

import base64
import subprocess
import time
import zlib
from pathlib import Path

import anyio
import msgspec
import pytest
from faults_support import integrity_ok, node_pubkey, relay_query, wait_for
from pylon.schemas import kinds, rpc
from pylon.schemas.events import InputChunk, Redemption
from pylon.schemas.rpc import RPC_VERSION, Hello
from test_adversarial_corpus import publish_all, status, submit, wait_completed

from pylon.keys import NostrKeys
from pylon.localmarket.launcher import LocalMarket
from pylon.nostr import nip60, nip90
from pylon.nostr.event import NostrEvent, sign_event
from pylon.nostr.filters import Filter
from pylon.rpc.framing import FrameReader, encode_frame
from pylon.rpc.unixsock import connect_unix

pytestmark = pytest.mark.integration

PRICE_MSATS = 1000
FUND_SATS = 500
PARSE_TIMEOUT_S = 2
_json = msgspec.json.Encoder()


def chunked_request(keys: NostrKeys, node: str, packed: str, sha: str, size: int) -> list[NostrEvent]:
    step = nip90.CHUNK_DATA_BYTES
    parts = [packed[i : i + step] for i in range(0, len(packed), step)]
    chunks = [
        sign_event(
            keys,
            kinds.JOB_REQUEST,
            _json.encode(InputChunk(sha256=sha, index=i, total=len(parts), data=p)).decode(),
            [["chunk", sha, str(i), str(len(parts))]],
        )
        for i, p in enumerate(parts)
    ]
    req = nip90.build_request(
        keys, path="attack.c", language="c", text=None, sha256=sha, size=size,
        chunk_ids=[c.id for c in chunks], node=node, run_id=None,
    )  # fmt: skip
    return [*chunks, req]


def hold_rpc_connections(sock: Path, n: int) -> list:
    async def go() -> list:
        held = []
        for _ in range(n):
            s = await connect_unix(sock)
            await s.send(encode_frame(Hello(version=RPC_VERSION, client="evil")))
            held.append(s)
        half = await connect_unix(sock)  # a frame that promises 100 bytes and never ends
        await half.send(encode_frame(Hello(version=RPC_VERSION, client="evil")))
        await FrameReader(half).read_frame()
        await half.send((100).to_bytes(4, "big") + b"\x81")
        held.append(half)
        return held

    return anyio.run(go)


def test_everything_at_once_against_a_paid_market(tmp_path: Path) -> None:
    m = LocalMarket(
        home=tmp_path / "home",
        nodes=2,
        with_mint=True,
        memory_relay=True,
        heartbeat_s=1.0,
        node_args=["--price", str(PRICE_MSATS), "--parse-timeout", str(PARSE_TIMEOUT_S)],
        buyer_args=["--bid", str(PRICE_MSATS), "--pickup-timeout", "5"],
    )
    evil = NostrKeys.generate()
    try:
        m.start(timeout=120)
        assert m.fund("buyer", FUND_SATS) == FUND_SATS
        buyer = status(m, "buyer")["pubkey"]
        n0 = node_pubkey(m, "n0")
        honest = [submit(m, f"before{i}.py", f"def before{i}():\n    return {i}\n") for i in range(4)]
        for j in honest:
            wait_completed(m, j, 60)

        # --- item 1: a decompression bomb in chunks (8 events inflating to 238 MiB) -------------
        z, zeros = zlib.compressobj(9), bytes(1024 * 1024)
        bomb = base64.b64encode(b"".join(z.compress(zeros) for _ in range(238)) + z.flush()).decode()
        bomb_events = chunked_request(evil, n0, bomb, "a" * 64, 1000)
        # --- item 2: a parse bomb, honest in every other respect (right size and hash) ----------
        parens = ("(" * (256 * 1024)).encode()
        parse_events = chunked_request(
            evil,
            n0,
            base64.b64encode(zlib.compress(parens, 9)).decode(),
            nip90.sha256_hex(parens),
            len(parens),
        )
        before_failures = status(m, "n0")["failures"]
        assert set(publish_all(m.relay_url, bomb_events + parse_events).values()) == {"ok"}

        # While n0 handles both, its RPC (on the same event loop as heartbeats and intake) answers.
        lat: list[float] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            st = m.call("n0", rpc.StatusReq(), timeout=30)
            lat.append(time.monotonic() - t0)
            f = st["failures"]
            if f.get("too_large", 0) > before_failures.get("too_large", 0) and f.get(
                "timeout", 0
            ) > before_failures.get("timeout", 0):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"n0 never failed the two bombs: {status(m, 'n0')['failures']}")
        print(f"n0 RPC status latency during the bombs: max {max(lat) * 1000:.0f} ms over {len(lat)} calls")
        assert max(lat) < 5.0, f"n0's loop stalled: a status call took {max(lat):.1f}s"

        # --- item 4: nested JSON in a nutzap to the node, a stranger's receipts to the buyer ----
        nested = '{"amount": 1, "witness": ' + "[" * 5000 + "]" * 5000 + "}"
        zap = sign_event(
            evil,
            kinds.NUTZAP,
            "",
            [["proof", nested], ["u", str(m.mint_url)], ["e", "1" * 64, "", "result"],
             ["e", honest[0], "", "job"], ["p", n0], ["amount", "1000", "msat"], ["unit", "sat"]],
        )  # fmt: skip
        receipts = [
            nip60.build_redemption(
                evil,
                buyer=buyer,
                redemption=Redemption(direction="in", amount_sats=1, job_id=j, payment_id="9" * 64),
            )
            for j in honest
        ]
        assert set(publish_all(m.relay_url, [zap, *receipts]).values()) == {"ok"}
        wait_for("nested nutzap counted", lambda: status(m, "n0")["dropped"].get("nutzap_bad_proof"), 20)
        wait_for(
            "strangers' receipts counted",
            lambda: status(m, "buyer")["dropped"].get("payment_event_receipt_unknown_payment", 0) >= 4,
            20,
        )

        # --- item 9: 300 idle connections and a half-sent frame on n0's socket -------------------
        held = hold_rpc_connections(m.socket_of("n0"), 300)
        assert m.call("n0", rpc.StatusReq(), timeout=10)["name"] == "n0"  # a real caller still gets in
        for s in held:
            s.sock.close()

        # --- item 10: rejected requests from fresh keys cost a bounded number of signatures ------
        flood_start = time.monotonic()
        flood = [
            nip90.build_request(
                NostrKeys.generate(),
                path="big.py",
                language="python",
                text="x",
                sha256="b" * 64,
                size=10**9,
                node=n0,
                run_id=None,
            )
            for _ in range(150)
        ]
        assert set(publish_all(m.relay_url, flood).values()) == {"ok"}
        wait_for("flood counted", lambda: status(m, "n0")["dropped"].get("rejected_too_large", 0) >= 150, 30)
        answered = relay_query(
            m.relay_url, [Filter(kinds=[kinds.JOB_FEEDBACK], authors=[n0], e=[ev.id for ev in flood])]
        )
        budget = 50 + 5 * (time.monotonic() - flood_start) + 5
        assert len(answered) <= budget, f"{len(answered)} signed rejects for 150 spam requests"

        # --- item 6: a repository whose git config runs a command --------------------------------
        repo = tmp_path / "evil-repo"
        repo.mkdir()
        (repo / "ok.py").write_text("def ok():\n    return 1\n")
        marker = tmp_path / "fsmonitor.ran"
        script = tmp_path / "fsmonitor.sh"
        script.write_text(f"#!/bin/sh\ntouch {marker}\n")
        script.chmod(0o755)
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
            subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
        subprocess.run(["git", "config", "core.fsmonitor", str(script)], cwd=repo, check=True)
        out = m.cli("map", str(repo), "--json", "--out", str(tmp_path / "out"), timeout=120)
        assert out.returncode == 0, out.stderr
        assert not marker.exists(), "the mapped repository's core.fsmonitor ran"

        # --- still standing, and the money adds up -----------------------------------------------
        for p in m.procs.values():
            assert p.alive(), f"{p.name} died"
        honest.append(submit(m, "after.py", "def after():\n    return 9\n"))
        wait_completed(m, honest[-1], 60)
        paid, completed = m.wait_paid(timeout=90)
        assert paid == completed and completed >= len(honest), (paid, completed)
        spent = completed * PRICE_MSATS // 1000
        wallet = lambda t: int(m.call(t, rpc.WalletBalanceReq())["balance_sats"])  # noqa: E731
        assert wallet("buyer") == FUND_SATS - spent
        wait_for("nodes redeemed", lambda: sum(wallet(n) for n in m.node_names()) == spent, 60)
        earned = lambda: sum(m.call(n, rpc.StatusReq())["earned_msats"] for n in m.node_names())  # noqa: E731
        wait_for("nodes' earnings recorded", lambda: earned() == spent * 1000, 30)  # after the redeem
        for p in m.procs.values():
            assert p.alive(), f"{p.name} died"
    finally:
        m.stop()
    dbs = [m.home / "buyer" / "telemetry.db", *(m.home / "nodes").glob("*/node.db")]
    assert len(dbs) == 3
    for db in dbs:
        assert integrity_ok(db), db
