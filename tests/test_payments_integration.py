"""Payments end to end on real parts: `pylon mint up` (nutshell, FakeWallet), a relay, node
processes and the buyer daemon, driven through the CLI a person would use.

- a 12-file map run paid job by job (auto policy): every node's wallet grows by exactly what it
  was paid, the buyer's shrinks by the same, each payment has the node's receipt; then a job
  for a `--payment-required` node is paid up front by itself;
- manual policy: `pylon pay` pays once and refuses a second time, an unknown job and a job
  with no verified result;
- payment up front (a `--payment-required` node) whose node dies: the lock holds until its
  locktime, then `pylon refund` brings the money back; a node hands a payment back by hand
  (`pylon node refund`) and the buyer takes it in.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from pylon.schemas import rpc

from pylon.localmarket.launcher import LocalMarket, pylon_argv
from pylon.rpc.client import RpcError

pytestmark = pytest.mark.integration

PRICE_MSATS = 2000
PRICE_SATS = 2
LOCK_S = 6  # the manual market's refund locktime
ROOT = Path(__file__).resolve().parent.parent


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy, within a bound."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def make_repo(base: Path, n: int = 12) -> Path:
    """A small real git repository: n of Pylon's own source files."""
    sources = sorted((ROOT / "pylon" / "nostr").glob("*.py")) + sorted(
        (ROOT / "pylon" / "payments").glob("*.py")
    )
    sources = [p for p in sources if p.stat().st_size > 200][:n]
    assert len(sources) == n
    repo = base / "repo"
    for i, src in enumerate(sources):
        dst = repo / ("pkg_a" if i % 2 else "pkg_b") / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "twelve files"], check=True)
    return repo


def cli_json(m: LocalMarket, *args: str) -> Any:
    out = m.cli(*args, "--json")
    assert out.returncode == 0, f"pylon {' '.join(args)} failed: {out.stderr}"
    return json.loads(out.stdout)


def balance(m: LocalMarket, target: str) -> int:
    return int(m.call(target, rpc.WalletBalanceReq())["balance_sats"])


def start_payment_required_node(m: LocalMarket, name: str) -> None:
    m._spawn(
        f"node-{name}",
        pylon_argv(
            "node",
            "up",
            "--name",
            name,
            "--relay",
            m.relay_url,
            "--heartbeat",
            str(m.heartbeat_s),
            "--price",
            str(PRICE_MSATS),
            "--payment-required",
            "--mint",
            str(m.mint_url),
        ),
    )


def only_node_online(m: LocalMarket, name: str) -> bool:
    nodes = m.call("buyer", rpc.NodesReq())["nodes"]
    return [n["name"] for n in nodes if n["online"] and n["state"] == "online"] == [name]


@pytest.fixture
def paid_market(tmp_path: Path) -> Iterator[LocalMarket]:
    m = LocalMarket(
        home=tmp_path / "home",
        nodes=3,
        with_mint=True,
        memory_relay=True,
        node_args=["--price", str(PRICE_MSATS)],
        buyer_args=["--bid", str(PRICE_MSATS)],
    )
    try:
        m.start(timeout=90)
        yield m
    finally:
        m.stop()


