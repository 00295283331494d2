"""`pylon buyer up`: the buyer daemon in the foreground, with its coordinator and payer."""

from __future__ import annotations

import click

from pylon.cli.daemon_run import mint_url, run_daemon
from pylon.cli.group import cli, relay_option
from pylon.daemon.config import BuyerConfig
from pylon.logs import configure_logging

_DEFAULT = BuyerConfig()  # the defaults the flags show and use


@cli.group()
def buyer() -> None:
    """The buyer daemon."""


@buyer.command("up")
@relay_option
@click.option("--pickup-timeout", type=float, default=_DEFAULT.pickup_timeout_s, show_default=True)
@click.option("--result-timeout", type=float, default=_DEFAULT.result_timeout_s, show_default=True)
@click.option(
    "--heartbeat",
    "heartbeat_s",
    type=float,
    default=_DEFAULT.heartbeat_s,
    show_default=True,
    help="the heartbeat interval nodes use (online = 3 intervals)",
)
@click.option("--bid", "bid_msats", type=int, default=_DEFAULT.bid_msats, show_default=True)
@click.option(
    "--mint",
    "mint_url",
    default=None,
    callback=lambda c, p, v: mint_url(v),
    help="Cashu mint URL to pay from",
)
@click.option(
    "--pay",
    "pay_policy",
    type=click.Choice(["auto", "manual"]),
    default=_DEFAULT.pay_policy,
    show_default=True,
)
@click.option(
    "--refund-locktime",
    "refund_locktime_s",
    type=click.IntRange(1, 30 * 86400),
    default=_DEFAULT.refund_locktime_s,
    show_default=True,
    help="seconds until an unredeemed payment may be refunded (pylon refund)",
)
@click.option("--max-outstanding", type=int, default=_DEFAULT.max_outstanding, show_default=True)
@click.option("--allow-node", "allow_nodes", multiple=True, help="use only these node pubkeys (repeatable)")
@click.option(
    "--pow",
    "pow_bits",
    type=click.IntRange(0, 24),
    default=_DEFAULT.pow_bits,
    show_default=True,
    help="mine NIP-13 proof of work (leading zero bits) into each request, for nodes with --min-pow",
)
@click.option(
    "--spot-check",
    "spot_check",
    type=click.FloatRange(0, 1),
    default=_DEFAULT.spot_check,
    show_default=True,
    help="share of deterministic results computed again on a second node (0 = off); "
    "each node's first result in a run is always checked",
)
@click.option(
    "--distrust-after",
    type=click.IntRange(1),
    default=_DEFAULT.distrust_after,
    show_default=True,
    help="failed spot checks after which a node is distrusted",
)
@click.option(
    "--distrusted",
    type=click.Choice(["exclude", "unpaid"]),
    default=_DEFAULT.distrusted,
    show_default=True,
    help="what a distrusted node gets: no more jobs, or jobs without payment",
)
def buyer_up(
    relays: tuple[str, ...],
    pickup_timeout: float,
    result_timeout: float,
    heartbeat_s: float,
    bid_msats: int,
    mint_url: str | None,
    pay_policy: str,
    max_outstanding: int,
    allow_nodes: tuple[str, ...],
    pow_bits: int,
    refund_locktime_s: int,
    spot_check: float,
    distrust_after: int,
    distrusted: str,
) -> None:
    """Run the buyer daemon in the foreground until SIGTERM."""
    from pylon.daemon.buyer import run_buyer
    from pylon.daemon.config import default_relays

    configure_logging()
    cfg = BuyerConfig(
        relays=list(relays) or default_relays(),
        pickup_timeout_s=pickup_timeout,
        result_timeout_s=result_timeout,
        heartbeat_s=heartbeat_s,
        bid_msats=bid_msats,
        mint_url=mint_url,
        pay_policy=pay_policy,
        max_outstanding=max_outstanding,
        allow_nodes=list(allow_nodes),
        pow_bits=pow_bits,
        refund_locktime_s=refund_locktime_s,
        spot_check=spot_check,
        distrust_after=distrust_after,
        distrusted=distrusted,
    )
    run_daemon(lambda: run_buyer(cfg, extra=_buyer_attachments(cfg)), "buyer")


def _buyer_attachments(cfg: object) -> list:
    """What attaches to the buyer: the map coordinator, spot checks, `pylon ask`, the payer."""
    from pylon.daemon.ask_coordinator import attach_ask
    from pylon.daemon.buyer.coordinator import attach_coordinator
    from pylon.daemon.buyer.payments import attach_payments
    from pylon.daemon.buyer.spot_checks import attach_spot_checks

    return [attach_coordinator, attach_spot_checks, attach_ask, attach_payments]
