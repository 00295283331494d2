"""Payment throughput against a real mint (send_locked + redeem, with exact balances).

    .venv/bin/python tests/test_payments_bench.py [PAYMENTS]   # prints the figures as one JSON line

As a test it uses few payments and checks only a floor far below any real machine, so an
order-of-magnitude regression (say, a new HTTP client per call again) fails, a busy CI box not.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
from pathlib import Path

import anyio
import pytest

from pylon.payments import MintConfig, PylonWallet, running_mint

NODES = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def measure(base: Path, n: int) -> dict[str, float]:
    cfg = MintConfig(port=free_port(), data_dir=base / "mint", log_level="WARNING")
    async with running_mint(cfg) as url:
        buyer = await PylonWallet.open(base / "buyer", url, "buyer")
        nodes = [await PylonWallet.open(base / f"n{i}", url, f"n{i}") for i in range(NODES)]
        try:
            await buyer.fund(8 * n)
            # warm-up: the first swaps also refill the buyer's denominations
            for _ in range(3):
                await nodes[0].redeem(await buyer.send_locked(1, nodes[0].p2pk_pubkey()))

            t0 = time.perf_counter()
            for i in range(n):
                node = nodes[i % NODES]
                await node.redeem(await buyer.send_locked(2, node.p2pk_pubkey()))
            sequential = n / (time.perf_counter() - t0)

            async def send_all() -> list[tuple[PylonWallet, list[dict]]]:
                zaps = []
                for i in range(n):
                    node = nodes[i % NODES]
                    zaps.append((node, await buyer.send_locked(2, node.p2pk_pubkey())))
                return zaps

            zaps = await send_all()
            t0 = time.perf_counter()
            for node, proofs in zaps:
                await node.redeem(proofs)
            redeem_seq = n / (time.perf_counter() - t0)

            t0 = time.perf_counter()
            zaps = await send_all()
            t1 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for node, proofs in zaps:
                    tg.start_soon(node.redeem, proofs)
            t2 = time.perf_counter()

            paid = 3 + 6 * n
            assert buyer.balance() == 8 * n - paid
            assert sum(w.balance() for w in nodes) == paid
            return {
                "payments": n,
                "sequential_per_s": round(sequential, 1),
                "send_locked_per_s": round(n / (t1 - t0), 1),
                "redeem_sequential_per_s": round(redeem_seq, 1),
                f"redeem_concurrent_{NODES}_wallets_per_s": round(n / (t2 - t1), 1),
                "send_then_concurrent_redeem_per_s": round(n / (t2 - t0), 1),
            }
        finally:
            for w in (buyer, *nodes):
                await w.aclose()


@pytest.mark.integration
def test_payment_throughput_floor(tmp_path: Path) -> None:
    figures = anyio.run(measure, tmp_path, 20)
    print(json.dumps(figures))
    assert figures["sequential_per_s"] > 1.0


if __name__ == "__main__":
    from pylon.logs import configure_logging

    configure_logging("warning")  # logs to stderr: stdout carries only the figures
    with tempfile.TemporaryDirectory() as d:
        print(json.dumps(anyio.run(measure, Path(d), int(sys.argv[1]) if len(sys.argv) > 1 else 100)))
