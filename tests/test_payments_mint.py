"""The mint runner: a mint that goes down, comes back with its ledger, and stops on SIGTERM."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pylon.payments import (
    MintConfig,
    MintStartError,
    PaymentError,
    PylonWallet,
    running_mint,
    start_mint,
    stop_mint,
    wait_mint_ready,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def keysets(url: str) -> list[str]:
    async with httpx.AsyncClient(trust_env=False) as c:
        return [k["id"] for k in (await c.get(url + "/v1/keysets")).json()["keysets"]]


async def test_mint_down_then_restarted_keeps_every_balance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYLON_HOME", str(tmp_path))
    cfg = MintConfig(port=free_port(), data_dir=tmp_path / "mint", log_level="WARNING")
    log_file = open(tmp_path / "mint.log", "wb")
    proc = start_mint(cfg, log_file=log_file)
    buyer = node = None
    try:
        await wait_mint_ready(cfg.url, 60, alive=lambda: proc.poll() is None)
        ids_before = await keysets(cfg.url)
        buyer = await PylonWallet.open(tmp_path / "buyer", cfg.url, "buyer")
        node = await PylonWallet.open(tmp_path / "node", cfg.url, "node")
        await buyer.fund(40)
        zap = await buyer.send_locked(15, node.p2pk_pubkey())

        stop_mint(proc)
        for call in (
            lambda: node.redeem(zap),
            lambda: buyer.send_locked(5, node.p2pk_pubkey()),
            lambda: buyer.fund(5),
        ):
            with pytest.raises(PaymentError) as exc:
                await call()
            assert exc.value.code == "mint_unreachable"
        assert (buyer.balance(), buyer.outstanding_sats(), node.balance()) == (25, 15, 0)

        proc = start_mint(cfg, log_file=log_file)
        await wait_mint_ready(cfg.url, 60, alive=lambda: proc.poll() is None)
        assert await keysets(cfg.url) == ids_before  # same seed, same keys: old proofs still good
        assert await node.redeem(zap) == 15  # the mint remembers these were never spent
        assert await node.redeem(await buyer.send_locked(25, node.p2pk_pubkey())) == 25
        assert (buyer.balance(), node.balance()) == (0, 40)
    finally:
        for w in (buyer, node):
            if w is not None:
                await w.aclose()
        stop_mint(proc)
        log_file.close()


async def test_wallet_opens_while_its_mint_is_down(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with await PylonWallet.open(tmp_path / "w", dead, "node") as w:
        assert len(w.p2pk_pubkey()) == 66  # a node can announce before its mint is up
        assert w.balance() == 0
        with pytest.raises(PaymentError) as exc:
            await w.fund(1)
        assert exc.value.code == "mint_unreachable"


async def test_wait_mint_ready_is_bounded(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await wait_mint_ready(dead, 0.5)
    assert time.monotonic() - t0 < 5
    with pytest.raises(MintStartError):
        await wait_mint_ready(dead, 30, alive=lambda: False)


async def test_start_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        cfg = MintConfig(port=s.getsockname()[1], data_dir=tmp_path / "mint")
        with pytest.raises(MintStartError, match="cannot listen"):
            async with running_mint(cfg):
                pass


def test_foreground_mint_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """What `pylon mint up` runs: ready callback, then SIGTERM -> exit 0 and the port is free."""
    port = free_port()
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from pylon.logs import configure_logging\n"
        "from pylon.payments import MintConfig, run_mint_foreground\n"
        "configure_logging(json=True)\n"
        "cfg = MintConfig(port=int(sys.argv[1]), data_dir=Path(sys.argv[2]), log_level='WARNING')\n"
        "rc = run_mint_foreground(cfg, on_ready=lambda url: print(json.dumps({'url': url}), flush=True))\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYLON_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(port), str(tmp_path / "mint")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "the mint never said it was ready"
        line = proc.stdout.readline()
        assert json.loads(line) == {"url": f"http://127.0.0.1:{port}"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/info", trust_env=False).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with socket.socket() as s:  # the mint child went with it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
