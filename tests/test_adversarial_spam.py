"""Spam limits: NIP-13 proof of work on job requests, and the embedded relay's write allow-list.

- A node with `--min-pow N` drops requests under N leading zero bits (or committing to a lower
  target) and counts them as `pow_too_low`; it sends no feedback for them, so spam costs the
  spammer a signature each and the node a hash check. A buyer with `--pow N` mines its requests.
- `pylon relay up --allow PUBKEY` stores events only from the listed authors; reads stay open.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from faults_support import attempts, db_rows, relay_query, wait_for
from pylon.schemas import kinds, rpc

from pylon.keys import NostrKeys
from pylon.localmarket.launcher import LocalMarket, free_port, pylon_argv
from pylon.nostr import nip13, nip90
from pylon.nostr.event import sign_event, verify_event
from pylon.nostr.filters import Filter
from pylon.nostr.relay_client import PublishError, RelayPool
from pylon.relay.embedded import EmbeddedRelay, parse_pubkeys
from pylon.rpc.client import RpcClient

KEYS = NostrKeys.generate()


# --- NIP-13 -----------------------------------------------------------------------------------


def test_leading_zero_bits() -> None:
    # NIP-13's own example: 36 leading zero bits.
    assert nip13.leading_zero_bits("000000000e9d97a1ab09fc381030b346cdd7a142ad57e6f7b13ba1e6f3dc5a8c") == 36
    assert nip13.leading_zero_bits("f" + "0" * 63) == 0
    assert nip13.leading_zero_bits("1" + "0" * 63) == 3
    assert nip13.leading_zero_bits("0" * 64) == 256
    assert nip13.leading_zero_bits("zz") == 0 and nip13.leading_zero_bits("") == 0


@pytest.mark.parametrize("bits", [0, 1, 8, 12])
def test_mined_events_meet_their_target_and_verify(bits: int) -> None:
    tags = [["i", "x" * 30_000, "text"], ["param", "path", "a.py"], ["p", "ab" * 32]]
    ev = nip13.mine(KEYS, kinds.JOB_REQUEST, "", tags, bits)
    verify_event(ev)  # the id really is the event's hash
    assert nip13.leading_zero_bits(ev.id) >= bits and nip13.difficulty(ev) >= bits
    assert ev.tags[:-1] == tags and ev.tags[-1][0] == "nonce" and ev.tags[-1][2] == str(bits)
    assert nip13.meets(ev, bits) and (bits == 0 or not nip13.meets(ev, max(bits + 16, 32)))


def test_mining_twelve_bits_is_quick() -> None:
    t0 = time.perf_counter()
    for i in range(10):
        nip13.mine(KEYS, kinds.JOB_REQUEST, "", [["i", f"def f{i}(): pass" * 500, "text"]], 12)
    assert (time.perf_counter() - t0) / 10 < 0.5  # ~12 ms expected; generous for a loaded CI box


def test_committed_target_caps_difficulty() -> None:
    n = 0
    while True:  # an id with >= 8 zero bits whose nonce tag admits to aiming at 4
        ev = sign_event(KEYS, kinds.JOB_REQUEST, "", [["nonce", str(n), "4"]])
        if nip13.leading_zero_bits(ev.id) >= 8:
            break
        n += 1
    assert nip13.difficulty(ev) == 4 and not nip13.meets(ev, 8)
    no_nonce = sign_event(KEYS, kinds.JOB_REQUEST, "", [])
    assert nip13.difficulty(no_nonce) == nip13.leading_zero_bits(no_nonce.id)
    with pytest.raises(nip13.PowError):
        nip13.mine(KEYS, 1, "", [], 33)


def test_requests_carry_proof_of_work_and_still_parse() -> None:
    req = nip90.build_request(
        KEYS,
        path="a.py",
        language="python",
        text="x = 1\n",
        sha256=nip90.sha256_hex(b"x = 1\n"),
        size=6,
        node="cd" * 32,
        run_id=None,
        pow_bits=10,
    )
    verify_event(req)
    assert nip13.difficulty(req) >= 10
    parsed = nip90.parse_request(req)
    assert parsed.path == "a.py" and parsed.assigned == "cd" * 32 and parsed.text == "x = 1\n"


# --- the relay's write allow-list ------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nostr-sdk's relay runs on asyncio


@pytest.mark.anyio
async def test_relay_allow_list_blocks_other_writers_but_not_readers() -> None:
    member, outsider = NostrKeys.generate(), NostrKeys.generate()
    relay = EmbeddedRelay(port=free_port(), allow=parse_pubkeys([member.pubkey]))
    url = await relay.start()
    try:
        pool = RelayPool([url])
        async with anyio.create_task_group() as tg:
            await pool.start(tg)
            for i in range(20):
                assert await pool.publish(sign_event(member, kinds.JOB_REQUEST, f"ok {i}"), wait_ok=5)
            for i in range(5):
                with pytest.raises(PublishError, match="blocked"):
                    await pool.publish(sign_event(outsider, kinds.JOB_REQUEST, f"spam {i}"), wait_ok=5)
            stored = await pool.query([Filter(kinds=[kinds.JOB_REQUEST])], timeout=5)  # reading is open
            tg.cancel_scope.cancel()
        assert len(stored) == 20 and {e.pubkey for e in stored} == {member.pubkey}
        assert pool.dropped.get("rejected_by_relay") == 5
    finally:
        await relay.stop()


def test_parse_pubkeys_accepts_hex_and_npub() -> None:
    from nostr_sdk import PublicKey

    npub = PublicKey.parse(KEYS.pubkey).to_bech32()
    assert parse_pubkeys([KEYS.pubkey, npub]) == {KEYS.pubkey}
    with pytest.raises(ValueError, match="not a public key"):
        parse_pubkeys(["npub1nope"])


def test_relay_up_refuses_a_bad_allow_entry(tmp_path: Path) -> None:
    import subprocess

    env = {"PYLON_HOME": str(tmp_path / "h"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        pylon_argv("relay", "up", "--port", str(free_port()), "--memory", "--allow", "alice"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "--allow: not a public key: 'alice'" in out.stderr


# --- a flood of requests without proof of work ---------------------------------------------------


@pytest.mark.integration
def test_flood_without_pow_is_dropped_while_real_work_gets_done(tmp_path: Path) -> None:
    pow_bits = 10
    m = LocalMarket(
        home=tmp_path / "home",
        nodes=1,
        memory_relay=True,
        heartbeat_s=1.0,
        node_args=["--min-pow", str(pow_bits), "--untargeted"],  # the flood comes in both ways
        buyer_args=["--pow", str(pow_bits)],
    )
    spammer = NostrKeys.generate()
    try:
        m.start(timeout=60)
        node = m.call("n0", rpc.StatusReq())["pubkey"]
        tags = lambda i: [["i", f"x = {i}\n", "text"], ["param", "path", f"spam{i}.py"]]  # noqa: E731
        spam = [sign_event(spammer, kinds.JOB_REQUEST, "", [*tags(i), ["p", node]]) for i in range(300)]
        spam += [sign_event(spammer, kinds.JOB_REQUEST, "", tags(i)) for i in range(300, 600)]  # untargeted

        async def flood_and_work() -> list[str]:
            pool = RelayPool([m.relay_url])
            client = await RpcClient.connect(m.socket_of("buyer"))
            ids: list[str] = []
            async with anyio.create_task_group() as tg:
                await pool.start(tg)
                for i, ev in enumerate(spam):
                    await pool.publish(ev)
                    if i % 60 == 0:  # real work in the middle of the flood
                        res = await client.call(
                            rpc.SubmitReq(
                                path=f"real{i}.py", text=f"def r{i}():\n    return {i}\n", language="python"
                            )
                        )
                        ids.append(res["job_id"])
                with anyio.fail_after(30):
                    while pool.pending():
                        await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
            await client.aclose()
            return ids

        # About one in 2**10 random ids has the zero bits by luck: proof of work all the same.
        lucky = {e.id for e in spam if nip13.meets(e, pow_bits)}
        real = anyio.run(flood_and_work)
        wait_for(
            "spam dropped",
            lambda: m.call("n0", rpc.StatusReq())["dropped"].get("pow_too_low", 0) >= len(spam) - len(lucky),
            60,
        )
        done = wait_for(
            "real jobs done",
            lambda: all(m.call("buyer", rpc.JobStatusReq(job_id=j))["state"] == "completed" for j in real),
            60,
        )
        assert done
        wait_for(
            "node counters", lambda: m.call("n0", rpc.StatusReq())["completed"] >= len(real) + len(lucky), 30
        )
        st = m.call("n0", rpc.StatusReq())
        assert st["dropped"]["pow_too_low"] == len(spam) - len(lucky)

        # What the node ran is the buyer's attempts (a real job slowed by the flood may be
        # re-issued, and run twice) and the lucky spam; the rest of the spam never ran.
        def ran() -> set[str]:
            return {r[0] for r in db_rows(m.home / "nodes" / "n0" / "node.db", "SELECT job_id FROM jobs")}

        def accounted() -> tuple[set[str], set[str]] | None:
            """(ran, attempts) once both stores hold what the counters say (they batch writes)."""
            issued, done_here = {r[0] for r in attempts(m)}, ran()
            return (done_here, issued) if set(real) <= issued and lucky <= done_here else None

        done_here, issued = wait_for("both stores flushed", accounted, 30)
        assert done_here <= issued | lucky, sorted(done_here - issued - lucky)[:3]
        st = m.call("n0", rpc.StatusReq())
        assert len(real) + len(lucky) <= st["completed"] <= len(issued) + len(lucky)
        assert st["failed"] == 0
        answered = relay_query(
            m.relay_url, [Filter(kinds=[kinds.JOB_FEEDBACK, kinds.JOB_RESULT], p=[spammer.pubkey])]
        )
        assert {e.tag_value("e") for e in answered} == lucky  # and was never answered
    finally:
        m.stop()
