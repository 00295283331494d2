"""A real nutshell mint (FakeWallet backend) on a free loopback port, for a test module."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import anyio

from pylon.localmarket.launcher import free_port
from pylon.payments import MintConfig, start_mint, stop_mint, wait_mint_ready


@contextlib.contextmanager
def mint_in(base: Path, ready_s: float = 60) -> Iterator[MintConfig]:
    """A mint whose ledger is under `base/mint` and log is `base/mint.log`, ready, for the block."""
    cfg = MintConfig(port=free_port(), data_dir=base / "mint", log_level="WARNING")
    with open(base / "mint.log", "wb") as log_file:
        proc = start_mint(cfg, log_file=log_file)
        try:
            anyio.run(lambda: wait_mint_ready(cfg.url, ready_s, alive=lambda: proc.poll() is None))
            yield cfg
        finally:
            stop_mint(proc)
