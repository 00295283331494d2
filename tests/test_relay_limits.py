"""Issue 9, units: what a relay's refusal means, NIP-11 documents taken with suspicion, and
events fitted to small limits (4 KiB content) that still parse back whole."""

from __future__ import annotations

import random
import string

import msgspec
import pytest
from pylon.schemas.events import FileResult, JobRequest, ResultTiming, Symbol

from pylon.keys import NostrKeys
from pylon.nostr import nip11, nip90
from pylon.nostr.budget import DEFAULT, Budget
from pylon.nostr.event import NostrEvent
from pylon.nostr.refusals import Refusal, classify, stated_limit


@pytest.mark.parametrize(
    ("message", "want"),
    [
        ("duplicate: already have this event", Refusal.DUPLICATE),
        ("pow: difficulty 20 is less than 30", Refusal.POW),
        ("blocked: you are banned from posting here", Refusal.BLOCKED),
        ("rate-limited: slow down there chief", Refusal.RATE_LIMITED),
        ("invalid: event creation date is too far off from the current time", Refusal.TOO_OLD),
        ("invalid: bad signature", Refusal.INVALID),
        ("error: could not connect to the database", Refusal.ERROR),
        ("auth-required: we only accept events from registered users", Refusal.AUTH_REQUIRED),
        ("restricted: not allowed to write", Refusal.RESTRICTED),
        ("invalid: 280 characters should be enough for anybody", Refusal.TOO_LARGE),  # nostr-relay
        ("error: event too large", Refusal.TOO_LARGE),
        ("invalid: content exceeds 4096 bytes", Refusal.TOO_LARGE),
        ("event is too big", Refusal.TOO_LARGE),
        ("message length exceeded", Refusal.TOO_LARGE),
        ("Event too long: maximum content length is 8192", Refusal.TOO_LARGE),
        ("too many events, please wait", Refusal.RATE_LIMITED),
        ("something odd happened", Refusal.UNKNOWN),
        ("", Refusal.UNKNOWN),
    ],
)
def test_each_refusal_class(message: str, want: Refusal) -> None:
    assert classify(message) == want


def test_a_stated_limit_is_read_only_when_plausible() -> None:
    assert stated_limit("invalid: content exceeds 4096 bytes", 9000) == 4096
    assert stated_limit("invalid: 280 characters should be enough for anybody", 9000) is None
    assert stated_limit("exceeds 65536", 9000) is None  # not below what was refused: not the limit


def test_nip11_limits_are_read() -> None:
    doc = {
        "name": "r",
        "software": "git+https://example.org/relay",
        "supported_nips": [1, 11, 42],
        "limitation": {
            "max_message_length": 16384,
            "max_content_length": 4096,
            "max_event_tags": 100,
            "max_limit": 500,
            "auth_required": True,
            "payment_required": False,
            "restricted_writes": True,
            "created_at_lower_limit": 3600,
            "created_at_upper_limit": 900,
        },
    }
    info = nip11.parse_info(msgspec.json.encode(doc))
    assert info.present and info.supports(42) and not info.problems
    lim = info.limits
    assert (lim.max_message_length, lim.max_content_length, lim.max_event_tags, lim.max_limit) == (
        16384,
        4096,
        100,
        500,
    )
    assert lim.auth_required and lim.restricted_writes and not lim.payment_required
    assert (lim.created_at_lower_limit, lim.created_at_upper_limit) == (3600, 900)


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>hi</html>", b"[1,2,3]", b"null", b"[" * 5000 + b"]" * 5000, b'{"limitation": 7}'],
)
def test_garbage_nip11_is_tolerated(body: bytes) -> None:
    info = nip11.parse_info(body)
    assert info.limits == nip11.Limits()
    assert info.error or info.problems


def test_lying_nip11_values_are_ignored() -> None:
    doc = {
        "supported_nips": "all of them",
        "limitation": {"max_content_length": 3, "max_message_length": "big", "auth_required": "yes"},
    }
    info = nip11.parse_info(msgspec.json.encode(doc))
    assert info.limits == nip11.Limits()  # 3 bytes is not a limit anyone can fit; wrong types dropped
    assert len(info.problems) == 4


