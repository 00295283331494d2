"""The buyer's RPC route table: each request type to one handler that returns its typed reply.

The reply types are `pylon.schemas.rpc.BUYER_REPLIES`, the same table the client
(`pylon.rpc.buyer_client`) decodes with. The core answers the scheduler's and the swarm's
requests; the coordinator and the payer add their own routes when they attach.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pylon.daemon.buyer.scheduler import Scheduler, SubmitError, UnknownJob
from pylon.daemon.rpc_server import CallContext, RpcFailure
from pylon.schemas import rpc

from pylon.logs import get_logger

if TYPE_CHECKING:
    from pylon.daemon.buyer.daemon import BuyerDaemon

log = get_logger("pylon.buyer")

R = TypeVar("R", bound=rpc.Req)
Handler = Callable[[Any, CallContext], Awaitable[Any]]


class Routes:
    def __init__(self) -> None:
        self._table: dict[type, Handler] = {}

    def add(self, req_type: type[R], handler: Callable[[R, CallContext], Awaitable[Any]]) -> None:
        if req_type not in rpc.BUYER_REPLIES:
            raise ValueError(f"{req_type.__name__} has no reply type in rpc.BUYER_REPLIES")
        self._table[req_type] = handler

    def handles(self, req_type: type) -> bool:
        return req_type in self._table

    async def __call__(self, req: rpc.Request, ctx: CallContext) -> Any:
        handler = self._table.get(type(req))
        if handler is None:
            raise RpcFailure("unknown_method", f"the buyer does not answer {type(req).__name__}")
        try:
            return await handler(req, ctx)
        except UnknownJob as exc:
            raise RpcFailure("not_found", str(exc)) from exc


def add_core_routes(routes: Routes, buyer: BuyerDaemon) -> None:
    """The scheduler's, the registry's and the provenance trail's requests."""

    def sched() -> Scheduler:  # exists once the daemon runs; routes are added before
        return buyer.scheduler

    async def status(req: rpc.StatusReq, ctx: CallContext) -> rpc.BuyerStatus:
        return buyer.status()

    async def submit(req: rpc.SubmitReq, ctx: CallContext) -> rpc.SubmitResult:
        try:
            job = await sched().submit(req.path, req.text, language=req.language, run_id=req.run_id)
        except SubmitError as exc:
            raise RpcFailure(exc.code.value, exc.message) from exc
        return rpc.SubmitResult(job_id=job.tele.job_id)

    async def submit_many(req: rpc.SubmitManyReq, ctx: CallContext) -> rpc.SubmitManyResult:
        ids: list[str | None] = []
        errors: list[rpc.SubmitError] = []
        for i, item in enumerate(req.items):
            try:
                job = await sched().submit(item.path, item.text, language=item.language, run_id=req.run_id)
                ids.append(job.tele.job_id)
            except SubmitError as exc:
                ids.append(None)
                errors.append(rpc.SubmitError(index=i, code=exc.code.value, message=exc.message))
        return rpc.SubmitManyResult(job_ids=ids, errors=errors)

    async def job_status(req: rpc.JobStatusReq, ctx: CallContext) -> rpc.JobTelemetry:
        return await sched().telemetry(req.job_id)

    async def job_results(req: rpc.JobResultsReq, ctx: CallContext) -> rpc.FileResult:
        return await sched().result(req.job_id)

    async def job_list(req: rpc.JobListReq, ctx: CallContext) -> rpc.JobList:
        return await buyer.list_jobs(req.run_id, req.limit)

    async def nodes(req: rpc.NodesReq, ctx: CallContext) -> rpc.NodeList:
        return rpc.NodeList(nodes=buyer.registry.info())

    async def stats(req: rpc.StatsReq, ctx: CallContext) -> rpc.GlobalStats | rpc.ProviderStats:
        return await buyer.stats(req.provider)

    async def cancel(req: rpc.CancelReq, ctx: CallContext) -> rpc.CancelResult:
        if not req.job_id and not req.run_id:
            raise RpcFailure("bad_input", "name a job_id or a run_id to cancel")
        n = sched().cancel(req.job_id, req.run_id)
        if n == 0:
            raise RpcFailure("not_found", "nothing outstanding matches")
        return rpc.CancelResult(cancelled=n)

    async def stop_all(req: rpc.StopAllReq, ctx: CallContext) -> rpc.StopAllResult:
        return rpc.StopAllResult(cancelled=buyer.stop_all(), stopped=True)

    async def ban(req: rpc.BanReq, ctx: CallContext) -> rpc.BanResult:
        buyer.registry.entry(req.pubkey).banned = req.banned
        log.warning("provider_banned" if req.banned else "provider_unbanned", pubkey=req.pubkey)
        return rpc.BanResult(pubkey=req.pubkey, banned=req.banned)

    async def trail(req: rpc.TrailReq, ctx: CallContext) -> rpc.Trail:
        from pylon.provenance.trail import build_trail

        return await build_trail(buyer.pool, req.job_id)

    routes.add(rpc.StatusReq, status)
    routes.add(rpc.SubmitReq, submit)
    routes.add(rpc.SubmitManyReq, submit_many)
    routes.add(rpc.JobStatusReq, job_status)
    routes.add(rpc.JobResultsReq, job_results)
    routes.add(rpc.JobListReq, job_list)
    routes.add(rpc.NodesReq, nodes)
    routes.add(rpc.StatsReq, stats)
    routes.add(rpc.CancelReq, cancel)
    routes.add(rpc.StopAllReq, stop_all)
    routes.add(rpc.BanReq, ban)
    routes.add(rpc.TrailReq, trail)
