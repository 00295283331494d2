"""Property tests: no input, however hostile, makes a parser raise anything but InvalidEvent,
and no frame from a relay makes the client raise at all.

The daemons rely on this: every handler catches InvalidEvent, counts its reason and drops the
event; any other exception would escape a handler (logged, event lost) or, in the relay
client's read loop, end the connection task and with it the daemon.
"""

from __future__ import annotations

import base64
import json
import zlib

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pylon.schemas import kinds
from pylon.schemas.events import FileResult, JobRequest

from pylon.keys import NostrKeys
from pylon.nostr import heartbeat, nip13, nip60, nip61, nip89, nip90
from pylon.nostr.event import InvalidEvent, NostrEvent, decode_event, encode_event, sign_event, verify_event
from pylon.nostr.relay_client import RelayPool

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = NostrKeys.generate()

hexish = st.one_of(st.text("0123456789abcdef", min_size=0, max_size=70), st.text(max_size=70))
names = st.sampled_from(
    [
        "i",
        "param",
        "p",
        "e",
        "bid",
        "submitted_ms",
        "status",
        "error",
        "amount",
        "at_ms",
        "x",
        "encoding",
        "received",
        "started",
        "finished",
        "published",
        "d",
        "k",
        "t",
        "expiration",
        "mint",
        "relay",
        "pubkey",
        "proof",
        "u",
        "unit",
        "chunk",
        "pylon-run",
        "nonce",
        "direction",
    ]
)
values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "text",
            "event",
            "url",
            "root",
            "retry",
            "job",
            "result",
            "redeemed",
            "path",
            "size",
            "sha256",
            "language",
            "tasks",
            "processing",
            "error",
            "success",
            "payment-required",
            "zlib+base64",
            "5931",
            "-1",
            "1e9",
            "9" * 5000,
            "NaN",
            "",
            "\x00",
            "{}",
            "[]",
        ]
    ),
    st.integers().map(str),
)
tag = st.one_of(
    st.lists(values, max_size=5).map(lambda v: v),
    st.tuples(names, st.lists(values, max_size=4)).map(lambda t: [t[0], *t[1]]),
)
json_blobs = st.one_of(
    st.just(""),
    st.text(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=6),
        max_leaves=20,
    ).map(json.dumps),
    st.builds(lambda b: base64.b64encode(zlib.compress(b)).decode(), st.binary(max_size=200)),
)
any_kind = st.one_of(st.sampled_from(kinds.ALL), st.integers(min_value=0, max_value=70000))


@st.composite
def events(draw: st.DrawFn) -> NostrEvent:
    return NostrEvent(
        id=draw(hexish),
        pubkey=draw(hexish),
        created_at=draw(st.integers(-(2**40), 2**40)),
        kind=draw(any_kind),
        tags=draw(st.lists(tag, max_size=12)),
        content=draw(json_blobs),
        sig=draw(hexish),
    )


@st.composite
def signed_events(draw: st.DrawFn) -> NostrEvent:
    """Well-signed events with hostile tags and content: past every signature check."""
    return sign_event(
        KEYS,
        draw(any_kind),
        draw(json_blobs),
        draw(st.lists(tag, max_size=12)),
        created_at=draw(st.integers(0, 2**33)),
    )


PARSERS = [
    nip90.parse_request,
    nip90.parse_feedback,
    nip90.parse_result,
    nip90.parse_run_root,
    heartbeat.parse_heartbeat,
    nip89.parse_announce,
    nip61.parse_nutzap_info,
    nip61.parse_nutzap,
    nip60.parse_redemption,
]
TOTAL = [nip90.result_job_id, nip90.is_chunk, nip90.is_run_root, heartbeat.is_expired, nip13.difficulty]


def _only_invalid_event(fn, ev: NostrEvent) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(ev)
    except InvalidEvent as exc:
        assert exc.reason and " " not in exc.reason  # a counter name
    except Exception as exc:
        raise AssertionError(f"{fn.__module__}.{fn.__name__} raised {type(exc).__name__}: {exc}") from exc


@SETTINGS
@given(ev=st.one_of(events(), signed_events()))
def test_parsers_raise_only_invalid_event(ev: NostrEvent) -> None:
    for fn in PARSERS:
        _only_invalid_event(fn, ev)
    for fn in TOTAL:
        fn(ev)  # total functions: never raise
    _only_invalid_event(verify_event, ev)


@SETTINGS
@given(ev=events(), kind=st.sampled_from([kinds.JOB_REQUEST, kinds.JOB_RESULT, kinds.JOB_FEEDBACK]))
def test_retyped_events_are_still_only_invalid(ev: NostrEvent, kind: int) -> None:
    """The right kind with nonsense inside: the parsers get past their kind check."""
    ev = msgspec.structs.replace(ev, kind=kind)
    for fn in PARSERS:
        _only_invalid_event(fn, ev)


@SETTINGS
@given(
    raw=st.one_of(
        st.binary(max_size=300), st.text(max_size=300), st.builds(lambda e: encode_event(e), events())
    )
)
def test_decode_event_raises_only_invalid_event(raw: bytes | str) -> None:
    try:
        ev = decode_event(raw)
    except InvalidEvent:
        return
    _only_invalid_event(verify_event, ev)


