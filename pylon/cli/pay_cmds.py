"""Testnet money: `pylon mint up`, `pylon wallet`, `pylon pay`, `pylon refund`, `pylon receipts`
(`pylon node refund` is with the node's commands). Everything but the mint and `receipts
--from-relay` goes through a daemon."""

from __future__ import annotations

import os

import anyio
import click

from pylon.cli import resolve
from pylon.cli.group import cli, json_option, relay_option
from pylon.cli.output import emit_json, fail, short, stderr, stdout
from pylon.cli.rpc_call import call
from pylon.defaults import MINT_PORT
from pylon.home import buyer_socket, mint_dir, node_socket
from pylon.logs import configure_logging
from pylon.schemas import rpc


def _socket(node_name: str | None):
    return node_socket(node_name) if node_name else buyer_socket()


# --- the mint -------------------------------------------------------------------------------


@cli.group()
def mint() -> None:
    """The testnet Cashu mint (nutshell, FakeWallet backend: ecash that is worth nothing)."""


@mint.command("up")
@click.option("--port", type=int, default=MINT_PORT, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--verbose", is_flag=True, help="the mint logs every request")
@json_option
def mint_up(port: int, host: str, verbose: bool, as_json: bool) -> None:
    """Run the mint (data under PYLON_HOME/mint) until SIGTERM; prints its URL once it answers."""
    from pylon.payments import MintConfig, MintStartError, run_mint_foreground

    configure_logging()
    level = "INFO" if verbose or os.environ.get("PYLON_LOG_LEVEL", "").lower() == "debug" else "WARNING"
    cfg = MintConfig(port=port, host=host, data_dir=mint_dir(), log_level=level)

    def ready(url: str) -> None:
        if as_json:
            emit_json({"mint": url, "data_dir": str(cfg.data_dir)})
        else:
            stderr.print(f"[green]mint up[/] at {url} (FakeWallet testnet; data in {cfg.data_dir})")

    try:
        rc = run_mint_foreground(cfg, on_ready=ready)
    except MintStartError as exc:
        fail(f"mint: {exc}")
    except KeyboardInterrupt:
        rc = 0
    if rc:
        fail(f"the mint exited with code {rc}", code=rc if 0 < rc < 256 else 1)


# --- wallets --------------------------------------------------------------------------------


@cli.group()
def wallet() -> None:
    """The buyer's wallet, or a node's with --node NAME (testnet ecash)."""


@wallet.command("balance")
@click.option("--node", "node_name", default=None, help="a node's wallet instead of the buyer's")
@json_option
def wallet_balance(node_name: str | None, as_json: bool) -> None:
    """Spendable sats in the wallet."""
    res = call(_socket(node_name), rpc.WalletBalanceReq())
    if as_json:
        emit_json(res)
    else:
        stdout.print(f"{node_name or 'buyer'}: [bold]{res['balance_sats']}[/] sats at {res['mint']}")


@wallet.command("fund")
@click.argument("amount", type=int)
@click.option("--node", "node_name", default=None, help="fund a node's wallet instead of the buyer's")
@json_option
def wallet_fund(amount: int, node_name: str | None, as_json: bool) -> None:
    """Mint AMOUNT sats of testnet ecash into the wallet (the FakeWallet mint pays its own invoice)."""
    if amount <= 0:
        fail(f"bad_input: AMOUNT must be a positive number of sats, not {amount}")
    res = call(_socket(node_name), rpc.WalletFundReq(amount_sats=amount), timeout=60)
    if as_json:
        emit_json(res)
    else:
        stdout.print(
            f"{node_name or 'buyer'}: funded {amount} sats; balance [bold]{res['balance_sats']}[/] sats"
        )


# --- paying ---------------------------------------------------------------------------------


@cli.command("pay")
@click.option("--job_id", "--job-id", "job_id", required=True, help="a completed job with a verified result")
@json_option
def pay(job_id: str, as_json: bool) -> None:
    """Pay a verified job's node (once; paying again is refused)."""
    job_id = resolve.job_id(job_id)
    res = call(buyer_socket(), rpc.PayReq(job_id=job_id), timeout=60)
    if as_json:
        emit_json(
            {
                "job_id": res["job_id"],
                "payment_event_id": res["payment_event_id"],
                "amount_msats": res["amount_msats"],
            }
        )
    else:
        stdout.print(
            f"paid {res['amount_msats']} msats for {short(job_id)}: nutzap {res['payment_event_id']}"
        )


@cli.command("refund")
@click.option("--job_id", "--job-id", "job_id", required=True)
@json_option
def refund(job_id: str, as_json: bool) -> None:
    """Take back a payment whose lock expired with no valid result (NUT-11 refund path)."""
    job_id = resolve.job_id(job_id)
    res = call(buyer_socket(), rpc.RefundReq(job_id=job_id), timeout=60)
    if as_json:
        emit_json(res)
    else:
        stdout.print(
            f"refunded {res['refunded_sats']} sats for {short(job_id)}; balance {res['balance_sats']} sats"
        )


@cli.command("receipts")
@click.option("--job", "job_id", default=None, help="receipts for this job")
@click.option("--provider", default=None, help="receipts from this node pubkey")
@click.option(
    "--from-relay", is_flag=True, help="read kind 7376 from the relay instead of the buyer's database"
)
@relay_option
@json_option
def receipts(
    job_id: str | None, provider: str | None, from_relay: bool, relays: tuple[str, ...], as_json: bool
) -> None:
    """The nodes' redemption receipts (kind 7376) for our payments."""
    if from_relay:
        from pylon.daemon.config import default_relays

        if not job_id and not provider:
            fail("bad_input: name --job or --provider to read receipts from the relay")
        try:
            res = anyio.run(_relay_receipts, list(relays) or default_relays(), job_id, provider)
        except (OSError, TimeoutError) as exc:
            fail(f"relay: {exc}")
    else:
        res = call(
            buyer_socket(),
            rpc.ReceiptsReq(
                job_id=resolve.job_id(job_id) if job_id else None,
                provider=resolve.provider(provider) if provider else None,
            ),
        )
    if as_json:
        emit_json(res)
        return
    if not res["receipts"]:
        stderr.print("no receipts")
    for r in res["receipts"]:
        stdout.print(
            f"{short(r['job_id'])}  {r['amount_msats']:>8} msats  node {short(r['provider'])}  "
            f"receipt {short(r['receipt_id'])}"
        )


async def _relay_receipts(relays: list[str], job_id: str | None, provider: str | None) -> dict:
    from pylon.nostr.event import InvalidEvent
    from pylon.nostr.filters import Filter
    from pylon.nostr.nip60 import parse_redemption
    from pylon.nostr.relay_client import RelayPool
    from pylon.schemas import kinds

    pool = RelayPool(relays)
    out = []
    async with anyio.create_task_group() as tg:
        await pool.start(tg, wait_s=10)
        if not pool.is_connected():
            tg.cancel_scope.cancel()
            raise TimeoutError(f"no relay answered: {', '.join(relays)}")
        flt = Filter(
            kinds=[kinds.REDEMPTION], e=[job_id] if job_id else None, authors=[provider] if provider else None
        )
        for ev in await pool.query([flt], timeout=15):
            try:
                red = parse_redemption(ev)
            except InvalidEvent:
                continue
            out.append(
                {
                    "receipt_id": ev.id,
                    "job_id": red.job_id,
                    "payment_id": red.payment_id,
                    "provider": ev.pubkey,
                    "amount_msats": red.amount_sats * 1000,
                    "created_at": ev.created_at,
                }
            )
        tg.cancel_scope.cancel()
    return {"receipts": out}
