"""The embedded relay: nostr-sdk's LocalRelay, persisted in LMDB under PYLON_HOME.

The relay's own defaults would stall a swarm (60 notes a minute per connection), so the rate
limit is raised; events over MAX_EVENT_BYTES are refused by the relay itself, and Pylon's
publishers split inputs so they never reach it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio

from pylon.logs import get_logger

log = get_logger("pylon.relay")

MAX_EVENT_BYTES = 64 * 1024
DEFAULT_PORT = 7777
MAX_REQS_PER_CONN = 2_000
NOTES_PER_MINUTE = 6_000_000


class EmbeddedRelay:
    """Start with `await relay.start()`; the relay lives as long as the event loop does."""

    def __init__(self, *, port: int = DEFAULT_PORT, data_dir: Path | None = None, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.data_dir = data_dir
        self._relay = None
        self.url = f"ws://{host}:{port}"

    async def start(self) -> str:
        import nostr_sdk
        from nostr_sdk import LocalRelayBuilder, NostrLmdb, RateLimit

        builder = (
            LocalRelayBuilder()
            .addr(self.host)
            .port(self.port)
            .rate_limit(RateLimit(max_reqs=MAX_REQS_PER_CONN, notes_per_minute=NOTES_PER_MINUTE))
        )
        if self.data_dir is not None:
            # The LMDB backend calls back into Python from Rust threads; uniffi needs the loop.
            nostr_sdk.nostr_sdk.uniffi_set_event_loop(asyncio.get_running_loop())
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            builder = builder.database(await NostrLmdb.open(str(self.data_dir)))
        self._relay = builder.build()
        await self._relay.run()
        self.url = str(await self._relay.url())
        log.info("relay_started", url=self.url, lmdb=str(self.data_dir) if self.data_dir else None,
                 max_event_bytes=MAX_EVENT_BYTES)
        return self.url

    async def stop(self) -> None:
        if self._relay is not None:
            self._relay.shutdown()
            self._relay = None


async def run_relay_forever(*, port: int, data_dir: Path | None, host: str = "127.0.0.1",
                            ready_file: Path | None = None) -> None:
    """`pylon relay up`: serve until cancelled (SIGTERM/SIGINT are turned into cancellation)."""
    relay = EmbeddedRelay(port=port, data_dir=data_dir, host=host)
    url = await relay.start()
    if ready_file is not None:
        ready_file.write_text(url + "\n")
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await relay.stop()
            log.info("relay_stopped", url=url)
