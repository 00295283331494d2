"""The embedded relay: nostr-sdk's LocalRelay, persisted in LMDB under PYLON_HOME.

The relay's own defaults would stall a swarm (60 notes a minute per connection), so the rate
limit is raised; events over MAX_EVENT_BYTES are refused by the relay itself, and Pylon's
publishers split inputs so they never reach it.

For a closed alpha the relay takes a write allow-list (`pylon relay up --allow PUBKEY ...`):
nostr-sdk's LocalRelayBuilder.write_policy takes a Python WritePolicy (a uniffi callback
interface), whose admit_event sees each EVENT before it is stored and answers ACCEPT or
REJECT; rejected publishers get `OK false "blocked: ..."`. Reads stay open, so anyone can
audit the market, unless `--auth`: then NIP-42 authentication is required to read and write
(LocalRelayBuilderNip42 mode BOTH); Pylon's own client answers AUTH challenges with the
daemon's key, and the allow-list still decides who may write.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio

from pylon.defaults import RELAY_PORT
from pylon.logs import get_logger
from pylon.nostr.budget import DEFAULT
from pylon.nostr.nip11 import Limits
from pylon.nostr.sdk_loop import bind_running_loop

log = get_logger("pylon.relay")

MAX_EVENT_BYTES = 64 * 1024
MAX_REQS_PER_CONN = 2_000
NOTES_PER_MINUTE = 6_000_000


def declared_limits() -> Limits:
    """What this relay takes, for the config of a stack that runs it: it publishes no NIP-11
    document, and a publisher that knows no limit waits for the OK of every event bigger than
    any the relay took before (a map's first requests, one after another). The content limit
    is the default budget's, so events are fitted exactly as before."""
    return Limits(max_message_length=MAX_EVENT_BYTES, max_content_length=DEFAULT.content)


def parse_pubkeys(keys: Iterable[str]) -> set[str]:
    """Hex or npub public keys as lower-case hex; ValueError names the first bad one."""
    from nostr_sdk import PublicKey

    out = set()
    for k in keys:
        try:
            out.add(PublicKey.parse(k.strip()).to_hex())
        except Exception as exc:  # nostr-sdk raises its own error type
            raise ValueError(f"not a public key: {k!r}") from exc
    return out


def allow_list_policy(allowed: set[str]) -> Any:
    """A nostr-sdk WritePolicy admitting only events authored by `allowed` (hex pubkeys)."""
    from nostr_sdk import WritePolicy, WritePolicyResult

    class AllowList(WritePolicy):
        def __init__(self) -> None:
            self.rejected = 0

        async def admit_event(self, event: Any, socket_addr: str) -> Any:
            if event.author().to_hex() in allowed:
                return WritePolicyResult.ACCEPT()
            self.rejected += 1
            if self.rejected in (1, 10, 100) or self.rejected % 1000 == 0:
                log.warning(
                    "relay_write_blocked",
                    author=event.author().to_hex()[:16],
                    peer=socket_addr,
                    rejected=self.rejected,
                )
            return WritePolicyResult.REJECT("this relay accepts events only from its allow-list")

    return AllowList()


class EmbeddedRelay:
    """Start with `await relay.start()`; the relay lives as long as the event loop does."""

    def __init__(
        self,
        *,
        port: int = RELAY_PORT,
        data_dir: Path | None = None,
        host: str = "127.0.0.1",
        allow: set[str] | None = None,
        auth: bool = False,
    ) -> None:
        self.auth = auth
        self.port = port
        self.host = host
        self.data_dir = data_dir
        self.allow = allow
        self._relay = None
        self._policy: Any = None
        self.url = f"ws://{host}:{port}"

    async def start(self) -> str:
        from nostr_sdk import LocalRelayBuilder, NostrLmdb, RateLimit

        builder = (
            LocalRelayBuilder()
            .addr(self.host)
            .port(self.port)
            .rate_limit(RateLimit(max_reqs=MAX_REQS_PER_CONN, notes_per_minute=NOTES_PER_MINUTE))
        )
        # The LMDB backend and the write policy call back into Python from Rust threads.
        bind_running_loop()
        if self.auth:
            from nostr_sdk import LocalRelayBuilderNip42, LocalRelayBuilderNip42Mode

            builder = builder.nip42(LocalRelayBuilderNip42(mode=LocalRelayBuilderNip42Mode.BOTH))
        if self.allow:
            self._policy = allow_list_policy(self.allow)
            builder = builder.write_policy(self._policy)
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            builder = builder.database(await NostrLmdb.open(str(self.data_dir)))
        self._relay = builder.build()
        await self._relay.run()
        self.url = str(await self._relay.url())
        log.info(
            "relay_started",
            url=self.url,
            lmdb=str(self.data_dir) if self.data_dir else None,
            max_event_bytes=MAX_EVENT_BYTES,
            allow_list=len(self.allow) if self.allow else None,
            auth=self.auth,
        )
        return self.url

    async def stop(self) -> None:
        if self._relay is not None:
            self._relay.shutdown()
            self._relay = None


async def run_relay_forever(
    *,
    port: int,
    data_dir: Path | None,
    host: str = "127.0.0.1",
    ready_file: Path | None = None,
    allow: set[str] | None = None,
    auth: bool = False,
) -> None:
    """`pylon relay up`: serve until cancelled (SIGTERM/SIGINT are turned into cancellation)."""
    relay = EmbeddedRelay(port=port, data_dir=data_dir, host=host, allow=allow, auth=auth)
    url = await relay.start()
    if ready_file is not None:
        ready_file.write_text(url + "\n")
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await relay.stop()
            log.info("relay_stopped", url=url)