def test_map_run_is_paid_job_by_job(paid_market: LocalMarket, tmp_path: Path) -> None:
    m = paid_market
    repo = make_repo(tmp_path)
    assert cli_json(m, "wallet", "fund", "1000")["balance_sats"] == 1000
    nodes = m.node_names()
    before = {n: cli_json(m, "wallet", "balance", "--node", n)["balance_sats"] for n in nodes}
    pubkeys = {m.call(n, rpc.StatusReq())["pubkey"]: n for n in nodes}

    start_payment_required_node(m, "p0")  # it boots while the map runs; used at the end
    summary = cli_json(m, "map", str(repo), "--out", str(tmp_path / "out"))
    assert summary["files"] == 12 and summary["completed"] == 12 and summary["failed"] == 0

    run_jobs = lambda: m.call("buyer", rpc.JobListReq(run_id=summary["run_id"]))["jobs"]  # noqa: E731
    jobs = wait_for(lambda: (js := run_jobs()) and all(j["paid"] for j in js) and js, 60, "every job paid")
    assert len(jobs) == 12 and all(j["state"] == "completed" for j in jobs)
    receipts = wait_for(
        lambda: (r := m.call("buyer", rpc.ReceiptsReq())["receipts"]) and len(r) >= 12 and r,
        60,
        "12 receipts",
    )
    assert len(receipts) == 12

    per_node = Counter(pubkeys[j["provider_pubkey"]] for j in jobs)
    assert sum(per_node.values()) == 12
    for n in nodes:
        # each node's wallet grew by exactly what it was paid: its price per job it ran
        assert balance(m, n) - before[n] == PRICE_SATS * per_node[n], n
        assert m.call(n, rpc.StatusReq())["earned_msats"] == PRICE_MSATS * per_node[n]
    assert balance(m, "buyer") == 1000 - 12 * PRICE_SATS

    by_payment = {r["payment_id"]: r for r in receipts}
    for j in jobs:
        t = m.call("buyer", rpc.JobStatusReq(job_id=j["job_id"]))
        assert t["is_paid"] and t["amount_msats"] == PRICE_MSATS
        assert t["paid"] >= t["received"]  # paid only after the result verified
        r = by_payment[t["payment_event_id"]]  # the receipt answers exactly this payment
        assert r["job_id"] == t["job_id"] and r["provider"] == t["provider_pubkey"]
        assert r["amount_msats"] == PRICE_MSATS

    # paying a job the auto policy already paid is refused, and nothing moves
    again = m.cli("pay", "--job_id", jobs[0]["job_id"], "--json")
    assert again.returncode != 0 and "already paid" in again.stderr
    assert again.stdout == ""
    assert balance(m, "buyer") == 1000 - 12 * PRICE_SATS

    one = cli_json(m, "receipts", "--job", jobs[0]["job_id"])["receipts"]
    assert [r["job_id"] for r in one] == [jobs[0]["job_id"]]
    # the same receipts are on the relay, readable without the daemon
    provider = jobs[0]["provider_pubkey"]
    from_relay = cli_json(m, "receipts", "--provider", provider, "--from-relay", "--relay", m.relay_url)
    assert len(from_relay["receipts"]) == per_node[pubkeys[provider]]

    # a node that wants its money first: the auto policy pays up front, the node redeems, then runs it
    for n in nodes:
        m.call(n, rpc.PauseReq())
    wait_for(lambda: only_node_online(m, "p0"), 90, "p0 the only node taking work")
    job = m.call("buyer", rpc.SubmitReq(path="p.py", text="def p():\n    return 0\n"))["job_id"]
    t = wait_for(
        lambda: (
            (t := m.call("buyer", rpc.JobStatusReq(job_id=job)))["state"] == "completed"
            and t["is_paid"]
            and t
        ),
        60,
        "the prepaid job done",
    )
    assert t["amount_msats"] == PRICE_MSATS and t["paid"] <= t["received"]  # paid before its result
    assert balance(m, "p0") == PRICE_SATS
    assert balance(m, "buyer") == 1000 - 13 * PRICE_SATS

    anyio.run(batched_send_adds_up, tmp_path / "wallets", str(m.mint_url))


async def batched_send_adds_up(base: Path, mint_url: str) -> None:
    """PylonWallet.send_locked_many (the auto payer's one swap for many payments) on the same mint:
    one proof set per payment, each locked to its own node, redeemable by that node alone."""
    from pylon.payments import PaymentError, PylonWallet, inspect_proofs

    buyer = await PylonWallet.open(base / "b", mint_url, "buyer")
    nodes = [await PylonWallet.open(base / f"n{i}", mint_url, f"n{i}") for i in range(2)]
    try:
        await buyer.fund(100)
        wanted = [(2, nodes[i % 2].p2pk_pubkey()) for i in range(9)] + [(7, nodes[0].p2pk_pubkey())]
        sets = await buyer.send_locked_many(wanted, locktime_s=3600)
        assert [inspect_proofs(ps).amount_sats for ps in sets] == [a for a, _ in wanted]
        assert [inspect_proofs(ps).lock_pubkey for ps in sets] == [k for _, k in wanted]
        assert buyer.balance() == 100 - 25 and buyer.outstanding_sats() == 25
        with pytest.raises(PaymentError, match="wrong_lock"):
            await nodes[1].redeem(sets[0])  # n0's payment
        for (_, key), ps in zip(wanted, sets, strict=True):
            await nodes[0 if key == nodes[0].p2pk_pubkey() else 1].redeem(ps)
        assert (nodes[0].balance(), nodes[1].balance()) == (5 * 2 + 7, 4 * 2)
        with pytest.raises(PaymentError, match="insufficient_funds"):
            await buyer.send_locked_many([(50, nodes[0].p2pk_pubkey())] * 2)
        assert buyer.balance() == 75
    finally:
        for w in (buyer, *nodes):
            await w.aclose()


