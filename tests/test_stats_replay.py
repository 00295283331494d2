"""`pylon stats --replay`: telemetry rebuilt from the relay alone agrees with the live buyer's.

The market test runs real processes (relay, buyer, three nodes, one of them killed so that
its jobs time out and are re-issued) and compares the two JSON documents field by field. The
state-machine test publishes hand-made signed events for the cases a healthy market rarely
shows (errors, exhausted attempts, stale jobs, impostors, payments) and checks each row.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sysconfig
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from pylon.schemas import kinds, rpc
from pylon.schemas.errors import ErrorCode
from pylon.schemas.events import FeedbackStatus, FileResult, ResultTiming
from pylon.schemas.telemetry import JobState

from pylon.keys import NostrKeys
from pylon.localmarket.launcher import LocalMarket
from pylon.nostr import nip61, nip90
from pylon.nostr.event import NostrEvent, sign_event
from pylon.nostr.filters import Filter
from pylon.nostr.relay_client import RelayPool
from pylon.provenance.fetch import RawReader
from pylon.stats.replay import replay

pytestmark = pytest.mark.integration

TEXT = "x = 1\n"
SHA = nip90.sha256_hex(TEXT.encode())


def stdlib_files(n: int) -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in stdlib.glob("*.py") if 2_000 < p.stat().st_size < 40_000)[:n]


def wait_terminal(m: LocalMarket, job_ids: list[str], timeout: float = 90) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    states: dict[str, dict] = {}
    while time.monotonic() < deadline:
        states = {j["job_id"]: j for j in m.call("buyer", rpc.JobListReq())["jobs"] if j["job_id"] in job_ids}
        if len(states) == len(job_ids) and all(
            s["state"] in ("completed", "failed") for s in states.values()
        ):
            return states
        time.sleep(0.2)
    raise TimeoutError(f"jobs not finished: {sorted(s['state'] for s in states.values())}")


def cli_json(m: LocalMarket, *args: str) -> dict:
    out = m.cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # stdout holds the JSON document and nothing else


def test_live_and_replayed_stats_agree(tmp_path: Path) -> None:
    # A paid market: nodes ask 1000 msat, the buyer pays every verified result with a nutzap.
    m = LocalMarket(
        home=tmp_path / "home",
        nodes=3,
        memory_relay=True,
        with_mint=True,
        node_args=["--price", "1000"],
        # A pickup timeout longer than the 3 s a silent node stays "online": both sides then call
        # the dead node's attempts provider_offline (the relay only shows they were never picked up).
        buyer_args=["--pickup-timeout", "4", "--result-timeout", "10", "--bid", "1000"],
    )
    try:
        m.start(timeout=90)
        m.fund("buyer", 500)
        nodes = {n["name"]: n["pubkey"] for n in m.call("buyer", rpc.NodesReq())["nodes"]}
        # n0 dies while the buyer still counts it online: the jobs it is given time out and are
        # re-issued to n1 and n2, so attempts and retries are part of what must agree.
        m.kill("node-n0", signal.SIGKILL)
        job_ids = [
            m.call("buyer", rpc.SubmitReq(path=f.name, text=f.read_text()))["job_id"]
            for f in stdlib_files(40)
        ]
        wait_terminal(m, job_ids)
        assert m.wait_paid(timeout=60) == (40, 40)
        # online_nodes is a figure of "now": compare once the live buyer, too, has seen n0 go quiet.
        deadline = time.monotonic() + 20
        while m.call("buyer", rpc.StatusReq())["online_nodes"] != 2:
            assert time.monotonic() < deadline, "the buyer still counts the killed node online"
            time.sleep(0.1)

        live = cli_json(m, "stats")
        replayed = cli_json(m, "stats", "--replay")
        assert live["jobs_total"] == 40 and live["jobs_completed"] == 40
        # Exact equality, floats included: both sides use the request's submitted_ms and the
        # result's timing tags. Only the dropped-event counters are each side's own. Providers
        # with equal counts may be listed in either order (Counter ties), hence sorted.
        for key in (
            "online_nodes",
            "jobs_completed",
            "jobs_failed",
            "jobs_total",
            "success_rate",
            "jobs_per_min",
            "p50_e2e_s",
            "p95_e2e_s",
            "p50_queue_wait_s",
            "p50_exec_s",
            "p50_publish_s",
        ):
            assert replayed[key] == live[key], key
        assert sorted(map(json.dumps, replayed["top_providers"])) == sorted(
            map(json.dumps, live["top_providers"])
        )
        assert live["online_nodes"] == 2

        rows = {j: m.call("buyer", rpc.JobStatusReq(job_id=j)) for j in job_ids}
        retried = [t for t in rows.values() if t["attempts"] > 1]
        assert retried, "n0 should have been given at least one job"
        assert all(t["provider_pubkey"] != nodes["n0"] for t in rows.values())

        survivor = nodes["n1"]
        live_p = cli_json(m, "stats", "--provider", survivor)
        rep_p = cli_json(m, "stats", "--provider", survivor, "--replay")
        # uptime_s is the newest heartbeat's, read a moment apart: the rest must match exactly.
        assert rep_p.pop("uptime_s") >= live_p.pop("uptime_s") > 0
        assert (
            rep_p == live_p and rep_p["completed"] > 0 and rep_p["earned_msats"] == 1000 * rep_p["completed"]
        )
        # The dead node: charged with one provider_offline attempt per re-issued job, on both sides.
        dead_live = cli_json(m, "stats", "--provider", nodes["n0"])
        dead_rep = cli_json(m, "stats", "--provider", nodes["n0"], "--replay")
        # (Its last heartbeat has expired, NIP-40, so the relay no longer serves its uptime.)
        assert dead_rep.pop("uptime_s") is None and dead_live.pop("uptime_s") > 0
        assert dead_rep == dead_live and dead_rep["online"] is False
        assert (dead_rep["failed"], dead_rep["failure_reasons"]) == (
            len(retried),
            {"provider_offline": len(retried)},
        )

        # The launch report agrees too, from either source.
        rep_live, rep_replay = cli_json(m, "report"), cli_json(m, "report", "--replay")
        assert (rep_live["source"], rep_replay["source"]) == ("daemon", "replay")
        assert rep_live["targets"] == rep_replay["targets"] and rep_live["pricing"] == rep_replay["pricing"]
        assert rep_live["providers_with_jobs"] == 2 and rep_live["all_met"] is False

        # The buyer daemon answers a trail too: a re-issued job, paid, and receipted by its node
        # (the receipt follows the payment asynchronously: wait for it, bounded).
        job = retried[0]
        deadline = time.monotonic() + 30
        while not (trail := m.call("buyer", rpc.TrailReq(job_id=job["job_id"])))["verified"]:
            assert time.monotonic() < deadline, trail["problems"]
            time.sleep(0.2)
        assert (
            trail["found"] and trail["attempts"] == job["attempts"] and trail["verified_through"] == "receipt"
        )
        assert (trail["result_id"], trail["payment_id"]) == (job["result_id"], job["payment_event_id"])
        assert [link["role"] for link in trail["chain"] if link["on_path"]][-3:] == [
            "result",
            "payment",
            "receipt",
        ]
        assert trail["paid_msats"] == 1000
    finally:
        m.stop()


# --- the state machine on hand-made events --------------------------------------------------------


@pytest.fixture(scope="module")
def relay_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    m = LocalMarket(home=tmp_path_factory.mktemp("relay") / "home", nodes=0, memory_relay=True)
    try:
        m.start_relay()
        yield m.relay_url
    finally:
        m.stop()


@contextlib.asynccontextmanager
async def open_pool(url: str) -> AsyncIterator[RelayPool]:
    pool = RelayPool([url])
    async with anyio.create_task_group() as tg:
        await pool.start(tg)
        try:
            yield pool
        finally:
            tg.cancel_scope.cancel()


class Scene:
    def __init__(self) -> None:
        self.buyer = NostrKeys.generate()
        self.n1, self.n2, self.n3 = NostrKeys.generate(), NostrKeys.generate(), NostrKeys.generate()
        self.events: list[NostrEvent] = []
        self.jobs = 0

    def request(self, node: NostrKeys, *, retry_of: NostrEvent | None = None, attempt: int = 1) -> NostrEvent:
        # A path of its own per job: two equal requests in one millisecond would be one event.
        self.jobs += retry_of is None
        ev = nip90.build_request(
            self.buyer,
            path=nip90.parse_request(retry_of).path if retry_of else f"m{self.jobs}.py",
            language="python",
            text=TEXT,
            sha256=SHA,
            size=len(TEXT),
            node=node.pubkey,
            run_id=None,
            bid_msats=3000,
            attempt=attempt,
            retry_of=retry_of.id if retry_of else None,
        )
        self.events.append(ev)
        return ev

    def feedback(
        self, node: NostrKeys, req: NostrEvent, status: FeedbackStatus, error: ErrorCode | None = None
    ) -> NostrEvent:
        ev = nip90.build_feedback(node, job_id=req.id, buyer=self.buyer.pubkey, status=status, error=error)
        self.events.append(ev)
        return ev

    def result(
        self, node: NostrKeys, req: NostrEvent, *, started: int, finished: int, amount: int = 0
    ) -> NostrEvent:
        ev = nip90.build_result(
            node,
            request=nip90.parse_request(req),
            result=FileResult(
                path="m.py", language="python", lines=1, symbols=[], imports=[], summary="", input_sha256=SHA
            ),
            timing=ResultTiming(received_ms=started, started_ms=started, finished_ms=finished),
            amount_msats=amount,
        )
        self.events.append(ev)
        return ev


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_replay_follows_the_buyer_state_machine(relay_url: str, anyio_backend: str) -> None:
    s = Scene()
    # A: n1 errors (retryable), the retry to n2 completes; its result is paid.
    a1 = s.request(s.n1)
    t = nip90.parse_request(a1).submitted_ms
    s.feedback(s.n1, a1, FeedbackStatus.PROCESSING)
    s.feedback(s.n1, a1, FeedbackStatus.ERROR, ErrorCode.EXEC_ERROR)
    a2 = s.request(s.n2, retry_of=a1, attempt=2)
    s.feedback(s.n2, a2, FeedbackStatus.PROCESSING)
    a_res = s.result(s.n2, a2, started=t + 40, finished=t + 90, amount=2500)
    # A second result, published 50 ms later: the first valid one has already won.
    dup = s.result(s.n2, a2, started=t + 40, finished=t + 95)
    s.events[-1] = sign_event(
        s.n2,
        kinds.JOB_RESULT,
        dup.content,
        [["published", str(int(v) + 50)] if k == "published" else [k, v, *rest] for k, v, *rest in dup.tags],
    )
    proof = {"id": "009a1f293253e41e", "amount": 2, "secret": "s", "C": "02" + "11" * 32}
    zap = nip61.build_nutzap(
        s.buyer,
        job_id=a2.id,
        result_id=a_res.id,
        node=s.n2.pubkey,
        mint="http://mint",
        amount_msats=3000,
        proofs=[proof, dict(proof, secret="t")],
    )
    s.events.append(zap)
    # B: a non-retryable error fails the job at once.
    b1 = s.request(s.n1)
    s.feedback(s.n1, b1, FeedbackStatus.ERROR, ErrorCode.BAD_INPUT)
    # C: three attempts, three errors: exhausted.
    c1 = s.request(s.n1)
    s.feedback(s.n1, c1, FeedbackStatus.ERROR, ErrorCode.EXEC_ERROR)
    c2 = s.request(s.n2, retry_of=c1, attempt=2)
    s.feedback(s.n2, c2, FeedbackStatus.ERROR, ErrorCode.TIMEOUT)
    c3 = s.request(s.n3, retry_of=c1, attempt=3)
    s.feedback(s.n3, c3, FeedbackStatus.ERROR, ErrorCode.MODEL_MISSING)
    # D: picked up, never answered. E: answered by a node it was not assigned to.
    d1 = s.request(s.n1)
    s.feedback(s.n1, d1, FeedbackStatus.PROCESSING)
    e1 = s.request(s.n1)
    s.result(s.n3, e1, started=t, finished=t)
    # A re-issue of a job the relay never saw: nothing to attach it to.
    s.events.append(
        nip90.build_request(
            s.buyer,
            path="m.py",
            language="python",
            text=TEXT,
            sha256=SHA,
            size=len(TEXT),
            node=s.n1.pubkey,
            run_id=None,
            retry_of="ab" * 32,
        )
    )

    async with open_pool(relay_url) as pool:
        for ev in s.events:
            assert await pool.publish(ev, wait_ok=10)

    r = await replay([relay_url], buyer=s.buyer.pubkey)
    rows = {j.job_id: j for j in r.jobs}
    assert set(rows) == {a1.id, b1.id, c1.id, d1.id, e1.id}

    a = rows[a1.id]
    assert (a.state, a.attempts, a.provider_pubkey, a.result_id) == (
        JobState.COMPLETED,
        2,
        s.n2.pubkey,
        a_res.id,
    )
    submitted = nip90.parse_request(a1).submitted_ms
    published = nip90.parse_result(a_res).timing.published_ms
    assert a.submitted == submitted / 1000
    assert a.end_to_end == round((published - submitted) / 1000, 4)
    assert (a.exec_time, a.queue_wait) == (0.05, 0.04)
    assert a.is_paid and a.payment_event_id == zap.id and a.amount_msats == 3000

    b = rows[b1.id]
    assert (b.state, b.error, b.attempts, b.provider_pubkey) == (
        JobState.FAILED,
        ErrorCode.BAD_INPUT,
        1,
        s.n1.pubkey,
    )
    c = rows[c1.id]
    assert (c.state, c.error, c.attempts, c.provider_pubkey) == (
        JobState.FAILED,
        ErrorCode.MODEL_MISSING,
        3,
        s.n3.pubkey,
    )
    assert rows[d1.id].state == JobState.PROCESSING and rows[e1.id].state == JobState.ASSIGNED
    assert r.dropped["result_from_unassigned"] == 1 and r.dropped["orphan_attempt"] == 1

    g = r.global_stats()
    assert (g.jobs_total, g.jobs_completed, g.jobs_failed, g.success_rate) == (5, 1, 2, round(1 / 3, 4))
    assert [(p.pubkey, p.completed) for p in g.top_providers] == [(s.n2.pubkey, 1)]

    # n1 is charged with the first attempts of A and C (exec_error) besides B, failed for good.
    r1 = await replay([relay_url], buyer=s.buyer.pubkey, provider=s.n1.pubkey)
    p1 = r1.provider_stats(s.n1.pubkey)
    assert (p1.completed, p1.failed) == (0, 3) and p1.failure_reasons == {"bad_input": 1, "exec_error": 2}
    r2 = await replay([relay_url], buyer=s.buyer.pubkey, provider=s.n2.pubkey)
    p2 = r2.provider_stats(s.n2.pubkey)
    assert (p2.completed, p2.failed, p2.earned_msats) == (1, 1, 3000) and p2.failure_reasons == {"timeout": 1}

    # Once the live buyer's timeouts would have run out, the silent jobs count as failed.
    later = await replay([relay_url], buyer=s.buyer.pubkey, now=time.time() + 600)
    late = {j.job_id: j for j in later.jobs}
    assert (late[d1.id].state, late[d1.id].error) == (JobState.FAILED, ErrorCode.TIMEOUT)
    assert (late[e1.id].state, late[e1.id].error) == (JobState.FAILED, ErrorCode.PROVIDER_OFFLINE)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_reader_gets_every_event_of_a_crowded_second(relay_url: str, anyio_backend: str) -> None:
    """1200 requests stamped with one second: the relay answers 500 per query, time paging cannot
    step past the second, so the reader splits the query (by assigned node) until it has all."""
    buyer = NostrKeys.generate()
    nodes = [NostrKeys.generate().pubkey for _ in range(4)]
    second = int(time.time()) - 5
    events = [
        sign_event(
            buyer,
            kinds.JOB_REQUEST,
            "",
            [["param", "path", f"f{i}.py"], ["p", nodes[i % 4]]],
            created_at=second,
        )
        for i in range(1200)
    ]
    async with open_pool(relay_url) as pool:
        for ev in events:
            await pool.publish(ev)
        with anyio.fail_after(30):
            while pool.pending():
                await anyio.sleep(0.05)
        crowded = Filter(kinds=[kinds.JOB_REQUEST], authors=[buyer.pubkey])
        assert len(await pool.query([crowded])) == 500  # what a plain paged query gets
    async with RawReader([relay_url]) as reader:
        got = await reader.query([crowded], split=lambda f: [f.replace(p=nodes)])
        assert {e.id for e in got} == {e.id for e in events} and reader.truncated == 0
        await reader.query([crowded])  # nothing to split by: it says so rather than pretend
        assert reader.truncated == 1
