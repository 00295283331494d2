"""A node acknowledges (`processing`) only a job it has not answered within ACK_DEFER_S: a job of
milliseconds is its request and its result, one that runs longer is acknowledged, stamped with
the time it arrived, and the buyer sees it picked up before its result."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from faults_support import node_pubkey, relay_query, wait_for
from ollama_fake import FakeOllama
from pylon.daemon.node_acks import DeferredAcks
from pylon.schemas import kinds, rpc
from pylon.schemas.events import JobRequest

from pylon.localmarket.launcher import LocalMarket
from pylon.nostr import nip90
from pylon.nostr.filters import Filter


def request(job_id: str) -> JobRequest:
    return JobRequest(
        job_id=job_id,
        buyer="b" * 64,
        path=f"{job_id}.py",
        language="python",
        tasks=[],
        bid_msats=0,
        assigned=None,
        run_id=None,
        sha256="",
        size=0,
    )


def in_state(m: LocalMarket, job_id: str, state: str) -> dict | None:
    """The buyer's whole record of the job once it is in `state`, else None."""
    job = m.call("buyer", rpc.JobStatusReq(job_id=job_id))
    return job if job["state"] == state else None


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_only_the_jobs_not_answered_in_time_are_acknowledged(anyio_backend: str) -> None:
    sent: list[tuple[str, int]] = []
    last = anyio.Event()

    def send(req: JobRequest, received_ms: int) -> None:
        sent.append((req.job_id, received_ms))
        if req.job_id == "late":
            last.set()

    acks = DeferredAcks(send, defer_s=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(acks.run)
        await anyio.lowlevel.checkpoint()  # the loop is asleep, waiting for work
        acks.expect(request("quick"), 1_000)
        acks.expect(request("slow"), 1_001)
        acks.expect(request("late"), 1_002)
        acks.answered("quick")  # its result went out first
        acks.answered("never-taken")  # not ours: nothing to count
        assert acks.pending() == 2
        with anyio.fail_after(10):
            await last.wait()
        tg.cancel_scope.cancel()
    # "late" fell due after the others, so by then every earlier one was judged.
    assert sent == [("slow", 1_001), ("late", 1_002)]
    assert (acks.sent, acks.spared, acks.pending()) == (2, 1, 0)
    acks.answered("slow")  # answered after its acknowledgement: nothing more to spare
    assert acks.spared == 1


@pytest.mark.integration
def test_a_quick_job_is_answered_by_its_result_alone(tmp_path: Path) -> None:
    m = LocalMarket(home=tmp_path / "home", nodes=1, memory_relay=True)
    try:
        m.start(timeout=60)
        job_id = m.call("buyer", rpc.SubmitReq(path="a.py", text="def a():\n    return 1\n"))["job_id"]
        job = wait_for(
            "the job completed",
            lambda: in_state(m, job_id, "completed"),
            30,
        )
        status = m.call("n0", rpc.StatusReq())
        # Counted when the result was about to go out: no acknowledgement can follow it.
        assert status["acks_spared"] >= 1 and status["acks_sent"] == 0, status
        node = node_pubkey(m, "n0")
        feedback = relay_query(m.relay_url, [Filter(kinds=[kinds.JOB_FEEDBACK], authors=[node])])
        assert feedback == []
        (result,) = relay_query(m.relay_url, [Filter(ids=[job["result_id"]])])
        assert result.pubkey == node
        # The pickup is the node's own `received` stamp, as the result carries it.
        assert job["picked_up"] is not None and job["picked_up"] <= job["started"]
        trail = m.call("buyer", rpc.TrailReq(job_id=job_id))
        assert [link["role"] for link in trail["chain"]] == ["request", "result"], trail
        # Unpaid here, so verified through the result: the missing feedback is no problem.
        assert trail["verified_through"] == "result", trail
        assert trail["problems"] == ["no payment on the relay"], trail
    finally:
        m.stop()


@pytest.mark.integration
def test_a_job_still_running_is_acknowledged_with_its_arrival_time(tmp_path: Path) -> None:
    with FakeOllama(delay_s=2.0) as fake:
        m = LocalMarket(
            home=tmp_path / "home",
            nodes=1,
            memory_relay=True,
            node_args=["--executor", "ollama", "--ollama-host", fake.url],
        )
        try:
            m.start(timeout=60)
            job_id = m.call("buyer", rpc.SubmitReq(path="a.py", text="def a():\n    return 1\n"))["job_id"]
            # Seen picked up while the model still answers: the acknowledgement came on its own.
            wait_for(
                "the job picked up",
                lambda: in_state(m, job_id, "processing"),
                30,
            )
            assert len(fake.chat_requests) <= 1
            job = wait_for(
                "the job completed",
                lambda: in_state(m, job_id, "completed"),
                60,
            )
            node = node_pubkey(m, "n0")
            status = m.call("n0", rpc.StatusReq())
            assert status["acks_sent"] == 1, status
            (ack,) = relay_query(m.relay_url, [Filter(kinds=[kinds.JOB_FEEDBACK], authors=[node])])
            fb = nip90.parse_feedback(ack)
            assert fb.status.value == "processing"
            (result,) = relay_query(m.relay_url, [Filter(ids=[job["result_id"]])])
            received_ms = int(result.tag_value("received") or 0)
            assert fb.at_ms == received_ms, (fb.at_ms, result.tags)
            assert job["picked_up"] is not None and job["picked_up"] <= job["started"]
        finally:
            m.stop()
