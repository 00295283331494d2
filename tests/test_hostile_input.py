"""Issue 10 items 1 and 4: chunked-input bombs and deeply nested JSON are bounded, clear errors.

Each test fails on the code before the fix: `reassemble` inflated a bomb in full (hundreds of
MiB) before looking at its size, and a nested `proof` tag or NUT-10 secret raised
RecursionError, which no caller catches.
"""

from __future__ import annotations

import base64
import tracemalloc
import zlib

import msgspec
import pytest
from pylon.schemas import kinds
from pylon.schemas.events import InputChunk

from pylon.keys import NostrKeys
from pylon.nostr import nip61, nip90
from pylon.nostr.event import InvalidEvent, NostrEvent, sign_event
from pylon.untrusted import BadInput, decode, decode_json, json_loads

KEYS = NostrKeys.generate()
NESTED = "[" * 5000 + "]" * 5000
_json = msgspec.json.Encoder()


def _chunked(keys: NostrKeys, packed: str, sha: str, *, size: int, pieces: int | None = None):
    step = nip90.CHUNK_DATA_BYTES
    parts = [packed[i : i + step] for i in range(0, len(packed), step)] or [""]
    total = pieces or len(parts)
    chunks = [
        sign_event(
            keys,
            kinds.JOB_REQUEST,
            _json.encode(InputChunk(sha256=sha, index=i, total=total, data=p)).decode(),
            [["chunk", sha, str(i), str(total)]],
        )
        for i, p in enumerate(parts)
    ]
    req_ev = nip90.build_request(
        keys,
        path="bomb.py",
        language="python",
        text=None,
        sha256=sha,
        size=size,
        chunk_ids=[c.id for c in chunks],
        node=None,
        run_id=None,
    )
    return req_ev, chunks


