"""The market loop end to end on real parts: relay, three node processes, a buyer daemon,
jobs submitted through the CLI, results verified and checked against universal-ctags."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import msgspec
import pytest
from ctags_oracle import ctags_definitions, have_universal_ctags, recall
from pylon.schemas import kinds, rpc

from pylon.localmarket.launcher import LocalMarket
from pylon.nostr.event import verify_event
from pylon.nostr.filters import Filter

pytestmark = pytest.mark.integration


def real_python_files(n: int) -> list[Path]:
    """Real code nobody here wrote: the standard library, including a few files too big for one event."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if 2_000 < p.stat().st_size < 400_000)
    big = [p for p in files if p.stat().st_size > 60_000][:3]
    small = [p for p in files if p.stat().st_size <= 60_000]
    step = max(1, len(small) // (n - len(big)))
    return big + small[::step][: n - len(big)]


@pytest.fixture
def market(tmp_path: Path):
    m = LocalMarket(home=tmp_path / "home", nodes=3, memory_relay=False)
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


def wait_all_terminal(m: LocalMarket, job_ids: list[str], timeout: float = 120) -> dict[str, dict]:
    import time

    deadline = time.monotonic() + timeout
    states: dict[str, dict] = {}
    while time.monotonic() < deadline:
        listing = m.call("buyer", rpc.JobListReq())
        states = {j["job_id"]: j for j in listing["jobs"] if j["job_id"] in job_ids}
        if len(states) == len(job_ids) and all(
            j["state"] in ("completed", "failed", "cancelled") for j in states.values()
        ):
            return states
        time.sleep(0.2)
    raise TimeoutError(f"jobs not finished: {[s['state'] for s in states.values()]}")


def test_thirty_files_through_the_cli(market: LocalMarket) -> None:
    files = real_python_files(30)
    assert len(files) == 30
    job_ids = []
    for f in files:
        out = market.cli("job", "submit", "repo-file", "--input", str(f), "--json")
        assert out.returncode == 0, out.stderr
        job_ids.append(json.loads(out.stdout)["job_id"])

    states = wait_all_terminal(market, job_ids)
    assert all(s["state"] == "completed" for s in states.values()), states
    providers = {s["provider_pubkey"] for s in states.values()}
    assert len(providers) >= 2, "work should spread over at least two nodes"

    # Every provider is a node that announced itself, and each result is signed by it.
    nodes = market.call("buyer", rpc.NodesReq())["nodes"]
    announced = {n["pubkey"] for n in nodes if n["executors"]}
    assert providers <= announced

    import anyio

    from pylon.nostr.relay_client import RelayPool

    telemetry = {jid: market.call("buyer", rpc.JobStatusReq(job_id=jid)) for jid in job_ids}

    async def fetch_results() -> list:
        pool = RelayPool([market.relay_url])
        async with anyio.create_task_group() as tg:
            await pool.start(tg)
            ids = [t["result_id"] for t in telemetry.values()]
            evs = await pool.query([Filter(ids=ids, kinds=[kinds.JOB_RESULT])], timeout=20)
            tg.cancel_scope.cancel()
        return evs

    results = {ev.id: ev for ev in anyio.run(fetch_results)}
    for jid, t in telemetry.items():
        ev = results[t["result_id"]]
        verify_event(ev)
        assert ev.pubkey == t["provider_pubkey"] == states[jid]["provider_pubkey"]

    # Symbols match what universal-ctags finds.
    if not have_universal_ctags():
        pytest.skip("universal-ctags is not installed")
    matched = total = 0
    for f, jid in zip(files, job_ids, strict=True):
        out = market.cli("job", "results", jid, "--json")
        assert out.returncode == 0, out.stderr
        payload = json.loads(out.stdout)
        assert payload["path"] == str(f)
        got = {(s["name"], s["line"]) for s in payload["symbols"]}
        m, t = recall(ctags_definitions(f), got)
        matched += m
        total += t
    assert total > 300
    assert matched / total >= 0.9, f"recall {matched}/{total}"

    # Telemetry and stats add up.
    st = json.loads(market.cli("stats", "--json").stdout)
    assert st["jobs_completed"] >= 30 and st["online_nodes"] == 3
    assert st["p50_e2e_s"] is not None and st["p95_e2e_s"] >= st["p50_e2e_s"]
    status = json.loads(market.cli("job", "status", job_ids[0], "--json").stdout)
    assert status["state"] == "completed" and status["end_to_end"] is not None
    msgspec.convert(status, rpc.JobTelemetry)
