"""Daemon settings: command-line flags over environment over defaults.

The defaults live here once (where to listen: `pylon.defaults`); the CLI's flags show and use
these (`pylon node up --help`).
"""

from __future__ import annotations

import os

import msgspec

from pylon.defaults import (
    DEFAULT_MODEL,
    DEFAULT_OLLAMA_HOST,
    DEFAULT_RELAY,
    DEFAULT_SLOTS,
    default_mint,
    default_relays,
)

__all__ = ["DEFAULT_RELAY", "BuyerConfig", "NodeConfig", "default_mint", "default_relays"]


class NodeConfig(msgspec.Struct, kw_only=True):
    name: str = "node"
    relays: list[str] = msgspec.field(default_factory=default_relays)
    executor: str = "deterministic"  # deterministic | ollama
    ollama_host: str = msgspec.field(
        default_factory=lambda: os.environ.get("OLLAMA_HOST", DEFAULT_OLLAMA_HOST)
    )
    model: str = msgspec.field(default_factory=lambda: os.environ.get("PYLON_MODEL", DEFAULT_MODEL))
    max_concurrency: int = DEFAULT_SLOTS
    queue_size: int = 4096
    heartbeat_s: float = 10.0
    price_msats: int = 0
    # Requests not p-tagged to anyone, first come first served. Off: a node then subscribes to
    # its own requests only, and the relay does not push it every request of the market.
    accept_untargeted: bool = False
    exec_timeout_s: float = 60.0
    # The deterministic executor's own per-file limit (parse + queries), inside exec_timeout_s.
    parse_timeout_s: float = 5.0
    mint_url: str | None = None
    payment_required: bool = False  # ask for payment up front (NUT-11 lock with a refund path)
    allow_buyers: list[str] = []  # empty = serve anyone
    rate_per_s: float = 100.0  # per-buyer token bucket (on by default); 0 = unlimited
    rate_burst: int = 2000
    min_pow: int = 0  # NIP-13 bits a request needs; fewer are dropped and counted (pow_too_low)


class BuyerConfig(msgspec.Struct, kw_only=True):
    name: str = "buyer"
    relays: list[str] = msgspec.field(default_factory=default_relays)
    pickup_timeout_s: float = 10.0
    result_timeout_s: float = 60.0
    max_attempts: int = 3
    bid_msats: int = 0
    max_outstanding: int = 100_000
    allow_nodes: list[str] = []  # empty = use any node
    heartbeat_s: float = 10.0  # the interval nodes are expected to use; online = 3 intervals
    mint_url: str | None = None
    pay_policy: str = "auto"  # auto | manual
    refund_locktime_s: int = 3600  # after this, an unredeemed payment may be refunded to us
    pow_bits: int = 0  # NIP-13 proof of work mined into every request (match the nodes' --min-pow)
    spot_check: float = 0.05  # share of deterministic results computed again on another node
    distrust_after: int = 2  # failed spot checks after which a node is distrusted
    distrusted: str = "exclude"  # exclude: no more jobs | unpaid: jobs, but no more payments
