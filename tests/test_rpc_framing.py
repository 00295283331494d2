"""Frame encoding/decoding: every request round-trips, bad bytes only ever raise FrameError."""

from __future__ import annotations

from typing import get_args

import anyio
import msgspec
import pytest
from anyio.abc import ByteReceiveStream
from hypothesis import given, settings
from hypothesis import strategies as st
from pylon.schemas import rpc
from pylon.schemas.rpc import (
    MAX_FRAME_BYTES,
    Call,
    Hello,
    Progress,
    Push,
    Reply,
    Request,
    RpcErrorCode,
    Welcome,
)

from pylon.rpc.framing import FrameBuffer, FrameError, FrameReader, decode_frame, encode_frame

# One instance of every request, with its optional fields set where it has any.
SAMPLE_REQUESTS: list[Request] = [
    rpc.StatusReq(),
    rpc.StatsReq(provider="ab" * 32),
    rpc.SubscribeReq(topics=["job", "node"]),
    rpc.PauseReq(),
    rpc.ResumeReq(),
    rpc.DrainReq(),
    rpc.AbortJobReq(job_id="j1"),
    rpc.NodeJobsReq(limit=5),
    rpc.SubmitReq(path="a/b.py", text="print('héllo')\n", language="python", run_id="r1"),
    rpc.SubmitManyReq(items=[rpc.SubmitItem(path="a.py", text="x = 1\n", language="python")], run_id="r1"),
    rpc.JobStatusReq(job_id="j1"),
    rpc.JobResultsReq(job_id="j1"),
    rpc.JobListReq(run_id="r1", limit=3),
    rpc.NodesReq(),
    rpc.RunsReq(),
    rpc.MapReq(repo="/src/repo", out_dir="/tmp/out"),
    rpc.AskReq(run_or_dir="/tmp/out", question="where is `x` defined", fanout=4, depth=1, budget_sats=9),
    rpc.AsksReq(),
    rpc.PayReq(job_id="j1"),
    rpc.RefundReq(job_id="j1"),
    rpc.CancelReq(run_id="r1"),
    rpc.StopAllReq(),
    rpc.BanReq(pubkey="cd" * 32, banned=False),
    rpc.TrailReq(job_id="j1"),
    rpc.ReceiptsReq(provider="ef" * 32),
    rpc.WalletBalanceReq(),
    rpc.WalletFundReq(amount_sats=100),
]


def test_samples_cover_every_request_type() -> None:
    # A new request type must be added above, or this round-trip suite silently skips it.
    assert {type(r) for r in SAMPLE_REQUESTS} == set(get_args(Request))


@pytest.mark.parametrize("req", SAMPLE_REQUESTS, ids=lambda r: type(r).__name__)
def test_every_request_round_trips(req: Request) -> None:
    data = encode_frame(Call(id=42, req=req))
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    frame = decode_frame(data[4:])
    assert frame == Call(id=42, req=req)
    assert type(frame.req) is type(req)


def test_other_frames_round_trip_and_results_become_plain_data() -> None:
    status = rpc.NodeStatus(
        name="n",
        pubkey="p",
        state="online",
        running=1,
        queued=2,
        completed=3,
        failed=0,
        failures={"timeout": 1},
    )
    frames = [
        Hello(version=1, client="tui"),
        Welcome(version=1, daemon="node", name="n", pubkey="p"),
        Reply(id=1, ok=True, result=status),
        Reply(id=2, ok=False, error=RpcErrorCode(code="not_found", message="no job")),
        Progress(id=3, data={"completed": 1}),
        Push(topic="job", data=[1, "two", None]),
    ]
    buf = FrameBuffer()
    buf.feed(b"".join(encode_frame(f) for f in frames))
    out = [buf.next_frame() for _ in frames]
    assert buf.next_frame() is None and buf.pending == 0
    assert out[0] == frames[0] and out[1] == frames[1] and out[3:] == frames[3:]
    # A result Struct travels as plain data and converts back with msgspec.convert.
    assert out[2].result["failures"] == {"timeout": 1}
    assert msgspec.convert(out[2].result, rpc.NodeStatus) == status


def test_frames_split_at_every_byte_boundary() -> None:
    data = encode_frame(Call(id=7, req=rpc.SubmitReq(path="x.py", text="x = 1\n")))
    for cut in range(len(data) + 1):
        buf = FrameBuffer()
        buf.feed(data[:cut])
        got = buf.next_frame()
        if cut < len(data):
            assert got is None
            buf.feed(data[cut:])
            got = buf.next_frame()
        assert got == Call(id=7, req=rpc.SubmitReq(path="x.py", text="x = 1\n"))


