"""Cashu testnet payments: the mint runner, per-owner wallets, P2PK-locked nutzaps, refunds.

Mint (`pylon mint up`, `pylon up`, tests)::

    run_mint_foreground(MintConfig(port=P), on_ready=print_json)  # blocks until SIGTERM -> exit code
    async with running_mint(MintConfig(port=P)) as url: ...       # a child mint for a block
    proc = start_mint(cfg, log_file=f); await wait_mint_ready(cfg.url, 60, alive=...); stop_mint(proc)

Wallets (one per owner; node: node_dir(name) / "wallet", buyer: buyer_dir() / "wallet")::

    w = await PylonWallet.open(data_dir, mint_url, "node")
    w.p2pk_pubkey()                     # -> kind 10019 `pubkey`
    await w.fund(1000)                  # testnet top-up -> new balance
    proofs = await w.send_locked(sats_for_msats(price_msats), node_key, locktime_s=3600)
    await node_wallet.redeem(proofs)    # -> sats received; PaymentError(code) on refusal
    await w.refund(proofs)              # after the locktime, by the refund key holder
    await w.sweep_outstanding()         # buyer: settle/refund what it has sent
    inspect_proofs(proofs)              # amount, keysets, lock, locktime: no mint call

Nothing here imports nutshell until a wallet is opened (see _nutshell.py for why that import
is handled with care).
"""

from pylon.payments.amounts import MSATS_PER_SAT, covers, msats_for_sats, sats_for_msats
from pylon.payments.errors import PaymentError
from pylon.payments.mint import (
    MintConfig,
    MintStartError,
    mint_command,
    run_mint_foreground,
    running_mint,
    serve_mint,
    start_mint,
    stop_mint,
    wait_mint_ready,
)
from pylon.payments.proofs import inspect_proofs, normalize_p2pk_pubkey, p2pk_keys_match
from pylon.payments.wallet import PylonWallet
from pylon.schemas.payments import PaymentErrorCode, ProofInfo, SweepResult

__all__ = [
    "MSATS_PER_SAT",
    "MintConfig",
    "MintStartError",
    "PaymentError",
    "PaymentErrorCode",
    "ProofInfo",
    "PylonWallet",
    "SweepResult",
    "covers",
    "inspect_proofs",
    "mint_command",
    "msats_for_sats",
    "normalize_p2pk_pubkey",
    "p2pk_keys_match",
    "run_mint_foreground",
    "running_mint",
    "sats_for_msats",
    "serve_mint",
    "start_mint",
    "stop_mint",
    "wait_mint_ready",
]
