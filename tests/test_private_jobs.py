"""Private (NIP-44 encrypted) job events: what each party can read, and clean failures."""

from __future__ import annotations

import base64
import random
import string

import msgspec
import pytest
from pylon.schemas.events import FileResult, ResultTiming, RunRoot, Symbol

from pylon.keys import NostrKeys
from pylon.nostr import nip90, private_jobs
from pylon.nostr.event import InvalidEvent, NostrEvent, encode_event, verify_event


def event_size(ev: NostrEvent) -> int:
    return len(encode_event(ev))


SECRET_LINE = "API_TOKEN = 'hunter2-very-private'"


def _parties() -> tuple[NostrKeys, NostrKeys, NostrKeys]:
    return NostrKeys.generate(), NostrKeys.generate(), NostrKeys.generate()


def _source(lines: int) -> str:
    rng = random.Random(lines)
    body = [
        f"def f_{i}_{''.join(rng.choices(string.ascii_lowercase, k=12))}(x):\n    return x * {i}\n"
        for i in range(lines)
    ]
    return SECRET_LINE + "\n" + "".join(body)


def _request(buyer: NostrKeys, node: NostrKeys, text: str, **kw):
    return private_jobs.build_request(
        buyer,
        private_jobs.Sealer(buyer),
        node=node.pubkey,
        path="secret/dir/credentials.py",
        language="python",
        text=text,
        sha256=nip90.sha256_hex(text.encode()),
        size=len(text.encode()),
        run_id="ab" * 32,
        bid_msats=1000,
        **kw,
    )


def _public_bytes(events) -> bytes:
    return b"\n".join(encode_event(e) for e in events)


def test_inline_request_is_readable_by_its_node_only():
    buyer, node, stranger = _parties()
    text = _source(20)
    req_ev, chunks = _request(buyer, node, text)
    assert chunks == []
    verify_event(req_ev)
    raw = _public_bytes([req_ev])
    assert SECRET_LINE.encode() not in raw and b"credentials.py" not in raw
    assert private_jobs.is_encrypted(req_ev)

    mine = private_jobs.parse_request(req_ev, private_jobs.Sealer(node))
    assert (mine.text, mine.path, mine.language, mine.encrypted) == (
        text,
        "secret/dir/credentials.py",
        "python",
        True,
    )
    assert mine.sha256 == nip90.sha256_hex(text.encode())
    assert mine.assigned == node.pubkey and mine.run_id == "ab" * 32 and mine.bid_msats == 1000

    # The buyer reads its own request (its trail); a stranger sees routing and the hash only.
    assert private_jobs.parse_request(req_ev, private_jobs.Sealer(buyer)).text == text
    for who in (private_jobs.Sealer(stranger), None):
        view = private_jobs.parse_request(req_ev, who)
        assert view.text is None and view.path == "" and view.encrypted
        assert view.sha256 == mine.sha256 and view.assigned == node.pubkey


def test_big_input_goes_in_encrypted_chunks_that_reassemble():
    buyer, node, _ = _parties()
    text = _source(6000)  # ~250 KB: chunks even compressed
    req_ev, chunks = _request(buyer, node, text)
    assert len(chunks) >= 2
    for ev in [req_ev, *chunks]:
        verify_event(ev)
        assert event_size(ev) < 64 * 1024
    assert SECRET_LINE.encode() not in _public_bytes([req_ev, *chunks])
    sealer = private_jobs.Sealer(node)
    req = private_jobs.parse_request(req_ev, sealer)
    assert req.chunk_ids == [c.id for c in chunks] and req.text is None
    assert nip90.reassemble(req, private_jobs.open_chunks(req, chunks, sealer)) == text


def test_incompressible_megabyte_fits_the_event_cap():
    buyer, node, _ = _parties()
    rng = random.Random(7)
    text = "".join(rng.choices(string.printable[:94], k=1024 * 1024 - 10))
    req_ev, chunks = _request(buyer, node, text)
    assert all(event_size(e) < 64 * 1024 for e in [req_ev, *chunks])
    sealer = private_jobs.Sealer(node)
    req = private_jobs.parse_request(req_ev, sealer)
    assert nip90.reassemble(req, private_jobs.open_chunks(req, chunks, sealer)) == text


def test_inline_text_near_the_limit_still_fits():
    buyer, node, _ = _parties()
    text = '"\n' * 13000  # JSON escaping doubles it: the sealed form, not the text, decides
    req_ev, chunks = _request(buyer, node, text)
    assert all(event_size(e) < 64 * 1024 for e in [req_ev, *chunks])
    sealer = private_jobs.Sealer(node)
    req = private_jobs.parse_request(req_ev, sealer)
    got = (
        req.text
        if req.text is not None
        else nip90.reassemble(req, private_jobs.open_chunks(req, chunks, sealer))
    )
    assert got == text