def test_oversized_length_is_fatal_before_reading_the_body() -> None:
    buf = FrameBuffer()
    buf.feed((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
    with pytest.raises(FrameError) as info:
        buf.next_body()
    assert info.value.fatal
    assert "exceeds" in str(info.value)


def test_encoding_an_oversized_frame_is_refused() -> None:
    with pytest.raises(FrameError) as info:
        encode_frame(Push(topic="log", data="x" * (MAX_FRAME_BYTES + 1)))
    assert info.value.code == "too_large"


def test_encoding_unsupported_data_is_a_frame_error() -> None:
    with pytest.raises(FrameError):
        encode_frame(Reply(id=1, ok=True, result=object()))


@pytest.mark.parametrize(
    ("body", "frame_id", "code"),
    [
        (b"hello", 0, "bad_frame"),  # not msgpack (trailing bytes)
        (b"", 0, "bad_frame"),
        (msgspec.msgpack.encode([1, 2, 3]), 0, "bad_frame"),  # msgpack, wrong shape
        (
            msgspec.msgpack.encode({"t": "call", "id": 9, "req": {"op": "launch_missiles"}}),
            9,
            "unknown_method",
        ),
        (msgspec.msgpack.encode({"t": "call", "id": 8, "req": {"op": "job_status"}}), 8, "bad_frame"),
        (msgspec.msgpack.encode({"t": "call", "id": "x", "req": {"op": "status"}}), 0, "bad_frame"),
        (msgspec.msgpack.encode({"t": "nope"}), 0, "bad_frame"),
        (b"\x81\xa1t\xa2\x00\x80", 0, "bad_frame"),  # a string that is not UTF-8
        (b"\x91" * 100_000 + b"\x01", 0, "bad_frame"),  # absurd nesting
        (b"\x82\xa1t\xa4push\xa4data" + b"\x91" * 100_000, 0, "bad_frame"),  # ... inside an Any field
    ],
)
def test_bad_bodies_raise_non_fatal_frame_errors(body: bytes, frame_id: int, code: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(body)
    assert not info.value.fatal
    assert (info.value.frame_id, info.value.code) == (frame_id, code)


class _ChunkStream(ByteReceiveStream):
    """A byte stream that delivers fixed chunks, then ends."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = [c for c in chunks if c]

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._chunks:
            raise anyio.EndOfStream
        return self._chunks.pop(0)

    async def aclose(self) -> None:
        self._chunks = []


async def _read_all(chunks: list[bytes]) -> list[object]:
    reader = FrameReader(_ChunkStream(chunks))
    frames: list[object] = []
    while True:
        try:
            frame = await reader.read_frame()
        except FrameError as e:
            if e.fatal:
                return frames
            continue
        if frame is None:
            return frames
        frames.append(frame)


def test_reader_truncated_frame_is_fatal_and_clean_end_is_none() -> None:
    data = encode_frame(Hello(version=1))
    assert anyio.run(_read_all, [data, data]) == [Hello(version=1)] * 2

    async def truncated() -> None:
        await FrameReader(_ChunkStream([data[:-1]])).read_frame()

    with pytest.raises(FrameError) as info:
        anyio.run(truncated)
    assert info.value.fatal and "middle of a frame" in str(info.value)


def test_reader_skips_a_bad_frame_and_stays_in_step() -> None:
    bad = (5).to_bytes(4, "big") + b"hello"
    good = encode_frame(Call(id=1, req=rpc.StatusReq()))
    assert anyio.run(_read_all, [bad + good[:3], good[3:]]) == [Call(id=1, req=rpc.StatusReq())]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bodies_only_raise_frame_error(data: bytes) -> None:
    try:
        decode_frame(data)
    except FrameError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8), st.booleans())
def test_arbitrary_streams_only_raise_frame_error(chunks: list[bytes], with_valid_prefix: bool) -> None:
    # Bytes straight off the wire (optionally after a valid frame, so decoding gets past the first one).
    buf = FrameBuffer(max_frame=1024)
    if with_valid_prefix:
        buf.feed(encode_frame(Hello(version=1)))
    for chunk in chunks:
        buf.feed(chunk)
        while True:
            try:
                if buf.next_frame() is None:
                    break
            except FrameError as e:
                if e.fatal:
                    return