def test_decompression_bomb_is_bounded_while_inflating() -> None:
    # 256 MiB of zeros compress to ~250 KB: 7 chunk events that claim to be a 1000-byte file.
    packed = base64.b64encode(zlib.compress(b"\0" * (256 * 1024 * 1024), 9)).decode()
    req_ev, chunks = _chunked(KEYS, packed, "a" * 64, size=1000)
    req = nip90.parse_request(req_ev)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidEvent) as info:
            nip90.reassemble(req, chunks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.reason == "too_large"
    # The old code allocated the whole 256 MiB before checking; the bound is a few chunk sizes.
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while rejecting a bomb"


def test_bomb_that_declares_the_maximum_still_stops_at_one_mib() -> None:
    packed = base64.b64encode(zlib.compress(b"x" * (64 * 1024 * 1024), 9)).decode()
    req = nip90.parse_request(_chunked(KEYS, packed, "b" * 64, size=nip90.MAX_INPUT_BYTES)[0])
    chunks = _chunked(KEYS, packed, "b" * 64, size=nip90.MAX_INPUT_BYTES)[1]
    tracemalloc.start()
    try:
        with pytest.raises(InvalidEvent, match="too_large"):
            nip90.reassemble(req, chunks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_input_shorter_than_declared_is_refused() -> None:
    text = "x = 1\n" * 10_000
    sha, chunks = nip90.build_chunks(KEYS, text)
    req_ev = nip90.build_request(
        KEYS,
        path="a.py",
        language="python",
        text=None,
        sha256=sha,
        size=len(text) + 1,
        chunk_ids=[c.id for c in chunks],
        node=None,
        run_id=None,
    )
    with pytest.raises(InvalidEvent, match="size_mismatch"):
        nip90.reassemble(nip90.parse_request(req_ev), chunks)


def test_too_many_chunk_ids_are_refused_before_any_fetch() -> None:
    ids = [f"{i:064x}" for i in range(nip90.MAX_CHUNKS + 1)]
    ev = nip90.build_request(
        KEYS,
        path="a.py",
        language="python",
        text=None,
        sha256="c" * 64,
        size=10,
        chunk_ids=ids,
        node=None,
        run_id=None,
    )
    with pytest.raises(InvalidEvent, match="too_many_chunks"):
        nip90.parse_request(ev)


@pytest.mark.parametrize("sha", ["", "xyz", "A" * 64, "a" * 63])
def test_chunked_request_must_declare_a_sha256(sha: str) -> None:
    ev = nip90.build_request(
        KEYS,
        path="a.py",
        language="python",
        text=None,
        sha256=sha,
        size=10,
        chunk_ids=["d" * 64],
        node=None,
        run_id=None,
    )
    with pytest.raises(InvalidEvent, match="bad_sha256"):
        nip90.parse_request(ev)


def test_chunk_total_must_match_the_request() -> None:
    text = "y = 2\n" * 20_000
    sha = nip90.sha256_hex(text.encode())
    packed = base64.b64encode(zlib.compress(text.encode())).decode()
    req_ev, chunks = _chunked(KEYS, packed, sha, size=len(text), pieces=99)
    with pytest.raises(InvalidEvent, match="chunk_mismatch"):
        nip90.reassemble(nip90.parse_request(req_ev), chunks)


def test_honest_chunked_input_still_reassembles() -> None:
    text = "".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(20_000))
    sha, chunks = nip90.build_chunks(KEYS, text)
    req_ev = nip90.build_request(
        KEYS,
        path="big.py",
        language="python",
        text=None,
        sha256=sha,
        size=len(text.encode()),
        chunk_ids=[c.id for c in chunks],
        node=None,
        run_id=None,
    )
    assert nip90.reassemble(nip90.parse_request(req_ev), chunks) == text


# --- item 4: deeply nested JSON ---------------------------------------------------------------


def _nutzap(proof_json: str) -> NostrEvent:
    tags = [
        ["proof", proof_json],
        ["u", "http://mint"],
        ["e", "1" * 64, "", "result"],
        ["e", "2" * 64, "", "job"],
        ["p", "3" * 64],
        ["amount", "2000", "msat"],
    ]
    return sign_event(KEYS, kinds.NUTZAP, "", tags)


def test_nutzap_with_a_nested_proof_is_an_invalid_event() -> None:
    with pytest.raises(InvalidEvent) as info:
        nip61.parse_nutzap(_nutzap('{"amount": 1, "witness": ' + NESTED + "}"))
    assert info.value.reason == "bad_proof"


def test_the_core_helpers_are_total() -> None:
    dec = msgspec.json.Decoder(dict)
    for call in (
        lambda: decode(dec, '{"a": ' + NESTED + "}"),
        lambda: decode_json(NESTED),
        lambda: json_loads(NESTED),
        lambda: decode(msgspec.msgpack.Decoder(), b"\x91" * 5000 + b"\xc0"),
        lambda: decode(dec, b"\xff\xfe"),
    ):
        with pytest.raises(BadInput):
            call()
    assert issubclass(InvalidEvent, BadInput)


def test_rpc_frame_nested_too_deeply_is_a_frame_error() -> None:
    from pylon.rpc.framing import FrameError, decode_frame

    with pytest.raises(FrameError):
        decode_frame(b"\x91" * 20_000 + b"\xc0")


def test_a_repos_nested_manifests_do_not_break_the_map(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """tomllib and json raise RecursionError on nested manifests; the map must shrug them off."""
    from pylon.schemas.events import FileResult

    from pylon.repomap import build_artifacts, take_snapshot

    root = tmp_path / "repo"
    root.mkdir()
    (root / "app.py").write_text("def main():\n    return 1\n")
    (root / "pyproject.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    (root / "Cargo.toml").write_text("b = " + "[" * 5000 + "]" * 5000 + "\n")
    (root / "package.json").write_text(NESTED)
    snap = take_snapshot(root)
    res = FileResult(path="app.py", language="python", lines=2, symbols=[], imports=[], summary="main")
    paths = build_artifacts(tmp_path / "out", run_id="r", snapshot=snap, results={"app.py": (res, "n", "e")})
    assert "## Entry points" in open(paths["overview"]).read()