def test_http_url_of_a_relay() -> None:
    assert nip11.http_url("wss://relay.example.org") == "https://relay.example.org/"
    assert nip11.http_url("ws://127.0.0.1:7777/nostr") == "http://127.0.0.1:7777/nostr"


def event_size(ev: NostrEvent) -> int:
    return len(msgspec.json.encode(ev))


SMALL = Budget(content=4096 - 1024 // 4, message=64 * 1024, tags=10_000)
TINY_MESSAGE = Budget(content=3 * 1024, message=4 * 1024, tags=100)


def _text(n: int) -> str:
    rng = random.Random(n)
    return "".join(rng.choice(string.printable) for _ in range(n))


@pytest.mark.parametrize("budget", [SMALL, TINY_MESSAGE])
def test_input_chunks_fit_a_4k_relay_and_reassemble(budget: Budget) -> None:
    keys = NostrKeys.generate()
    text = _text(120_000)  # poorly compressible: many chunks
    assert nip90.needs_chunks(text, budget)
    digest, chunks = nip90.build_chunks(keys, text, budget)
    assert len(chunks) > 10
    for ch in chunks:
        assert len(ch.content.encode()) <= budget.content
        assert event_size(ch) + 16 <= budget.message
    req = nip90.build_request(
        keys,
        path="a.py",
        language="python",
        text=None,
        sha256=digest,
        size=len(text.encode()),
        chunk_ids=[c.id for c in chunks],
        node=None,
        run_id=None,
    )
    assert len(req.tags) <= budget.tags
    assert nip90.reassemble(nip90.parse_request(req), chunks) == text


def test_inline_input_respects_the_message_limit() -> None:
    text = '"' * 3000  # every quote is escaped: 6000 bytes on the wire
    assert not nip90.needs_chunks(text, DEFAULT)
    assert nip90.needs_chunks(text, TINY_MESSAGE)


def _result(n_symbols: int) -> FileResult:
    return FileResult(
        path="big.py",
        language="python",
        lines=n_symbols,
        symbols=[
            Symbol(name=f"f{i}_{_text(8)}", kind="function", line=i, signature=f'def f{i}(x="{i}")')
            for i in range(n_symbols)
        ],
        imports=["os"],
        summary="s",
    )


@pytest.mark.parametrize("budget", [SMALL, TINY_MESSAGE])
def test_results_fit_a_4k_relay_and_parse_back(budget: Budget) -> None:
    keys = NostrKeys.generate()
    req = JobRequest(
        job_id="a" * 64,
        buyer=keys.pubkey,
        path="big.py",
        language="python",
        tasks=["symbols"],
        bid_msats=0,
        assigned=None,
        run_id="b" * 64,
        sha256="c" * 64,
        size=1,
    )
    result = _result(900)
    ev, parts = nip90.build_result_with_parts(
        keys, request=req, result=result, timing=ResultTiming(1, 2, 3), budget=budget
    )
    assert parts, "a result of this size cannot ride in one 4 KiB event"
    for e in [ev, *parts]:
        assert len(e.content.encode()) <= budget.content
        assert event_size(e) + 16 <= budget.message
        assert len(e.tags) <= budget.tags
    assert nip90.parse_result(ev, parts).result == result


def test_default_budget_keeps_the_old_sizes() -> None:
    # Nothing known about the relays: the 64 KiB embedded relay's sizes, as before issue 9.
    assert DEFAULT.message == 64 * 1024 and DEFAULT.content == nip90.RESULT_CONTENT_LIMIT


def test_plain_result_that_escapes_over_the_limit_is_compressed() -> None:
    # The CPython test_patma.py case: plain JSON under the content limit, over 64 KiB once its
    # quotes are escaped into the event.
    keys = NostrKeys.generate()
    req = JobRequest(
        job_id="a" * 64,
        buyer=keys.pubkey,
        path="p.py",
        language="python",
        tasks=["symbols"],
        bid_msats=0,
        assigned=None,
        run_id=None,
        sha256="c" * 64,
        size=1,
    )
    for n in range(400, 1400, 100):
        ev, parts = nip90.build_result_with_parts(
            keys, request=req, result=_result(n), timing=ResultTiming(1, 2, 3)
        )
        for e in [ev, *parts]:
            assert event_size(e) + 16 <= DEFAULT.message, n
