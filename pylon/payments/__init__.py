"""Cashu testnet payments: the mint runner, per-owner wallets, P2PK-locked nutzaps, refunds.

    from pylon.payments import MintConfig, PylonWallet, PaymentError, inspect_proofs

Nothing here imports nutshell until a wallet is opened (see _nutshell.py for why that import
is handled with care).
"""

from pylon.payments.amounts import MSATS_PER_SAT, covers, msats_for_sats, sats_for_msats
from pylon.payments.errors import PaymentError
from pylon.payments.mint import (
    DEFAULT_MINT_PORT,
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
    "DEFAULT_MINT_PORT",
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
