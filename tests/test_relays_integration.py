"""Issue 9 on real processes: a map run on a third-party relay (nostr-relay 1.14 from PyPI,
4 KiB content limit), on the embedded relay with NIP-42 auth required, over two relays with
one killed mid-run (paid), and beside relays that misbehave (garbage, a lying NIP-11, no OK,
CLOSED for every subscription): every file completes, and each bad relay is named."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import websockets
from fake_relay import FakeRelay
from pylon.schemas import kinds, rpc
from test_map_integration import CORPUS, git
from third_party_relay import NostrRelayProcess

from pylon.executors.languages import detect_language
from pylon.localmarket.launcher import LocalMarket, pylon_argv
from pylon.nostr.filters import Filter
from pylon.nostr.relay_client import RelayPool

pytestmark = pytest.mark.integration

FILES = 16


def small_repo(root: Path, n: int = FILES) -> int:
    """A git repo of `n` real files from the corpus, the biggest first: their results are far
    over 4 KiB, so they must be split into parts on a 4 KiB relay."""
    files = sorted(
        (p for p in CORPUS.rglob("*") if p.is_file() and detect_language(p.name) is not None),
        key=lambda p: -p.stat().st_size,
    )[:n]
    for p in files:
        dest = root / p.relative_to(CORPUS)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "corpus")
    return len(files)


def run_map(market: LocalMarket, repo: Path, out: Path, timeout: float = 300) -> dict[str, Any]:
    res = market.cli("map", str(repo), "--out", str(out), "--json", timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    # What failed and why, for the assertion message.
    summary["failed_files"] = json.loads((out / "repo_map.json").read_text()).get("failed", {})
    return summary


def assert_all_mapped(summary: dict[str, Any], n: int) -> None:
    assert summary["files"] == n, summary
    assert summary["completed"] == n and summary["failed"] == 0, summary["failed_files"]


def logs(market: LocalMarket) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (market.home / "logs").glob("*.log"))


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, int]:
    root = tmp_path / "repo"
    return root, small_repo(root)


def test_a_map_on_a_third_party_relay_with_a_4k_content_limit(tmp_path: Path, repo: tuple[Path, int]) -> None:
    root, n = repo
    with NostrRelayProcess(tmp_path / "nostr-relay", max_event_size=4096) as relay:
        market = LocalMarket(home=tmp_path / "home", nodes=3, external_relays=[relay.url])
        try:
            market.start(timeout=90)
            summary = run_map(market, root, tmp_path / "out")
            assert_all_mapped(summary, n)
            # Learned from its refusals (it publishes no limits), not assumed.
            assert "relay_limit_learned" in logs(market)
        finally:
            market.stop()


def test_b_a_map_with_auth_required_on_the_embedded_relay(tmp_path: Path, repo: tuple[Path, int]) -> None:
    # nostr-relay 1.14 can authenticate but not *require* it of unknown keys (an authenticated
    # key it has no role for is treated as anonymous), so (b) runs on our relay with --auth.
    root, n = repo
    market = LocalMarket(home=tmp_path / "home", nodes=3, memory_relay=True, relay_args=["--auth"])
    try:
        market.start(timeout=90)

        async def unauthenticated_read() -> str:
            async with websockets.connect(market.relay_url) as ws:
                await ws.send(json.dumps(["REQ", "x", {"kinds": [kinds.JOB_REQUEST], "limit": 1}]))
                while True:
                    msg = json.loads(await asyncio_wait(ws))
                    if msg[0] in ("CLOSED", "EOSE"):
                        return " ".join(str(x) for x in msg)

        assert "auth-required" in anyio.run(unauthenticated_read)
        summary = run_map(market, root, tmp_path / "out")
        assert_all_mapped(summary, n)
        # And the trail, on its own key, reads through auth with no --relay (config.toml).
        job = market.call("buyer", rpc.JobListReq())["jobs"][0]["job_id"]
        trail = market.cli("trail", job, "--json")
        assert trail.returncode == 0, trail.stderr
    finally:
        market.stop()


async def asyncio_wait(ws: Any) -> Any:
    with anyio.fail_after(20):
        return await ws.recv()


def test_c_two_relays_one_killed_mid_run_every_job_once_and_paid(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    n = small_repo(root, 24)
    market = LocalMarket(home=tmp_path / "home", nodes=3, relays=2, with_mint=True, memory_relay=True)
    market.node_args = ["--price", "1000"]
    market.buyer_args = ["--bid", "1000"]
    try:
        market.start(timeout=90)
        market.fund()
        out = tmp_path / "out"
        proc = subprocess.Popen(
            pylon_argv("map", str(root), "--out", str(out), "--json"),
            env=market.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            jobs = market.call("buyer", rpc.JobListReq())["jobs"]
            if sum(j["state"] == "completed" for j in jobs) >= 3:
                break
            time.sleep(0.1)
        market.kill("relay2", signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        assert_all_mapped(json.loads(stdout), n)
        paid, completed = market.wait_paid(timeout=120)
        assert paid == completed >= n

        async def results() -> list[Any]:
            pool = RelayPool([market.relay_url])
            async with anyio.create_task_group() as tg:
                await pool.start(tg)
                got = await pool.query([Filter(kinds=[kinds.JOB_RESULT])], timeout=30)
                tg.cancel_scope.cancel()
            return got

        # One result per request (spot checks and re-issues are requests of their own).
        per_request: dict[str, int] = {}
        for ev in anyio.run(results):
            ref = next((t[1] for t in ev.tags if t[0] == "e" and len(t) < 4), "")
            per_request[ref] = per_request.get(ref, 0) + 1
        assert len(per_request) >= n and max(per_request.values()) == 1, per_request
        # The trail merges what the relays hold, from config.toml (no --relay), one relay dead.
        job_id = market.call("buyer", rpc.JobListReq())["jobs"][0]["job_id"]
        trail = market.cli("trail", job_id, "--json")
        assert trail.returncode == 0, trail.stderr
    finally:
        market.stop()


@pytest.fixture
def bad_relays() -> Iterator[dict[str, FakeRelay]]:
    liar_doc = json.dumps({"software": "liar", "limitation": {"max_content_length": 1_000_000}}).encode()
    relays = {
        "garbage": FakeRelay(garbage=True),
        "nip11_lied": FakeRelay(max_content=4096, nip11=liar_doc),
        "no_ok": FakeRelay(never_ok=True),
        "closed_subscription": FakeRelay(close_subs=True),
    }
    for r in relays.values():
        r.__enter__()
    try:
        yield relays
    finally:
        for r in relays.values():
            r.stop()


def test_bad_relays_are_named_and_the_market_keeps_serving(
    tmp_path: Path, repo: tuple[Path, int], bad_relays: dict[str, FakeRelay]
) -> None:
    root, n = repo
    market = LocalMarket(
        home=tmp_path / "home", nodes=3, memory_relay=True, also_relays=[r.url for r in bad_relays.values()]
    )
    try:
        market.start(timeout=90)
        summary = run_map(market, root, tmp_path / "out")
        assert_all_mapped(summary, n)
        text = logs(market)
        for what, relay in bad_relays.items():
            assert any(f"relay_{what}" in line and relay.url in line for line in text.splitlines()), (
                f"{what} relay {relay.url} not named in the logs"
            )
        doctor = market.cli("doctor", "--no-ollama", "--json", "--timeout", "2")
        checks = {c["name"]: c for c in json.loads(doctor.stdout)}
        assert checks[f"relay {market.relay_url}"]["ok"], checks
        for relay in bad_relays.values():
            assert not checks[f"relay {relay.url}"]["ok"], checks[f"relay {relay.url}"]
    finally:
        market.stop()


def test_a_result_no_relay_takes_is_a_named_failure_at_once(tmp_path: Path) -> None:
    # A relay whose limit is below anything worth fitting to: the node says so (error feedback
    # with the relay's reason), and the buyer fails the job as too_large on the first attempt
    # instead of re-issuing it until the timeout.
    from test_loop_integration import wait_all_terminal

    src = max((p for p in CORPUS.rglob("*.py") if p.stat().st_size < 30_000), key=lambda p: p.stat().st_size)
    with FakeRelay(max_content=600, too_large_message="error: event too large") as relay:
        market = LocalMarket(home=tmp_path / "home", nodes=1, external_relays=[relay.url])
        try:
            market.start(timeout=90)
            out = market.cli("job", "submit", "repo-file", "--input", str(src), "--json")
            assert out.returncode == 0, out.stderr
            job_id = json.loads(out.stdout)["job_id"]
            wait_all_terminal(market, [job_id], timeout=60)
            tele = market.call("buyer", rpc.JobStatusReq(job_id=job_id))
            assert tele["state"] == "failed" and tele["error"] == "too_large", tele
            assert tele["attempts"] == 1, tele  # not re-issued: the same result would not fit either
            assert "result_unpublishable" in logs(market) and "error: event too large" in logs(market)
        finally:
            market.stop()
