"""`pylon relay up`: a real LocalRelay on LMDB under PYLON_HOME; it keeps events across a
restart, stops cleanly on SIGTERM, and refuses events over the size limit."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import anyio
import pytest

from pylon.keys import NostrKeys
from pylon.localmarket.launcher import LocalMarket
from pylon.nostr.event import sign_event
from pylon.nostr.filters import Filter
from pylon.nostr.relay_client import PublishError, RelayPool


async def _with_pool(url: str, fn):
    pool = RelayPool([url])
    async with anyio.create_task_group() as tg:
        await pool.start(tg)
        try:
            return await fn(pool)
        finally:
            tg.cancel_scope.cancel()


def test_relay_persists_across_restart_and_stops_on_sigterm(tmp_path: Path) -> None:
    m = LocalMarket(home=tmp_path / "home", nodes=0)
    keys = NostrKeys.generate()
    now = int(time.time())
    # Spread over three seconds: a relay caps a query at 500 events and NIP-01 pages by time.
    events = [sign_event(keys, 1, f"note {i}", [], created_at=now - i // 250) for i in range(700)]
    try:
        m.start_relay()

        async def put(pool: RelayPool) -> None:
            for ev in events:
                assert await pool.publish(ev, wait_ok=10)

        anyio.run(_with_pool, m.relay_url, put)
        relay = m.procs["relay"].popen
        assert relay is not None
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(timeout=20) == 0
        assert (m.home / "relay" / "lmdb").is_dir()

        m.start_relay()

        async def get(pool: RelayPool) -> list:
            return await pool.query([Filter(authors=[keys.pubkey], kinds=[1])], timeout=20)

        got = anyio.run(_with_pool, m.relay_url, get)
        # More than one page: the relay caps a query at 500 and the client pages past it.
        assert {e.id for e in got} == {e.id for e in events}
    finally:
        m.stop()


def test_relay_refuses_oversized_events_with_a_reason(tmp_path: Path) -> None:
    m = LocalMarket(home=tmp_path / "home", nodes=0, memory_relay=True)
    keys = NostrKeys.generate()
    try:
        m.start_relay()

        async def put(pool: RelayPool) -> None:
            with pytest.raises(PublishError, match="rejected"):
                await pool.publish(sign_event(keys, 1, "x" * 70_000, []), wait_ok=10)
            assert await pool.publish(sign_event(keys, 1, "x" * 50_000, []), wait_ok=10)

        anyio.run(_with_pool, m.relay_url, put)
    finally:
        m.stop()


def test_relay_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    m = LocalMarket(home=tmp_path / "home", nodes=0, memory_relay=True)
    try:
        m.start_relay()
        out = subprocess.run(
            [*m.node_argv("x")[:3], "relay", "up", "--port", str(m.relay_port), "--memory"],
            env=m.env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode != 0 and "cannot start the relay" in out.stderr
    finally:
        m.stop()