def test_manual_pay_once_then_refund_after_the_lock(tmp_path: Path) -> None:
    m = LocalMarket(
        home=tmp_path / "home",
        nodes=1,
        with_mint=True,
        memory_relay=True,
        node_args=["--price", str(PRICE_MSATS)],
        buyer_args=[
            "--bid",
            str(PRICE_MSATS),
            "--pay",
            "manual",
            "--pickup-timeout",
            "30",
            "--refund-locktime",
            str(LOCK_S),
        ],
    )
    try:
        m.start(timeout=90)
        assert m.fund("buyer", 100) == 100

        # --- manual: one verified job, paid once by hand ---
        job = m.call("buyer", rpc.SubmitReq(path="a.py", text="def a():\n    return 1\n"))["job_id"]
        wait_for(
            lambda: m.call("buyer", rpc.JobStatusReq(job_id=job))["state"] == "completed", 60, "job done"
        )
        assert (
            m.call("buyer", rpc.JobStatusReq(job_id=job))["is_paid"] is False
        )  # manual waits for `pylon pay`
        assert balance(m, "buyer") == 100

        paid = cli_json(m, "pay", "--job_id", job)
        assert set(paid) == {"job_id", "payment_event_id", "amount_msats"}
        assert paid["job_id"] == job and paid["amount_msats"] == PRICE_MSATS
        twice = m.cli("pay", "--job_id", job, "--json")
        assert twice.returncode != 0 and "already paid" in twice.stderr and twice.stdout == ""
        unknown = m.cli("pay", "--job_id", "ab" * 32, "--json")
        assert unknown.returncode != 0 and "unknown job" in unknown.stderr
        wait_for(lambda: balance(m, "n0") == PRICE_SATS, 60, "n0 redeemed its payment")
        assert balance(m, "buyer") == 100 - PRICE_SATS
        wait_for(lambda: m.call("buyer", rpc.ReceiptsReq(job_id=job))["receipts"], 60, "the receipt")

        # --- the node hands the payment back by hand; the buyer redeems it ---
        back = cli_json(m, "node", "refund", "n0", "--job_id", job)
        assert back["amount_msats"] == PRICE_MSATS and back["refund_event_id"]
        wait_for(lambda: balance(m, "buyer") == 100, 60, "the buyer took the refund in")
        assert balance(m, "n0") == 0
        assert m.call("buyer", rpc.JobStatusReq(job_id=job))["is_paid"] is False
        assert m.call("n0", rpc.StatusReq())["earned_msats"] == 0
        again = m.cli("node", "refund", "n0", "--job_id", job, "--json")
        assert again.returncode != 0 and "no redeemed payment" in again.stderr

        # --- payment up front to a node that dies before redeeming: refund after the lock ---
        start_payment_required_node(m, "p0")
        m.call("n0", rpc.PauseReq())
        wait_for(lambda: only_node_online(m, "p0"), 90, "p0 the only node taking work")
        held = m.call("buyer", rpc.SubmitReq(path="b.py", text="def b():\n    return 2\n"))["job_id"]
        cancelled = m.call("buyer", rpc.SubmitReq(path="c.py", text="def c():\n    return 3\n"))["job_id"]
        wait_for(
            lambda: (
                {
                    j["job_id"]
                    for j in m.call("p0", rpc.NodeJobsReq())["jobs"]
                    if j["state"] == "payment_required"
                }
                >= {held, cancelled}
            ),
            60,
            "p0 holds both for payment",
        )
        m.call("buyer", rpc.CancelReq(job_id=cancelled))
        refused = m.cli("pay", "--job_id", cancelled, "--json")  # no verified result: never paid
        assert refused.returncode != 0 and "no verified result" in refused.stderr

        m.kill("node-p0", signal.SIGKILL)
        # over RPC, not the CLI: the lock runs from here, and process start-up must not eat it
        prepaid = m.call("buyer", rpc.PayReq(job_id=held))
        assert prepaid["amount_msats"] == PRICE_MSATS
        assert balance(m, "buyer") == 100 - PRICE_SATS
        with pytest.raises(RpcError, match="locked"):  # the lock still holds (over RPC: no CLI start-up)
            m.call("buyer", rpc.RefundReq(job_id=held))

        def try_refund() -> dict | None:
            out = m.cli("refund", "--job_id", held, "--json")
            return json.loads(out.stdout) if out.returncode == 0 else None

        refunded = wait_for(try_refund, LOCK_S + 20, "the lock to expire")
        assert refunded["refunded_sats"] == PRICE_SATS
        assert balance(m, "buyer") == 100  # n0 gave its payment back, and the lock gave this one back
        assert m.call("buyer", rpc.JobStatusReq(job_id=held))["is_paid"] is False
    finally:
        m.stop()
