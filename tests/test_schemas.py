"""Every Struct that crosses a process boundary survives a round trip, in JSON and msgpack."""

from __future__ import annotations

import msgspec
import pytest
from pylon.schemas import events, rpc, telemetry
from pylon.schemas.errors import ErrorCode

SAMPLES = [
    events.Announce(
        name="n0",
        version="0.1.0",
        executors=["deterministic"],
        models=[],
        max_concurrency=4,
        price_msats=2000,
    ),
    events.Heartbeat(
        state=events.NodeState.PAUSED,
        queue_depth=3,
        running=1,
        completed=10,
        failed=2,
        uptime_s=5.5,
        interval_s=10.0,
        name="n0",
    ),
    events.FileResult(
        path="a.py",
        language="python",
        lines=3,
        symbols=[events.Symbol(name="f", kind="function", line=1, signature="def f()")],
        imports=["os"],
        summary="a module",
    ),
    events.InputChunk(sha256="ab" * 32, index=0, total=2, data="eJw="),
    events.JobRequest(
        job_id="1" * 64,
        buyer="2" * 64,
        path="a.py",
        language="python",
        tasks=["symbols"],
        bid_msats=1000,
        assigned=None,
        run_id=None,
        sha256="3" * 64,
        size=10,
        text="x=1",
    ),
    events.Feedback(
        job_id="1" * 64, node="2" * 64, status=events.FeedbackStatus.ERROR, error=ErrorCode.TOO_LARGE
    ),
    events.RunRoot(repo="/r", snapshot_sha256="4" * 64, files=3, skipped={"binary": 1}),
    events.NutzapInfo(mints=["http://m"], relays=["ws://r"], p2pk_pubkey="02" + "5" * 64),
    events.Redemption(direction="in", amount_sats=2, job_id="1" * 64, payment_id="6" * 64),
    telemetry.JobTelemetry(
        job_id="1" * 64, state=telemetry.JobState.FAILED, error=ErrorCode.TIMEOUT, attempts=3
    ),
    telemetry.GlobalStats(
        online_nodes=1,
        jobs_completed=1,
        jobs_failed=0,
        jobs_total=1,
        success_rate=1.0,
        jobs_per_min=60.0,
        p50_e2e_s=0.1,
        p95_e2e_s=0.2,
        top_providers=[telemetry.ProviderCount(pubkey="p", completed=1)],
    ),
    rpc.NodeStatus(
        name="n0", pubkey="p", state=events.NodeState.ONLINE, running=0, queued=0, completed=0, failed=0
    ),
    rpc.MapSummary(
        run_id="r", files=1, completed=1, failed=0, providers=1, wall_s=0.5, artifacts={"overview": "/o"}
    ),
]


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_round_trip(obj: msgspec.Struct) -> None:
    for enc, dec in (
        (msgspec.json.encode, msgspec.json.decode),
        (msgspec.msgpack.encode, msgspec.msgpack.decode),
    ):
        assert dec(enc(obj), type=type(obj)) == obj


def test_every_request_round_trips_as_a_frame() -> None:
    for cls in rpc.Request.__args__:  # type: ignore[attr-defined]
        fields = {f: "x" for f in cls.__struct_fields__ if f in ("job_id", "pubkey", "repo", "path", "text")}
        if "amount_sats" in cls.__struct_fields__:
            fields["amount_sats"] = 5
        if "items" in cls.__struct_fields__:
            fields["items"] = [rpc.SubmitItem(path="a.py", text="x = 1\n")]
        frame = rpc.Call(id=7, req=cls(**fields))
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(frame), type=rpc.AnyFrame) == frame


def test_error_codes_are_the_designed_set() -> None:
    assert {e.value for e in ErrorCode} == {
        "timeout",
        "provider_offline",
        "exec_error",
        "model_missing",
        "bad_input",
        "too_large",
        "rate_limited",
        "cancelled",
        "payment_failed",
    }


def test_bad_payload_is_rejected_not_coerced() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(
            b'{"path": "a", "language": "python", "lines": "many", "symbols": [], "imports": [],'
            b' "summary": ""}',
            type=events.FileResult,
        )
