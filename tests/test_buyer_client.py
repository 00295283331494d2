"""The buyer's RPC surface as a table: every request it answers has a route, a typed reply and a
client method, and a real buyer daemon answers each through `BuyerClient` with that reply type."""

from __future__ import annotations

import inspect
from pathlib import Path

import anyio
import pytest
from pylon.daemon.ask_coordinator import attach_ask
from pylon.daemon.buyer.coordinator import attach_coordinator
from pylon.daemon.buyer.daemon import BuyerDaemon
from pylon.daemon.buyer.payments import attach_payments
from pylon.daemon.config import BuyerConfig
from pylon.schemas import rpc

from pylon.localmarket.launcher import LocalMarket
from pylon.rpc.buyer_client import BuyerClient
from pylon.rpc.client import RpcError

CLIENT_METHOD = {
    rpc.StatusReq: "status",
    rpc.SubmitReq: "submit",
    rpc.SubmitManyReq: "submit_many",
    rpc.JobStatusReq: "job_status",
    rpc.JobResultsReq: "job_results",
    rpc.JobListReq: "job_list",
    rpc.NodesReq: "nodes",
    rpc.StatsReq: "stats",
    rpc.CancelReq: "cancel",
    rpc.StopAllReq: "stop_all",
    rpc.BanReq: "ban",
    rpc.TrailReq: "trail",
    rpc.RunsReq: "runs",
    rpc.MapReq: "map",
    rpc.AskReq: "ask",
    rpc.AsksReq: "asks",
    rpc.PayReq: "pay",
    rpc.RefundReq: "refund",
    rpc.ReceiptsReq: "receipts",
    rpc.WalletBalanceReq: "wallet_balance",
    rpc.WalletFundReq: "wallet_fund",
}


def test_every_reply_type_has_a_route_and_a_client_method(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PYLON_HOME", str(tmp_path))
    buyer = BuyerDaemon(BuyerConfig(mint_url="http://127.0.0.1:1"))
    attach_coordinator(buyer)
    attach_payments(buyer)
    attach_ask(buyer)
    assert set(CLIENT_METHOD) == set(rpc.BUYER_REPLIES)
    for req_type, method in CLIENT_METHOD.items():
        assert buyer.routes.handles(req_type), req_type.__name__
        assert inspect.iscoroutinefunction(getattr(BuyerClient, method)), method


def test_a_buyer_without_mint_or_coordinator_refuses_their_requests(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PYLON_HOME", str(tmp_path))
    buyer = BuyerDaemon(BuyerConfig())
    assert buyer.routes.handles(rpc.StatusReq)
    assert not buyer.routes.handles(rpc.PayReq)
    assert not buyer.routes.handles(rpc.MapReq)


@pytest.mark.integration
def test_a_real_buyer_answers_each_client_method_typed(tmp_path: Path) -> None:
    with LocalMarket(home=tmp_path / "home", nodes=1) as m:
        m.start(timeout=60)

        async def go() -> None:
            async with await BuyerClient.connect(m.socket_of("buyer")) as buyer:
                status = await buyer.status()
                assert isinstance(status, rpc.BuyerStatus) and status.online_nodes == 1
                sub = await buyer.submit("a.py", "def f():\n    return 1\n")
                assert isinstance(sub, rpc.SubmitResult)
                many = await buyer.submit_many([rpc.SubmitItem(path="b.py", text="x = 1\n")])
                assert many.job_ids[0] and not many.errors
                with anyio.fail_after(60):
                    while (await buyer.job_status(sub.job_id)).state.value != "completed":
                        await anyio.sleep(0.1)
                result = await buyer.job_results(sub.job_id)
                assert isinstance(result, rpc.FileResult)
                assert [s.name for s in result.symbols] == ["f"]
                listing = await buyer.job_list()
                assert sub.job_id in {j.job_id for j in listing.jobs}
                nodes = await buyer.nodes()
                assert len(nodes.nodes) == 1 and isinstance(nodes.nodes[0], rpc.NodeInfo)
                overall = await buyer.stats()
                assert isinstance(overall, rpc.GlobalStats) and overall.jobs_completed >= 1
                per_node = await buyer.stats(nodes.nodes[0].pubkey)
                assert isinstance(per_node, rpc.ProviderStats)
                runs = await buyer.runs()
                assert isinstance(runs, rpc.RunList)
                asks = await buyer.asks()
                assert asks.asks == []
                ban = await buyer.ban("ab" * 32, banned=False)
                assert ban == rpc.BanResult(pubkey="ab" * 32, banned=False)
                with pytest.raises(RpcError) as exc:
                    await buyer.cancel(job_id=sub.job_id)  # done already: nothing outstanding
                assert exc.value.code == "not_found"
                with pytest.raises(RpcError) as exc:
                    await buyer.receipts()  # no --mint: the payer never attached
                assert exc.value.code == "unknown_method"

        anyio.run(go)
