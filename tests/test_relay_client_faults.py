"""Issue 9 (and issue 10 items 3-4) on the client side, against a scriptable fake relay: each
refusal class acted on, limits learned from refusals and NIP-11, auth, several relays where
one misbehaves, and the doctor naming each misbehaviour."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import msgspec
import pytest
from fake_relay import FakeRelay
from pylon.schemas.events import FileResult, JobRequest, ResultTiming, Symbol

from pylon.doctor import check_relay
from pylon.keys import NostrKeys
from pylon.nostr import fitting, nip90
from pylon.nostr.event import NostrEvent, sign_event
from pylon.nostr.filters import Filter
from pylon.nostr.refusals import Refusal
from pylon.nostr.relay_client import RelayPool

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def pool_on(urls: Sequence[str], keys: NostrKeys | None = None) -> AsyncIterator[RelayPool]:
    pool = RelayPool(urls, keys=keys)
    async with anyio.create_task_group() as tg:
        await pool.start(tg, wait_s=10)
        with anyio.fail_after(60):
            for c in pool.conns:  # every relay up: the tests are about how each one answers
                await c.connected.wait()
            yield pool
        tg.cancel_scope.cancel()


async def test_a_forged_copy_of_a_verified_event_is_dropped() -> None:
    # Issue 10 item 3: the "verified" cache skipped the id check, so a relay could send a
    # known id over other content and have it believed.
    keys = NostrKeys.generate()
    ev = sign_event(keys, 1, "the real content", [])
    with FakeRelay() as relay:
        async with pool_on([relay.url]) as pool:
            assert await pool.publish(ev, wait_ok=10)
            assert [e.content for e in await pool.query([Filter(ids=[ev.id])])] == [ev.content]
            forged = msgspec.structs.replace(ev, content="forged content")
            relay.events.append(msgspec.to_builtins(forged))  # served first (newest first)
            got = await pool.query([Filter(ids=[ev.id])])
            assert [e.content for e in got] == [ev.content]
            assert pool.dropped.get("bad_id", 0) >= 1


async def test_deeply_nested_and_garbage_frames_are_counted_and_the_connection_lives() -> None:
    # Issue 10 item 4: msgspec raises RecursionError on ["NOTICE",[[[...]]]]; it used to escape
    # the read loop and take the daemon's task group down.
    keys = NostrKeys.generate()
    with FakeRelay(garbage=True) as relay:
        async with pool_on([relay.url]) as pool:
            for i in range(3):
                assert await pool.publish(sign_event(keys, 1, f"n{i}", []), wait_ok=10)
            assert pool.dropped["bad_frame"] >= 6
            assert pool.is_connected() and pool.conns[0].connects == 1
            assert pool.relay_stats()[relay.url]["garbage"] >= 6


async def test_too_large_with_an_empty_id_is_learned_and_chunks_refit() -> None:
    # nostr-relay's style: content over 4096 refused as "invalid: 280 characters ..." with "" id.
    keys = NostrKeys.generate()
    with FakeRelay(max_content=4096, empty_id_on_refusal=True) as relay:
        async with pool_on([relay.url]) as pool:
            big = sign_event(keys, 1, "x" * 20_000, [])
            res = await pool.publish_checked(big, timeout=10)
            assert not res.ok and res.refused_as(Refusal.TOO_LARGE) == [relay.url]
            assert pool.budget().content < 20_000
            text = "".join(f"line {i} {i * 7919 % 10007}\n" for i in range(30_000))
            ids = await fitting.publish_chunks(pool, keys, text)
            stored = {e["id"]: e for e in relay.events}
            assert set(ids) <= stored.keys()
            assert all(len(stored[i]["content"]) <= 4096 for i in ids)


def _request(keys: NostrKeys) -> JobRequest:
    return JobRequest(
        job_id="a" * 64,
        buyer=keys.pubkey,
        path="big.py",
        language="python",
        tasks=["symbols"],
        bid_msats=0,
        assigned=None,
        run_id=None,
        sha256="c" * 64,
        size=1,
    )


def _result(n: int) -> FileResult:
    syms = [Symbol(name=f"name_{i}_{i * 7919 % 10007}", kind="function", line=i) for i in range(n)]
    return FileResult(path="big.py", language="python", lines=n, symbols=syms, imports=[], summary="")


async def _published_result(pool: RelayPool, keys: NostrKeys) -> fitting.FitOutcome:
    return await fitting.publish_result(
        pool, keys, request=_request(keys), result=_result(3000), timing=ResultTiming(1, 2, 3)
    )


async def test_a_result_is_refit_for_a_4k_relay_that_lies_in_nip11() -> None:
    keys = NostrKeys.generate()
    doc = json.dumps({"software": "liar", "limitation": {"max_content_length": 1_000_000}}).encode()
    with FakeRelay(max_content=4096, nip11=doc) as relay:
        async with pool_on([relay.url]) as pool:
            out = await _published_result(pool, keys)
            assert out.ok and out.refits >= 1 and out.parts >= 2, out
            got = await pool.query([Filter(kinds=[6931])])
            (result_ev,) = got
            parts = await pool.query([Filter(ids=nip90.result_part_ids(result_ev))])
            assert nip90.parse_result(result_ev, parts).result == _result(3000)
            assert pool.relay_stats()[relay.url]["nip11_lied"] >= 1


async def test_nip11_limits_are_honoured_before_any_refusal() -> None:
    keys = NostrKeys.generate()
    doc = json.dumps({"limitation": {"max_content_length": 4096, "auth_required": False}}).encode()
    with FakeRelay(max_content=4096, nip11=doc) as relay:
        async with pool_on([relay.url]) as pool:
            assert pool.budget().content <= 4096
            out = await _published_result(pool, keys)
            assert out.ok and out.refits == 0
            assert relay.refused == []


async def test_auth_required_is_answered_with_our_key_and_retried_once() -> None:
    keys = NostrKeys.generate()
    with FakeRelay(auth=True) as relay:
        async with pool_on([relay.url], keys) as pool:
            ev = sign_event(keys, 1, "hello", [])
            assert await pool.publish(ev, wait_ok=10)
            assert [e.id for e in await pool.query([Filter(ids=[ev.id])])] == [ev.id]
            assert relay.authed and set(relay.authed) == {keys.pubkey}


async def test_rate_limited_backs_off_then_succeeds() -> None:
    keys = NostrKeys.generate()
    with FakeRelay(rate_limit_first=2) as relay:
        async with pool_on([relay.url]) as pool:
            res = await pool.publish_checked(sign_event(keys, 1, "x", []), timeout=20)
            assert res.ok
            assert relay.refused == ["rate-limited: slow down"] * 2


async def test_blocked_is_given_up_with_the_reason_and_never_resent() -> None:
    keys = NostrKeys.generate()
    with FakeRelay(block_all=True) as relay:
        async with pool_on([relay.url]) as pool:
            res = await pool.publish_checked(sign_event(keys, 1, "x", []), timeout=10)
            assert not res.ok and res.refused_as(Refusal.BLOCKED) == [relay.url]
            assert "blocked: not on this relay's list" in res.reason()
            out = await _published_result(pool, keys)
            assert not out.ok and not out.too_large and "blocked:" in out.reason
            await pool.query([Filter(kinds=[1])], timeout=5)  # a round trip: nothing else queued
            assert len(relay.refused_ids) >= 2
            assert len(relay.refused_ids) == len(set(relay.refused_ids))  # no event sent twice


async def test_a_relay_that_never_answers_does_not_hold_up_the_others() -> None:
    keys = NostrKeys.generate()
    with FakeRelay() as good, FakeRelay(never_ok=True) as silent:
        async with pool_on([good.url, silent.url]) as pool:
            t0 = time.monotonic()
            res = await pool.publish_checked(sign_event(keys, 1, "x", []), timeout=30)
            assert res.accepted == [good.url] and res.unanswered == [silent.url]
            assert time.monotonic() - t0 < 20  # a short grace after the first OK, not the timeout
            assert pool.relay_stats()[silent.url]["no_ok"] == 1


async def test_a_relay_that_closes_every_subscription_is_named_and_the_other_serves() -> None:
    keys = NostrKeys.generate()
    with FakeRelay() as good, FakeRelay(close_subs=True) as closer:
        async with pool_on([good.url, closer.url]) as pool:
            got: list[NostrEvent] = []
            arrived = anyio.Event()

            def on_event(ev: NostrEvent) -> None:
                got.append(ev)
                arrived.set()

            await pool.subscribe([Filter(kinds=[1], authors=[keys.pubkey])], on_event)
            ev = sign_event(keys, 1, "hi", [])
            assert await pool.publish(ev, wait_ok=10)
            await arrived.wait()
            assert [e.id for e in got] == [ev.id]
            assert [e.id for e in await pool.query([Filter(ids=[ev.id])])] == [ev.id]
            assert pool.relay_stats()[closer.url]["closed_subscription"] >= 1


@pytest.mark.parametrize(
    ("relay_kwargs", "named"),
    [
        ({"garbage": True}, "garbage"),
        (
            {"max_content": 2048, "nip11": b'{"limitation": {"max_content_length": 8192}}'},
            "NIP-11 lies",
        ),
        ({"nip11": b"{not json"}, "NIP-11 document is garbage"),
        ({"never_ok": True}, "never sent OK"),
        ({"close_subs": True}, "closed the subscription"),
    ],
)
async def test_doctor_names_each_bad_relay(relay_kwargs: dict, named: str) -> None:
    with FakeRelay(**relay_kwargs) as relay:
        check = await check_relay(relay.url, timeout_s=2)
    assert not check.ok and named in check.detail, check


async def test_doctor_passes_a_good_relay_with_auth() -> None:
    doc = json.dumps({"software": "fake", "limitation": {"max_content_length": 4096}}).encode()
    with FakeRelay(auth=True, nip11=doc, max_content=4096) as relay:
        check = await check_relay(relay.url, timeout_s=3)
    assert check.ok, check
    assert "max_content_length=4096" in check.detail and "auth authenticated" in check.detail
    assert "answered a query" in check.detail


def test_what_waits_for_a_dead_relay_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from pylon.nostr import relay_client

    monkeypatch.setattr(relay_client, "UNACKED_CAP_BYTES", 100_000)
    keys = NostrKeys.generate()
    pool = RelayPool(["ws://127.0.0.1:9"])  # never connected: everything waits for a replay
    for i in range(50):
        pool.publish_nowait(sign_event(keys, 1, f"{i}" + "x" * 10_000, []))
    conn = pool.conns[0]
    assert conn.unacked_bytes <= 100_000 and 5 <= len(conn.unacked) < 50
    assert conn.unacked_bytes == sum(len(f) for f in conn.unacked.values())
    assert conn.stats["replay_dropped"] >= 40
