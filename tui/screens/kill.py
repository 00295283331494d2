"""Sending a kill switch: the confirm dialog, the call, and what the operator is told."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pylon.schemas import rpc
from pylon.tui.model import BuyerModel
from pylon.tui.screens.confirm import ConfirmScreen
from textual.screen import Screen

from pylon.rpc.client import RpcError

if TYPE_CHECKING:
    from pylon.tui.app import PylonApp


def send_control(
    screen: Screen[Any],
    req: rpc.Request,
    *,
    confirm: tuple[str, str] | None = None,
    done: Callable[[Any], str] | None = None,
    after: Callable[[Any], Awaitable[None] | None] | None = None,
) -> None:
    """Send a control request to the daemon, behind a confirm dialog when `confirm` = (title, detail)."""
    app: PylonApp = screen.app  # type: ignore[assignment]
    if app.read_only:
        screen.notify("read-only: kill switches are off", severity="warning")
        return
    op = type(req).__name__.removesuffix("Req").lower()

    async def send() -> None:
        try:
            result = await app.link.call(req)
        except RpcError as exc:
            screen.notify(f"{op} failed: {exc.message}", severity="error", timeout=6, markup=False)
            return
        if done is not None:
            screen.notify(done(result), markup=False)  # names and paths from the daemon: plain text
        if after is not None:
            out = after(result)
            if out is not None:
                await out
        app.flush_now()

    def answered(yes: bool | None) -> None:
        if yes:
            screen.run_worker(send(), group="kill")

    if confirm is None:
        screen.run_worker(send(), group="kill")
    else:
        app.push_screen(ConfirmScreen(*confirm), answered)


def ban_provider(screen: Screen[Any], model: BuyerModel, pubkey: str) -> None:
    """Ban (or unban, if banned) a provider: the buyer assigns a banned one no new jobs."""
    banned = not model.nodes.get(pubkey, {}).get("banned", False)
    name = model.node_name(pubkey)

    def note(result: dict[str, Any]) -> str:
        if pubkey in model.nodes:  # show it now rather than at the next push
            model.nodes[pubkey] = {**model.nodes[pubkey], "banned": result.get("banned", banned)}
            model.node_changes.keys.add(pubkey)
        return f"{name} {'banned' if banned else 'unbanned'}"

    detail = f"{pubkey}\n" + (
        "The buyer assigns it no new jobs." if banned else "The buyer may assign it jobs again."
    )
    send_control(
        screen,
        rpc.BanReq(pubkey=pubkey, banned=banned),
        confirm=(f"{'Ban' if banned else 'Unban'} provider {name}?", detail),
        done=note,
    )
