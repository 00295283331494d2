"""PylonWallet against a real nutshell mint (FakeWallet backend) in a subprocess on loopback.

One mint serves the whole module; every test opens fresh wallets under its own tmp_path, so
balances start at zero and every figure below is exact.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from mint_support import mint_in

from pylon.payments import (
    PaymentError,
    PylonWallet,
    inspect_proofs,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def mint_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("mint")
    with mint_in(base) as cfg:
        yield cfg.url


@pytest.fixture
async def wallets(
    tmp_path: Path, mint_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[PylonWallet, PylonWallet]]:
    monkeypatch.setenv("PYLON_HOME", str(tmp_path))
    buyer = await PylonWallet.open(tmp_path / "buyer" / "wallet", mint_url, "buyer")
    node = await PylonWallet.open(tmp_path / "node" / "wallet", mint_url, "node")
    try:
        yield buyer, node
    finally:
        await buyer.aclose()
        await node.aclose()


async def test_fund_then_pay_a_node_balances_add_up(wallets: tuple[PylonWallet, PylonWallet]) -> None:
    buyer, node = wallets
    assert await buyer.fund(100) == 100 == buyer.balance()

    proofs = await buyer.send_locked(21, node.p2pk_pubkey())
    assert buyer.balance() == 79  # exactly the amount, no fee
    assert buyer.outstanding_sats() == 21
    info = inspect_proofs(json.loads(json.dumps(proofs)))  # what travels in the nutzap is plain JSON
    assert info.amount_sats == 21 and info.lock_pubkey == node.p2pk_pubkey() and info.has_dleq
    assert info.locktime is None and info.refund_pubkeys == []

    assert await node.redeem(proofs) == 21
    assert node.balance() == 21
    assert buyer.balance() + node.balance() == 100

    # the buyer learns at the mint that the node took it: no longer outstanding
    swept = await buyer.sweep_outstanding()
    assert (swept.settled_sats, swept.refunded_sats, swept.outstanding_sats) == (21, 0, 0)
    assert buyer.outstanding_sats() == 0 and buyer.balance() == 79

    # the node can spend what it received: pay it back
    back = await node.send_locked(21, buyer.p2pk_pubkey())
    assert await buyer.redeem(back) == 21
    assert (buyer.balance(), node.balance()) == (100, 0)


async def test_redeem_twice_is_spent_and_changes_nothing(wallets: tuple[PylonWallet, PylonWallet]) -> None:
    buyer, node = wallets
    await buyer.fund(10)
    proofs = await buyer.send_locked(5, node.p2pk_pubkey())
    assert await node.redeem(proofs) == 5
    with pytest.raises(PaymentError) as exc:
        await node.redeem(proofs)
    assert exc.value.code == "spent"
    assert node.balance() == 5 and buyer.balance() == 5


async def test_proofs_locked_to_another_key_are_wrong_lock(
    wallets: tuple[PylonWallet, PylonWallet], tmp_path: Path, mint_url: str
) -> None:
    buyer, node = wallets
    await buyer.fund(10)
    async with await PylonWallet.open(tmp_path / "other", mint_url, "other") as other:
        proofs = await buyer.send_locked(4, other.p2pk_pubkey())
        with pytest.raises(PaymentError) as exc:
            await node.redeem(proofs)
        assert exc.value.code == "wrong_lock"
        assert node.balance() == 0
        assert await other.redeem(proofs) == 4  # the right key still can
    # a plain (unlocked) bearer proof is no nutzap either
    unlocked = [{k: v for k, v in p.items()} for p in proofs]
    for p in unlocked:
        p["secret"] = "ab" * 32
    with pytest.raises(PaymentError) as exc:
        await node.redeem(unlocked)
    assert exc.value.code == "wrong_lock"


async def test_tampered_proofs_are_invalid_and_the_real_ones_still_redeem(
    wallets: tuple[PylonWallet, PylonWallet],
) -> None:
    buyer, node = wallets
    await buyer.fund(10)
    proofs = await buyer.send_locked(3, node.p2pk_pubkey())  # 2 + 1
    assert sorted(p["amount"] for p in proofs) == [1, 2]

    small = next(i for i, p in enumerate(proofs) if p["amount"] == 1)
    big = 1 - small

    def forge(*, keep_dleq: bool, **change: object) -> list[dict]:
        out = [dict(p) for p in proofs]
        out[small].update(change)
        if not keep_dleq:
            for p in out:
                p.pop("dleq", None)
        return out

    cases = [
        forge(keep_dleq=True, amount=2),  # inflated: caught by the DLEQ check, before the mint
        forge(keep_dleq=False, amount=2),  # inflated, no DLEQ to check: caught by the mint
        forge(keep_dleq=False, C=proofs[big]["C"]),  # a signature that belongs to another proof
        forge(keep_dleq=False, secret=proofs[small]["secret"].replace('"nonce": "', '"nonce": "0')),
    ]
    for forged in cases:
        with pytest.raises(PaymentError) as exc:
            await node.redeem(forged)
        assert exc.value.code == "invalid", forged
        assert node.balance() == 0
    assert await node.redeem(proofs) == 3  # nothing was spent by the failed attempts
    assert buyer.balance() + node.balance() == 10


async def test_proofs_from_another_mint_are_wrong_mint(wallets: tuple[PylonWallet, PylonWallet]) -> None:
    buyer, node = wallets
    await buyer.fund(4)
    proofs = await buyer.send_locked(4, node.p2pk_pubkey())
    foreign = [{**p, "id": "01" + "5a" * 32} for p in proofs]
    with pytest.raises(PaymentError) as exc:
        await node.redeem(foreign)
    assert exc.value.code == "wrong_mint"
    assert node.balance() == 0
    assert await node.redeem(proofs) == 4


async def test_refund_after_locktime_restores_the_buyer(wallets: tuple[PylonWallet, PylonWallet]) -> None:
    buyer, node = wallets
    await buyer.fund(50)
    proofs = await buyer.send_locked(13, node.p2pk_pubkey(), locktime_s=2)
    info = inspect_proofs(proofs)
    assert info.locktime is not None and info.refund_pubkeys == [buyer.p2pk_pubkey()]
    assert buyer.balance() == 37

    with pytest.raises(PaymentError) as exc:
        await buyer.refund(proofs)
    assert exc.value.code == "locked"
    with pytest.raises(PaymentError) as exc:
        await node.refund(proofs)  # the node holds no refund key
    assert exc.value.code == "wrong_lock"
    assert buyer.balance() == 37

    deadline = time.monotonic() + 10
    while time.time() <= info.locktime:  # the refund path opens strictly after the locktime
        assert time.monotonic() < deadline, "clock did not pass the locktime"
        await anyio.sleep(0.05)

    assert await buyer.refund(proofs) == 13
    assert buyer.balance() == 50 and buyer.outstanding_sats() == 0
    with pytest.raises(PaymentError) as exc:
        await node.redeem(proofs)  # too late: the buyer took it back
    assert exc.value.code == "spent"
    assert node.balance() == 0


async def test_receiver_may_still_redeem_after_locktime_and_then_refund_is_spent(
    wallets: tuple[PylonWallet, PylonWallet],
) -> None:
    buyer, node = wallets
    await buyer.fund(8)
    proofs = await buyer.send_locked(8, node.p2pk_pubkey(), locktime_s=1)
    locktime = inspect_proofs(proofs).locktime
    assert locktime is not None
    deadline = time.monotonic() + 10
    while time.time() <= locktime:
        assert time.monotonic() < deadline
        await anyio.sleep(0.05)
    assert await node.redeem(proofs) == 8  # NUT-11: the main key never expires
    with pytest.raises(PaymentError) as exc:
        await buyer.refund(proofs)
    assert exc.value.code == "spent"
    assert (buyer.balance(), node.balance()) == (0, 8)


async def test_sweep_refunds_expired_unredeemed_payments(wallets: tuple[PylonWallet, PylonWallet]) -> None:
    buyer, node = wallets
    await buyer.fund(20)
    expiring = await buyer.send_locked(6, node.p2pk_pubkey(), locktime_s=1)
    await buyer.send_locked(4, node.p2pk_pubkey(), locktime_s=3600)
    assert (buyer.balance(), buyer.outstanding_sats()) == (10, 10)
    locktime = inspect_proofs(expiring).locktime
    assert locktime is not None
    deadline = time.monotonic() + 10
    while time.time() <= locktime:
        assert time.monotonic() < deadline
        await anyio.sleep(0.05)
    swept = await buyer.sweep_outstanding()
    assert (swept.settled_sats, swept.refunded_sats, swept.outstanding_sats) == (0, 6, 4)
    assert (buyer.balance(), buyer.outstanding_sats()) == (16, 4)


async def test_stale_proofs_are_dropped_and_the_send_retried(
    wallets: tuple[PylonWallet, PylonWallet], tmp_path: Path, mint_url: str
) -> None:
    """A wallet whose view lags the mint (as after a swap whose answer was lost) recovers.

    A second handle on the same wallet file spends behind the first one's back: the first
    one's next send hits "spent" at the mint, drops what is gone, re-reads, and succeeds.
    """
    buyer, node = wallets
    await buyer.fund(10)
    async with await PylonWallet.open(buyer.db_path.parent, mint_url, "buyer") as twin:
        zap1 = await twin.send_locked(4, node.p2pk_pubkey())
    zap2 = await buyer.send_locked(3, node.p2pk_pubkey())
    assert buyer.balance() == 3 and buyer.outstanding_sats() == 7
    assert await node.redeem(zap1) + await node.redeem(zap2) == 7
    assert await buyer.reconcile() == 0
    assert buyer.balance() + node.balance() == 10


async def test_a_lost_swap_answer_is_recovered_from_the_mint(tmp_path: Path, mint_url: str) -> None:
    """The wallet file misses a swap the mint did (its answer never arrived): the next send
    hits "spent", the wallet drops the proofs the mint saw spent and pays from the rest."""
    d = tmp_path / "buyer"
    async with await PylonWallet.open(tmp_path / "node", mint_url, "node") as node:
        async with await PylonWallet.open(d, mint_url, "buyer") as w:
            await w.fund(10)
        snapshot = (d / "buyer.sqlite3").read_bytes()
        async with await PylonWallet.open(d, mint_url, "buyer") as w:
            first = await w.send_locked(4, node.p2pk_pubkey())
        (d / "buyer.sqlite3").write_bytes(snapshot)  # back to before that swap
        async with await PylonWallet.open(d, mint_url, "buyer") as w:
            assert w.balance() == 10  # stale: 4 sats of it are spent at the mint
            second = await w.send_locked(6, node.p2pk_pubkey())
            assert w.balance() == 0
            assert await w.reconcile() == 0
        assert await node.redeem(first) + await node.redeem(second) == 10


async def test_send_refuses_bad_arguments_and_overspending(wallets: tuple[PylonWallet, PylonWallet]) -> None:
    buyer, node = wallets
    await buyer.fund(5)
    with pytest.raises(PaymentError) as exc:
        await buyer.send_locked(6, node.p2pk_pubkey())
    assert exc.value.code == "insufficient_funds"
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            await buyer.send_locked(bad, node.p2pk_pubkey())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await buyer.send_locked(1, "not-a-key")
    with pytest.raises(ValueError):
        await buyer.send_locked(1, node.p2pk_pubkey(), refund_pubkey=buyer.p2pk_pubkey())  # no locktime
    assert buyer.balance() == 5


async def test_concurrent_nutzaps_into_one_wallet_all_count(wallets: tuple[PylonWallet, PylonWallet]) -> None:
    buyer, node = wallets
    await buyer.fund(64)
    zaps = [await buyer.send_locked(n, node.p2pk_pubkey()) for n in (1, 2, 3, 4, 5, 6, 7, 8)]
    got: list[int] = []
    refused: list[str] = []

    async def redeem(proofs: list[dict]) -> None:
        try:
            got.append(await node.redeem(proofs))
        except PaymentError as exc:
            refused.append(exc.code)

    stdout = sys.stdout
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for z in zaps:
                tg.start_soon(redeem, z)
            tg.start_soon(redeem, zaps[0])  # a duplicate delivery in the crowd: must not count twice
    assert sys.stdout is stdout
    assert refused == ["spent"]
    assert sorted(got) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert sum(got) == 36 == node.balance()
    assert buyer.balance() + node.balance() == 64


async def test_wallet_files_are_private(wallets: tuple[PylonWallet, PylonWallet], tmp_path: Path) -> None:
    buyer, _ = wallets
    await buyer.fund(1)
    wallet_dir = tmp_path / "buyer" / "wallet"
    assert stat.S_IMODE(wallet_dir.stat().st_mode) == 0o700
    files = sorted(wallet_dir.iterdir())
    assert buyer.db_path in files
    for f in files:  # the database and SQLite's -wal/-shm companions, which hold the seed too
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


async def test_wallet_reopens_with_same_key_and_balance(tmp_path: Path, mint_url: str) -> None:
    async with await PylonWallet.open(tmp_path / "w", mint_url, "node") as w:
        await w.fund(9)
        key = w.p2pk_pubkey()
    async with await PylonWallet.open(tmp_path / "w", mint_url, "node") as w:
        assert w.p2pk_pubkey() == key  # the key advertised in kind 10019 must survive restarts
        assert w.balance() == 9


def test_importing_nutshell_leaves_the_process_alone(tmp_path: Path) -> None:
    """nutshell reads ./.env and ~/.cashu/.env and truncates tracebacks at import: not through us."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    (home / ".cashu").mkdir(parents=True)
    cwd.mkdir()
    (home / ".cashu" / ".env").write_text("TOR=TRUE\nWALLET_NAME=evil\n")
    (cwd / ".env").write_text("TOR=TRUE\nSOCKS_PROXY=127.0.0.1:1\n")
    script = """
import anyio, json, os, sys
from pathlib import Path
from pylon.logs import configure_logging
from pylon.payments import PylonWallet
configure_logging()
async def main():
    w = await PylonWallet.open(Path(sys.argv[1]), "http://127.0.0.1:9", "probe")
    await w.aclose()
    from cashu.core.settings import settings
    print(json.dumps({"env_tor": os.environ.get("TOR"), "tor": settings.tor, "socks": settings.socks_proxy,
                      "tracebacklimit": hasattr(sys, "tracebacklimit"), "key": w.p2pk_pubkey()}))
anyio.run(main)
"""
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "w")],
        cwd=cwd,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "PYLON_HOME": str(tmp_path / "ph")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout  # stdout is the CLI's JSON: nutshell's prints go to stderr
    assert "wallet seed" in out.stderr  # nutshell's own advice (a CLI we do not ship) is rewritten
    report = json.loads(lines[0])
    assert len(report.pop("key")) == 66
    assert report == {"env_tor": None, "tor": False, "socks": None, "tracebacklimit": False}
    assert not any(p.name != ".env" for p in (home / ".cashu").iterdir())