def test_tampered_or_foreign_request_is_a_counted_drop():
    buyer, node, stranger = _parties()
    req_ev, _ = _request(buyer, node, _source(5))
    raw = bytearray(base64.b64decode(req_ev.content))
    raw[50] ^= 1
    bad = msgspec.structs.replace(req_ev, content=base64.b64encode(bytes(raw)).decode())
    with pytest.raises(InvalidEvent) as err:
        private_jobs.parse_request(bad, private_jobs.Sealer(node))
    assert err.value.reason == "nip44_bad_mac"
    # Sealed to the node by a stranger posing with the buyer's pubkey: the MAC fails too.
    forged, _ = _request(stranger, node, _source(5))
    forged = msgspec.structs.replace(forged, pubkey=buyer.pubkey)
    with pytest.raises(InvalidEvent):
        private_jobs.parse_request(forged, private_jobs.Sealer(node))
    # Not JSON inside: malformed, not a crash.
    junk = msgspec.structs.replace(req_ev, content=private_jobs.Sealer(buyer).seal("[" * 5000, node.pubkey))
    with pytest.raises(InvalidEvent):
        private_jobs.parse_request(junk, private_jobs.Sealer(node))
    # An encrypted request with no node to be encrypted to.
    untargeted = msgspec.structs.replace(req_ev, tags=[t for t in req_ev.tags if t[0] != "p"])
    with pytest.raises(InvalidEvent) as err:
        private_jobs.parse_request(untargeted, private_jobs.Sealer(node))
    assert err.value.reason == "encrypted_untargeted"


def test_sealed_hash_must_match_the_public_x_tag():
    buyer, node, _ = _parties()
    req_ev, _ = _request(buyer, node, _source(5))
    lie = msgspec.structs.replace(req_ev, tags=[["x", "00" * 32] if t[0] == "x" else t for t in req_ev.tags])
    with pytest.raises(InvalidEvent) as err:
        private_jobs.parse_request(lie, private_jobs.Sealer(node))
    assert err.value.reason == "hash_mismatch"


def test_untargeted_private_request_cannot_be_built():
    buyer, _, _ = _parties()
    with pytest.raises(ValueError):
        private_jobs.build_request(
            buyer,
            private_jobs.Sealer(buyer),
            node="",
            path="a",
            language="",
            text="x",
            sha256="",
            size=1,
            run_id=None,
        )


def _result(text: str, n_symbols: int) -> FileResult:
    return FileResult(
        path="secret/dir/credentials.py",
        language="python",
        lines=text.count("\n"),
        symbols=[Symbol(name=f"secret_fn_{i}", kind="function", line=i) for i in range(n_symbols)],
        imports=[],
        summary=SECRET_LINE,
        executor="deterministic",
        input_sha256=nip90.sha256_hex(text.encode()),
        bytes_in=len(text),
    )


@pytest.mark.parametrize("n_symbols", [3, 3000, 60000])
def test_result_round_trip_small_compressed_and_parts(n_symbols):
    buyer, node, stranger = _parties()
    text = _source(5)
    req_ev, _ = _request(buyer, node, text)
    req = private_jobs.parse_request(req_ev, private_jobs.Sealer(node))
    result = _result(text, n_symbols)
    ev, parts = private_jobs.build_result_with_parts(
        node,
        private_jobs.Sealer(node),
        request=req,
        result=result,
        timing=ResultTiming(1, 2, 3),
        amount_msats=5,
    )
    if n_symbols == 60000:
        assert parts
    for e in [ev, *parts]:
        verify_event(e)
        assert event_size(e) < 64 * 1024
    raw = _public_bytes([ev, *parts])
    assert SECRET_LINE.encode() not in raw and b"secret_fn_1" not in raw and b"credentials.py" not in raw
    parsed = private_jobs.parse_result(ev, parts, private_jobs.Sealer(buyer))
    assert parsed.result == result and parsed.amount_msats == 5 and parsed.node == node.pubkey
    with pytest.raises(InvalidEvent) as err:
        private_jobs.parse_result(ev, parts, None)
    assert err.value.reason == "encrypted"
    with pytest.raises(InvalidEvent):
        private_jobs.parse_result(ev, parts, private_jobs.Sealer(stranger))
    assert private_jobs.check_sealed_shape(ev) is None
    public = private_jobs.parse_result_for_stats(ev, parts, None)
    assert (public.amount_msats, public.content_sha256, public.timing.started_ms) == (
        5,
        parsed.content_sha256,
        2,
    )
    assert public.result.path == ""


