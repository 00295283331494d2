"""A typed client for the buyer daemon: one method per request, each returning its reply Struct.

Modelled on msgspec's asyncio key-value example: the request Struct goes out, the reply is
decoded into the type `pylon.schemas.rpc.BUYER_REPLIES` names for it (the same table the
buyer's route table answers from), so a caller never picks through plain dicts.

    async with await BuyerClient.connect(buyer_socket()) as buyer:
        status = await buyer.status()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from pylon.rpc.client import RpcClient
from pylon.schemas import rpc
from pylon.schemas.ask import AskList, AskSummary


class BuyerClient:
    def __init__(self, client: RpcClient) -> None:
        self.rpc = client

    @classmethod
    async def connect(cls, path: Path, *, timeout: float = 5.0, client: str = "cli") -> BuyerClient:
        return cls(await RpcClient.connect(path, timeout=timeout, client=client))

    async def aclose(self) -> None:
        await self.rpc.aclose()

    async def __aenter__(self) -> BuyerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(
        self, req: rpc.Request, reply: Any = None, *, timeout: float | None = 30, **kw: Any
    ) -> Any:
        raw = await self.rpc.call(req, timeout=timeout, **kw)
        return msgspec.convert(raw, reply or rpc.BUYER_REPLIES[type(req)])

    # --- the scheduler and the swarm -------------------------------------------------------

    async def status(self) -> rpc.BuyerStatus:
        return await self._call(rpc.StatusReq())

    async def submit(
        self, path: str, text: str, *, language: str | None = None, run_id: str | None = None
    ) -> rpc.SubmitResult:
        return await self._call(rpc.SubmitReq(path=path, text=text, language=language, run_id=run_id))

    async def submit_many(
        self, items: list[rpc.SubmitItem], *, run_id: str | None = None
    ) -> rpc.SubmitManyResult:
        return await self._call(rpc.SubmitManyReq(items=items, run_id=run_id), timeout=None)

    async def job_status(self, job_id: str) -> rpc.JobTelemetry:
        return await self._call(rpc.JobStatusReq(job_id=job_id))

    async def job_results(self, job_id: str) -> rpc.FileResult:
        return await self._call(rpc.JobResultsReq(job_id=job_id))

    async def job_list(self, *, run_id: str | None = None, limit: int = 10_000) -> rpc.JobList:
        return await self._call(rpc.JobListReq(run_id=run_id, limit=limit))

    async def nodes(self) -> rpc.NodeList:
        return await self._call(rpc.NodesReq())

    async def stats(self, provider: str | None = None) -> rpc.GlobalStats | rpc.ProviderStats:
        reply = rpc.ProviderStats if provider else rpc.GlobalStats
        return await self._call(rpc.StatsReq(provider=provider), reply)

    async def cancel(self, *, job_id: str | None = None, run_id: str | None = None) -> rpc.CancelResult:
        return await self._call(rpc.CancelReq(job_id=job_id, run_id=run_id))

    async def stop_all(self) -> rpc.StopAllResult:
        return await self._call(rpc.StopAllReq())

    async def ban(self, pubkey: str, *, banned: bool = True) -> rpc.BanResult:
        return await self._call(rpc.BanReq(pubkey=pubkey, banned=banned))

    async def trail(self, job_id: str) -> rpc.Trail:
        return await self._call(rpc.TrailReq(job_id=job_id))

    # --- repo maps -------------------------------------------------------------------------

    async def runs(self) -> rpc.RunList:
        return await self._call(rpc.RunsReq())

    async def map(self, repo: str, *, out_dir: str | None = None, on_progress: Any = None) -> rpc.MapSummary:
        return await self._call(rpc.MapReq(repo=repo, out_dir=out_dir), timeout=None, on_progress=on_progress)

    async def ask(self, req: rpc.AskReq, *, on_progress: Any = None) -> AskSummary:
        return await self._call(req, timeout=None, on_progress=on_progress)

    async def asks(self) -> AskList:
        return await self._call(rpc.AsksReq())

    # --- payments (a buyer started with --mint) --------------------------------------------

    async def pay(self, job_id: str) -> rpc.PayResult:
        return await self._call(rpc.PayReq(job_id=job_id), timeout=120)

    async def refund(self, job_id: str) -> rpc.RefundResult:
        return await self._call(rpc.RefundReq(job_id=job_id), timeout=120)

    async def receipts(self, *, job_id: str | None = None, provider: str | None = None) -> rpc.ReceiptList:
        return await self._call(rpc.ReceiptsReq(job_id=job_id, provider=provider))

    async def wallet_balance(self) -> rpc.WalletBalance:
        return await self._call(rpc.WalletBalanceReq())

    async def wallet_fund(self, amount_sats: int) -> rpc.WalletBalance:
        return await self._call(rpc.WalletFundReq(amount_sats=amount_sats), timeout=120)
