"""The headline fault test: a 100-file map run over six nodes during which two nodes are killed
with SIGKILL and the LMDB relay is killed and restarted on its port.

Every file completes; no job has two accepted results; no job is paid twice (one 9321 nutzap
per job on the relay, one payments row, and the buyer's wallet down by exactly one price per
job); and the killed nodes' lost work is attributed to them in the attempts table.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest
from faults_support import (
    SUPERSEDED,
    BackgroundCli,
    accepted_results_per_job,
    attempts,
    db_rows,
    jobs,
    make_repo,
    node_pubkey,
    payments_per_job,
    relay_query,
    wait_for,
)
from pylon.schemas import kinds, rpc

from pylon.localmarket.launcher import LocalMarket
from pylon.nostr.filters import Filter

pytestmark = pytest.mark.integration

FILES = 100
PRICE_MSATS = 2000
FUND_SATS = 1000


def payments_wired() -> bool:
    try:
        import pylon.daemon.buyer.payments
        import pylon.daemon.node_payments  # noqa: F401
    except ImportError:
        return False
    return True


def test_map_survives_node_kills_and_relay_restart(tmp_path: Path) -> None:
    paid = payments_wired()
    m = LocalMarket(
        home=tmp_path / "home",
        nodes=6,
        memory_relay=False,
        heartbeat_s=1.0,
        with_mint=paid,
        node_args=["--price", str(PRICE_MSATS)] if paid else [],
        buyer_args=[
            "--pickup-timeout",
            "3",
            "--result-timeout",
            "8",
            *(["--bid", str(PRICE_MSATS)] if paid else []),
            # Payments and results are counted per file here; spot checks have their own tests.
            "--spot-check",
            "0",
        ],
    )
    try:
        m.start(timeout=90)
        if paid:
            out = m.cli("wallet", "fund", str(FUND_SATS), "--json")
            assert out.returncode == 0 and json.loads(out.stdout)["balance_sats"] == FUND_SATS, out.stderr
        repo = make_repo(tmp_path / "repo", FILES)
        victims = {node_pubkey(m, "n0"): "n0", node_pubkey(m, "n1"): "n1"}

        bg = BackgroundCli(m, "map", str(repo), "--json", "--out", str(tmp_path / "out"))
        # Kill as soon as the run has handed the victims work, so some of it dies with them.
        wait_for(
            "work assigned to a victim",
            lambda: any(j["provider_pubkey"] in victims for j in jobs(m)),
            60,
            0.02,
        )
        m.kill("node-n0", signal.SIGKILL)
        m.kill("node-n1", signal.SIGKILL)
        m.kill("relay", signal.SIGKILL)
        m.start_relay()

        assert bg.wait(110) == 0, bg.err[-3000:]
        summary = json.loads(bg.out)
        run_jobs = jobs(m, summary["run_id"])
        assert summary["files"] == FILES and summary["completed"] == FILES and summary["failed"] == 0, (
            Counter((j["state"], j["error"]) for j in run_jobs),
            Counter((o, e) for _, _, _, o, e in attempts(m)),
        )
        assert len(run_jobs) == FILES and {j["state"] for j in run_jobs} == {"completed"}
        repo_map = json.loads((tmp_path / "out" / "repo_map.json").read_text())
        assert len(repo_map["files"]) == FILES

        # One accepted result per job, and it is on the relay that was restarted.
        per_job = accepted_results_per_job(m)
        assert set(per_job) == {j["job_id"] for j in run_jobs} and set(per_job.values()) == {1}
        result_ids = {r["result_id"] for r in repo_map["files"].values()}
        assert len(result_ids) == FILES
        on_relay = relay_query(m.relay_url, [Filter(ids=sorted(result_ids), kinds=[kinds.JOB_RESULT])])
        assert {e.id for e in on_relay} == result_ids

        # The killed nodes' lost attempts are on the record, with why.
        atts = attempts(m)
        lost = [
            (victims[node], error)
            for _, _, node, outcome, error in atts
            if node in victims and outcome != "completed" and error != SUPERSEDED
        ]
        assert lost, "the victims held no work when they died; the test proves nothing"
        assert {e for _, e in lost} <= {"provider_offline", "timeout"}, Counter(lost)
        assert all(o is not None for _, _, _, o, _ in atts), "an attempt was left open"
        for pk in victims:
            st = json.loads(m.cli("stats", "--provider", pk, "--json").stdout)
            assert sum(st["failure_reasons"].get(r, 0) for r in ("provider_offline", "timeout")) == sum(
                1
                for _, _, node, outcome, error in atts
                if node == pk and outcome != "completed" and error != SUPERSEDED
            )

        # No double payment, however the churn fell.
        nutzaps = payments_per_job(m)
        assert not [j for j, n in nutzaps.items() if n > 1]
        if paid:
            paid_jobs, completed = m.wait_paid(90) if hasattr(m, "wait_paid") else (None, None)
            rows = db_rows(
                m.home / "buyer" / "telemetry.db", "SELECT job_id, count(*) FROM payments GROUP BY job_id"
            )
            assert all(n == 1 for _, n in rows)
            if paid_jobs is not None:
                assert paid_jobs == completed == FILES
                assert set(nutzaps) == {j["job_id"] for j in run_jobs}
                balance = m.call("buyer", rpc.WalletBalanceReq(), timeout=30)["balance_sats"]
                assert balance == FUND_SATS - FILES * PRICE_MSATS // 1000
    finally:
        m.stop()