@SETTINGS
@given(chunks=st.lists(signed_events(), max_size=4), sha=hexish, buyer=hexish)
def test_reassemble_raises_only_invalid_event(chunks: list[NostrEvent], sha: str, buyer: str) -> None:
    req = JobRequest(
        job_id="a" * 64,
        buyer=buyer,
        path="x.py",
        language="python",
        tasks=["symbols"],
        bid_msats=0,
        assigned=None,
        run_id=None,
        sha256=sha,
        size=1,
        text=None,
        chunk_ids=[c.id for c in chunks],
        created_at=0,
        submitted_ms=0,
        retry_of=None,
    )
    _only_invalid_event(
        lambda _: nip90.reassemble(req, chunks), chunks[0] if chunks else sign_event(KEYS, 1, "")
    )


def test_zip_bomb_result_is_refused_not_inflated() -> None:
    """A compressed result that inflates past the cap is too_large, decided without inflating it all."""
    bomb = base64.b64encode(zlib.compress(b"\x00" * (64 * 1024 * 1024), 9)).decode()
    ev = sign_event(
        KEYS,
        kinds.JOB_RESULT,
        bomb,
        [
            ["e", "b" * 64],
            ["p", KEYS.pubkey],
            ["x", nip90.sha256_hex(bomb.encode())],
            ["encoding", "zlib+base64"],
        ],
    )
    with pytest.raises(InvalidEvent) as exc:
        nip90.parse_result(ev)
    assert exc.value.reason == "too_large"


# --- the relay client's frame handling ----------------------------------------------------


def _pool() -> tuple[RelayPool, object]:
    pool = RelayPool(["ws://127.0.0.1:1"])
    delivered: list[NostrEvent] = []
    pool._subs["s"] = __import__("pylon.nostr.relay_client", fromlist=["_Subscription"])._Subscription(
        "s", [], delivered.append
    )
    return pool, delivered


frame_parts = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
verbs = st.sampled_from(["EVENT", "OK", "EOSE", "CLOSED", "NOTICE", "AUTH", "COUNT", "", "event"])


@SETTINGS
@given(
    message=st.one_of(
        st.text(max_size=300),
        st.binary(max_size=300),
        st.builds(lambda v, rest: json.dumps([v, *rest]), verbs, st.lists(frame_parts, max_size=4)),
        st.builds(
            lambda sub, e: json.dumps(["EVENT", sub, msgspec.to_builtins(e)]),
            st.sampled_from(["s", "q", 1]),
            st.one_of(events(), signed_events()),
        ),
    )
)
def test_relay_frames_never_raise(message: str | bytes) -> None:
    pool, _ = _pool()
    before = sum(pool.dropped.values()) + pool.received
    pool._on_message(pool.conns[0], message)  # must not raise
    assert sum(pool.dropped.values()) + pool.received >= before


def test_relay_frames_are_counted() -> None:
    pool, delivered = _pool()
    good = sign_event(KEYS, 1, "hello")
    forged = msgspec.structs.replace(good, content="hellO")
    bad_sig = msgspec.structs.replace(good, sig="00" * 64)
    frames = [
        "not json",
        "[]",
        "{}",
        '["EVENT"]',
        '["EVENT", 5, {}]',
        '["EVENT", "s", {"id": 1}]',
        '["OK", 7, "yes"]',
        '["OK", "abc", "maybe", 3]',
        '["NOTICE", {"a": 1}]',
        '["CLOSED", 1, 2]',
        '["EOSE", null]',
        json.dumps(["EVENT", "s", msgspec.to_builtins(forged)]),
        json.dumps(["EVENT", "s", msgspec.to_builtins(bad_sig)]),
        json.dumps(["EVENT", "s", msgspec.to_builtins(good)]),
        json.dumps(["EVENT", "s", msgspec.to_builtins(good)]),  # a duplicate: delivered once
    ]
    for f in frames:
        pool._on_message(pool.conns[0], f)
    assert delivered == [good]
    assert pool.dropped.get("bad_id") == 1 and pool.dropped.get("bad_signature") == 1
    assert pool.dropped.get("malformed", 0) >= 1
    assert pool.dropped.get("bad_frame", 0) >= 8


def test_handler_errors_do_not_escape() -> None:
    pool = RelayPool(["ws://127.0.0.1:1"])
    from pylon.nostr.relay_client import _Subscription

    def boom(ev: NostrEvent) -> None:
        raise RuntimeError("handler bug")

    pool._subs["s"] = _Subscription("s", [], boom)
    pool._on_message(pool.conns[0], json.dumps(["EVENT", "s", msgspec.to_builtins(sign_event(KEYS, 1, "x"))]))
    assert pool.received == 1


def test_result_payload_type_confusion() -> None:
    """Valid JSON of the wrong shape inside a correctly hashed result: bad_payload, not a crash."""
    for content in (
        '{"path": 1}',
        "[]",
        "null",
        '{"path":"a","language":"b","lines":-1,"symbols":[{}],"imports":[],"summary":""}',
    ):
        ev = sign_event(
            KEYS, kinds.JOB_RESULT, content, [["e", "c" * 64], ["x", nip90.sha256_hex(content.encode())]]
        )
        with pytest.raises(InvalidEvent):
            nip90.parse_result(ev)
    ok = msgspec.json.encode(
        FileResult(path="a", language="python", lines=1, symbols=[], imports=[], summary="")
    ).decode()
    ev = sign_event(KEYS, kinds.JOB_RESULT, ok, [["e", "c" * 64], ["x", nip90.sha256_hex(ok.encode())]])
    assert nip90.parse_result(ev).result.path == "a"
