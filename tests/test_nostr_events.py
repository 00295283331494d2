"""NIP-01 signing and the NIP-90 builders/parsers: what we sign verifies in nostr-sdk too,
tampering is caught, and large inputs and results travel intact."""

from __future__ import annotations

import pytest
from nostr_sdk import Event
from pylon.schemas.events import FileResult, ResultTiming, Symbol

from pylon.keys import NostrKeys, load_or_create_keys
from pylon.nostr import nip90
from pylon.nostr.event import InvalidEvent, NostrEvent, encode_event, sign_event, verify_event


def test_signed_events_verify_here_and_in_nostr_sdk() -> None:
    k = NostrKeys.generate()
    ev = sign_event(k, 5931, 'héllo "quoted" \n\t \x01 🎉', [["p", k.pubkey], ["i", "a\\b", "text"]])
    verify_event(ev)
    other = Event.from_json(encode_event(ev).decode())
    assert other.verify() and other.id().to_hex() == ev.id


@pytest.mark.parametrize("field", ["content", "sig", "pubkey", "kind"])
def test_tampering_is_caught(field: str) -> None:
    k = NostrKeys.generate()
    ev = sign_event(k, 1, "x", [])
    changes = {"content": "y", "sig": "00" * 64, "pubkey": NostrKeys.generate().pubkey, "kind": 2}
    forged = NostrEvent(**{f: getattr(ev, f) for f in NostrEvent.__struct_fields__} | {field: changes[field]})
    with pytest.raises(InvalidEvent):
        verify_event(forged)


def test_key_file_is_private_and_stable(tmp_path) -> None:
    path = tmp_path / "keys" / "nostr.key"
    a = load_or_create_keys(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_keys(path).pubkey == a.pubkey
    assert a.secret_hex() not in repr(a)
    path.chmod(0o644)
    with pytest.raises(Exception, match="readable by others"):
        load_or_create_keys(path)


def test_big_input_is_chunked_and_reassembled() -> None:
    k = NostrKeys.generate()
    text = "".join(f"def f{i}(x):\n    return x * {i}  # {i * 7919 % 1000}\n" for i in range(20000))
    assert len(text.encode()) > nip90.INLINE_LIMIT
    sha, chunks = nip90.build_chunks(k, text)
    assert all(len(encode_event(c)) < 64 * 1024 for c in chunks)
    req_ev = nip90.build_request(
        k,
        path="big.py",
        language="python",
        text=None,
        sha256=sha,
        size=len(text.encode()),
        chunk_ids=[c.id for c in chunks],
        node=None,
        run_id=None,
    )
    req = nip90.parse_request(req_ev)
    assert nip90.reassemble(req, list(reversed(chunks))) == text
    with pytest.raises(InvalidEvent, match="missing_chunk"):
        nip90.reassemble(req, chunks[:-1] if len(chunks) > 1 else [])


def test_chunks_from_someone_else_are_refused() -> None:
    k, mallory = NostrKeys.generate(), NostrKeys.generate()
    text = "x = 1\n" * 20000
    sha, chunks = nip90.build_chunks(mallory, text)
    req = nip90.parse_request(
        nip90.build_request(
            k,
            path="a.py",
            language="python",
            text=None,
            sha256=sha,
            size=len(text),
            chunk_ids=[c.id for c in chunks],
            node=None,
            run_id=None,
        )
    )
    with pytest.raises(InvalidEvent, match="chunk_mismatch"):
        nip90.reassemble(req, chunks)


def _request(k: NostrKeys):
    return nip90.parse_request(
        nip90.build_request(
            k, path="a.py", language="python", text="x=1", sha256="", size=3, node=None, run_id="r" * 64
        )
    )


def test_result_hash_and_payload_are_checked() -> None:
    buyer, node = NostrKeys.generate(), NostrKeys.generate()
    req = _request(buyer)
    fr = FileResult(path="a.py", language="python", lines=1, symbols=[], imports=[], summary="s")
    ev = nip90.build_result(node, request=req, result=fr, timing=ResultTiming(1, 2, 3))
    parsed = nip90.parse_result(ev)
    assert parsed.result == fr and parsed.job_id == req.job_id and parsed.timing.published_ms > 0
    bad_hash = sign_event(node, ev.kind, ev.content.replace('"s"', '"t"'), ev.tags)
    with pytest.raises(InvalidEvent, match="hash_mismatch"):
        nip90.parse_result(bad_hash)
    junk = '{"not": "a result"}'
    tags = [t if t[0] != "x" else ["x", nip90.sha256_hex(junk.encode())] for t in ev.tags]
    with pytest.raises(InvalidEvent, match="bad_payload"):
        nip90.parse_result(sign_event(node, ev.kind, junk, tags))


def test_huge_results_are_compressed_to_fit() -> None:
    buyer, node = NostrKeys.generate(), NostrKeys.generate()
    syms = [
        Symbol(
            name=f"function_number_{i}", kind="function", line=i, signature=f"def function_number_{i}(a, b)"
        )
        for i in range(3000)
    ]
    fr = FileResult(path="a.py", language="python", lines=3000, symbols=syms, imports=[], summary="s")
    ev = nip90.build_result(node, request=_request(buyer), result=fr, timing=ResultTiming(1, 2, 3))
    assert len(encode_event(ev)) < 64 * 1024 and ev.tag_value("encoding") == nip90.COMPRESSED
    assert nip90.parse_result(ev).result == fr


def test_results_beyond_one_event_travel_as_parts() -> None:
    import random

    buyer, node = NostrKeys.generate(), NostrKeys.generate()
    rng = random.Random(7)
    syms = [
        Symbol(
            name="".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(24)),
            kind="function",
            line=i,
            signature="",
        )
        for i in range(6000)
    ]
    fr = FileResult(path="a.py", language="python", lines=6000, symbols=syms, imports=[], summary="s")
    ev, parts = nip90.build_result_with_parts(
        node, request=_request(buyer), result=fr, timing=ResultTiming(1, 2, 3)
    )
    assert parts and ev.content == "" and nip90.result_part_ids(ev) == [p.id for p in parts]
    assert all(len(encode_event(p)) < 64 * 1024 for p in parts)
    assert nip90.parse_result(ev, list(reversed(parts))).result == fr
    with pytest.raises(InvalidEvent, match="missing_part"):
        nip90.parse_result(ev, parts[1:])
    with pytest.raises(pylon_nip90_too_large()):
        nip90.build_result(node, request=_request(buyer), result=fr, timing=ResultTiming(1, 2, 3))


def pylon_nip90_too_large() -> type[Exception]:
    return nip90.ResultTooLarge