def test_public_jobs_pass_through_unchanged():
    buyer, node, _ = _parties()
    ev = nip90.build_request(
        buyer,
        path="a.py",
        language="python",
        text="x = 1\n",
        sha256=nip90.sha256_hex(b"x = 1\n"),
        size=6,
        node=node.pubkey,
        run_id=None,
    )
    req = private_jobs.parse_request(ev, private_jobs.Sealer(node))
    assert req.text == "x = 1\n" and not req.encrypted
    res, parts = private_jobs.build_result_with_parts(
        node,
        private_jobs.Sealer(node),
        request=req,
        result=_result("x = 1\n", 1),
        timing=ResultTiming(1, 2, 3),
    )
    assert not private_jobs.is_encrypted(res) and SECRET_LINE in res.content
    assert private_jobs.parse_result(res, parts, None).result.path == "secret/dir/credentials.py"
    assert private_jobs.public_message(req, "boom at a.py") == "boom at a.py"


def test_private_run_root_hides_the_repo():
    buyer, _, stranger = _parties()
    root = RunRoot(repo="/home/me/secret-project", snapshot_sha256="cd" * 32, files=12, commit="f" * 40)
    ev = private_jobs.build_run_root(buyer, private_jobs.Sealer(buyer), root, private=True)
    assert b"secret-project" not in encode_event(ev) and "f" * 40 not in ev.content
    assert nip90.is_run_root(ev)
    assert private_jobs.parse_run_root(ev, private_jobs.Sealer(buyer)) == root
    seen = private_jobs.parse_run_root(ev, private_jobs.Sealer(stranger))
    assert (seen.repo, seen.files, seen.snapshot_sha256) == ("private", 12, "cd" * 32)


@pytest.mark.parametrize(
    ("repo", "private"),
    [
        ("/home/me/code", True),
        ("./relative", True),
        ("file:///srv/repo.git", True),
        ("git@github.com:me/secret.git", True),
        ("ssh://git@host/me/repo.git", True),
        ("https://user:token@github.com/me/repo.git", True),
        ("https://github.com/me/repo.git?token=abc", True),
        ("https://github.com/psf/requests.git", False),
        ("http://example.org/repo.git", False),
    ],
)
def test_private_by_default_for_local_paths_and_credentials(repo, private):
    from pylon.repomap.privacy import is_private

    assert is_private(repo) is private
    assert is_private(repo, "public") is False and is_private(repo, "private") is True
    with pytest.raises(ValueError):
        is_private(repo, "maybe")


def test_sealed_events_fit_a_4_kib_relay():
    """A private job on a relay that takes 4 KiB of content (issue 9): the request, its sealed
    chunks, the result and its sealed parts each fit, and all of them still open and reassemble."""
    from pylon.nostr.budget import Budget

    small = Budget(content=4096, message=8192, tags=2000)
    assert 0 < private_jobs.sealed_limit(small) < 4096
    assert private_jobs.sealed_limit() == private_jobs.SEALED_LIMIT  # unknown relays: unchanged
    buyer, node, _ = _parties()
    text = _source(800)  # ~33 KB: several sealed chunks at 4 KiB
    req_ev, chunks = _request(buyer, node, text, budget=small)
    assert len(chunks) >= 2
    for ev in [req_ev, *chunks]:
        verify_event(ev)
        assert len(ev.content.encode()) <= small.content and event_size(ev) <= small.message
    sealer = private_jobs.Sealer(node)
    req = private_jobs.parse_request(req_ev, sealer)
    assert nip90.reassemble(req, private_jobs.open_chunks(req, chunks, sealer)) == text

    result = _result(text, 800)
    ev, parts = private_jobs.build_result_with_parts(
        node, sealer, request=req, result=result, timing=ResultTiming(1, 2, 3), budget=small
    )
    assert parts
    for e in [ev, *parts]:
        verify_event(e)
        assert len(e.content.encode()) <= small.content and event_size(e) <= small.message
    assert private_jobs.parse_result(ev, parts, private_jobs.Sealer(buyer)).result == result


def test_relay_too_small_for_any_sealed_event_is_a_clear_error():
    from pylon.nostr.budget import Budget

    tiny = Budget(content=300, message=4096, tags=100)
    buyer, node, _ = _parties()
    with pytest.raises(nip90.InputTooLarge):
        _request(buyer, node, _source(800), budget=tiny)
